"""`attnrec bench`: every layer of the serving path measured in one run, side by side.

1. model alone: decoded queries -> batched forward + top-k, per batch size (the limit),
   by pytest-benchmark (bench/test_model_speed.py); again at RecommendBatch's size just
   before RecommendBatch, whose ratio is read against it (bench/inprocess.py)
2. plain grpc.aio server with an asyncio micro-batcher (bench/plain_server.py)
3. Ray Serve gRPC, through the proxy and by direct ingress: Recommend with batching on and
   off, RecommendBatch, Explain (bench/servers.py)
4. Explain per method (attention only, IG, deletion, combined) per n_steps, in-process
Each load point measures the plain server and Ray Serve back to back, so that the ratios
between them (bench/goals.py) are taken minutes apart at most, never across the machine's
drift between runs. Results: bench.json (bench/records.py: config, versions, machine, git
commit, every figure), bench.png and a table (bench/report.py). Nothing here asserts a
timing. Without Ray (`ray=False`, `--no-ray`): layers 1, 2 and 4 only. With `rounds` > 1
(`--rounds N`) layers 2-3 run N times in a row on the same servers, and each goal ratio is
the median over the rounds, kept with every round's own.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from attnrec.bench.config import BenchConfig, versions
from attnrec.bench.goals import goal_ratios
from attnrec.bench.inprocess import explain_methods, model_alone
from attnrec.bench.records import Report
from attnrec.bench.report import plot
from attnrec.bench.servers import servers


def run(config: BenchConfig, out: Path, progress: bool = True) -> Report:
    from attnrec.model.checkpoint import load_checkpoint
    from attnrec.model.train import resolve_device

    out.mkdir(parents=True, exist_ok=True)
    measured = versions(config.ray)  # the commit measured: edits made while the run goes on are not in it
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ckpt = load_checkpoint(config.checkpoint, resolve_device(config.device))
    steps = 2 + config.rounds * ((2 if config.ray else 1) * len(config.concurrency) + 1)
    bar = tqdm(total=steps, desc="bench", unit="step", disable=not progress)
    bar.set_postfix_str("model alone")
    alone = model_alone(config, out)
    bar.update()
    bar.set_postfix_str("explain methods")
    methods = explain_methods(ckpt, config)
    bar.update()
    rounds = servers(config, config.checkpoint, bar, out)  # the load generator draws its ids from the checkpoint
    bar.close()
    ratios, by_round = goal_ratios(rounds)
    report = Report(config, measured, created, ckpt.model_version, alone, methods, rounds, ratios,
                    by_round)
    (out / "bench.json").write_text(report.to_json())
    plot(report, out)
    return report
