"""What the feedback log costs Recommend: saturated Recommend calls/s straight at the
Recommender replica (direct ingress), with the log off and on (every answer logged as
impressions), alternating in rounds so that the machine's drift enters both alike; then
Feedback calls of 10 events each, acknowledged once durable.

    attnrec bench --feedback-cost [--rounds 3] [--duration 15]
    python -m attnrec.bench.feedback_cost --out runs/feedback_cost

Prints one JSON object and writes OUT/feedback_cost.json. Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from attnrec.bench.config import BenchConfig, single_replicas, versions
from attnrec.bench.faults import Load, percentiles
from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.model.feedback_log import summary
from attnrec.serving.client import RecommenderClient


def _saturated(config: BenchConfig, concurrency: int) -> dict:
    from attnrec.bench.servers import _load
    from attnrec.serving.server import direct_ingress_targets

    load = _load(direct_ingress_targets()[0], config.checkpoint, "recommend", config, concurrency)
    return {"calls_per_s": load.calls_per_s, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms}


def _feedback_load(port: int, seconds: float, callers: int = 8) -> dict:
    """Closed-loop Feedback calls of 10 purchase events each, through the proxy."""
    def call(client: RecommenderClient, i: int) -> None:
        client.feedback([client.event(f"bench-{time.time_ns()}-{i}-{j}", f"u{i % 500}", str(j + 1), "purchase")
                         for j in range(10)])

    with Load(f"127.0.0.1:{port}", callers, call) as load:
        time.sleep(seconds)
    ok = load.outcomes["OK"]
    return {"callers": callers, "calls_per_s": round(ok / seconds, 1), "events_per_s": round(10 * ok / seconds, 1),
            **percentiles(load.latencies_ms), "failed": sum(load.outcomes.values()) - ok}


def measure(checkpoint: str, rounds: int, duration_s: float, concurrency: int, threads: int) -> dict:
    from ray import serve

    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG, ServingConfig
    from attnrec.serving.server import deploy, free_port, start_ray, start_service

    config = BenchConfig(checkpoint, duration_s=duration_s)
    start_ray(direct_ingress=True)
    serve_file = replace(ServeFile.load(DEFAULT_CONFIG), deployments=single_replicas(threads))
    log_dir = Path(tempfile.mkdtemp(prefix="attnrec-feedback-cost-"))
    off = ServingConfig(checkpoint=checkpoint, device="cpu")
    on = replace(off, feedback_dir=str(log_dir))
    port = free_port()
    start_service(off, serve_file, port, free_port())
    points: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            for name, serving in (("off", off), ("on", on)):
                deploy(serving, serve_file)  # new args: Serve replaces the replicas
                time.sleep(2)  # the new replica's first calls (warm-up is the load generator's too)
                points[name].append(_saturated(config, concurrency))
        feedback = _feedback_load(port, duration_s)
        time.sleep(2)  # the last impressions reach the log
        logged = summary(log_dir)
    finally:
        serve.shutdown()
    ratios = [b["calls_per_s"] / a["calls_per_s"] for a, b in zip(points["off"], points["on"])]
    return {"concurrency": concurrency, "duration_s": duration_s, "threads": threads, "rounds": points,
            "on_over_off": [round(r, 3) for r in ratios], "median_on_over_off": round(statistics.median(ratios), 3),
            "feedback": feedback, "logged": {"events": logged["events"]["rows"],
                                             "impressions": logged["impressions"]["rows"],
                                             "files": logged["events"]["files"] + logged["impressions"]["files"]},
            "log_dir": str(log_dir), "bench_config": asdict(config), "versions": versions(with_ray=True)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per load point")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the Recommender replica")
    p.add_argument("--out", type=Path, default=Path("runs/feedback_cost"))
    args = p.parse_args(argv)
    result = measure(resolve_checkpoint(args.checkpoint), args.rounds, args.duration, args.concurrency, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feedback_cost.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("bench_config", "versions")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
