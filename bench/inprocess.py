"""The in-process layers of `attnrec bench`: the model alone (pytest-benchmark, in a process
of its own per thread count) and each explanation method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from attnrec.bench.config import BenchConfig
from attnrec.bench.records import ExplainMethod, ModelAlone


def queries(ckpt, n: int, history: int, k: int, seed: int = 0):
    from attnrec.serving.codec import Catalog, decode_recommend
    from attnrec.serving.config import ServingConfig
    from attnrec.v1 import recommender_pb2 as pb

    rng = np.random.default_rng(seed)
    catalog, config = Catalog(ckpt), ServingConfig(checkpoint="bench")
    ids = list(ckpt.items.ids)
    return [decode_recommend(pb.RecommendRequest(history=list(rng.choice(ids, history, replace=False)), k=k),
                             catalog, config) for _ in range(n)]


def model_alone(config: BenchConfig, out: Path) -> list[ModelAlone]:
    """pytest-benchmark (`bench/test_model_speed.py`) per batch size, in its own process, with
    the servers' thread count (config.threads; Ray gives a replica with num_cpus: 1 one
    thread) and with every core. Its JSON is kept as `model_alone_<n>threads.json`."""
    return [row for threads in sorted({config.threads, torch.get_num_threads()})
            for row in pytest_benchmark(config, threads, config.model_batch_sizes,
                                         out / f"model_alone_{threads}threads.json")]


def pytest_benchmark(config: BenchConfig, threads: int, batch_sizes: tuple[int, ...], saved: Path) -> list[ModelAlone]:
    env = {**os.environ, "ATTNREC_BENCH_CHECKPOINT": config.checkpoint, "ATTNREC_BENCH_DEVICE": config.device,
           "ATTNREC_BENCH_THREADS": str(threads), "ATTNREC_BENCH_HISTORY": str(config.history),
           "ATTNREC_BENCH_K": str(config.k), "ATTNREC_BENCH_ROUNDS": str(config.model_rounds),
           "ATTNREC_BENCH_BATCH_SIZES": ",".join(map(str, batch_sizes))}
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).with_name("test_model_speed.py")), "-q",
           "-p", "no:cacheprovider", "--import-mode=importlib", "--benchmark-json", str(saved)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"model-alone benchmark failed ({' '.join(cmd)}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return [ModelAlone(batch_size=b["extra_info"]["batch_size"], threads=threads,
                       recs_per_s=round(b["extra_info"]["batch_size"] / b["stats"]["median"], 1),
                       ms_per_batch=round(1000 * b["stats"]["median"], 3), rounds=b["stats"]["rounds"])
            for b in json.loads(saved.read_text())["benchmarks"]]


def explain_methods(ckpt, config: BenchConfig) -> list[ExplainMethod]:
    from attnrec.explain.ablation import deletion_attribution
    from attnrec.explain.attention import rollout
    from attnrec.explain.attribution import integrated_gradients
    from attnrec.explain.counterfactual import counterfactual
    from attnrec.explain.explain import explain
    from attnrec.explain.feature_reasons import feature_reasons

    q = queries(ckpt, 1, config.history, 1)[0]
    model = ckpt.model
    device = model.item_emb.weight.device
    seq = torch.as_tensor(q.history[None], device=device)
    user = None if q.user is None else [torch.as_tensor(np.asarray(c)[None], device=device) for c in q.user]
    with torch.no_grad():
        scores = model.score_all(seq, user)[0]
        scores[torch.as_tensor(q.seen, device=device)] = float("-inf")
        target = int(scores.argmax())  # the top-1 item, history masked, as Explain does by default

    def attention_only() -> None:
        with torch.no_grad():
            _, att = model(seq, user, return_attention=True)
            rollout(att)

    labels = ckpt.items.ids_of(q.history)
    rows = []
    # steps 0: no integrated gradients in them; what each adds to an answer (feature reasons to every
    # one, a counterfactual to those that ask)
    costs = [(0, {"feature reasons": lambda: feature_reasons(model, q.history, q.user, target, ckpt.item_encoders,
                                                             ckpt.user_encoders, labels),
                  "counterfactual (top 10, up to 5)": lambda: counterfactual(model, q.seen, q.user, target)})]
    for steps in config.explain_steps:
        costs.append((steps, {"attention+rollout": attention_only,
                              "ig": lambda n=steps: integrated_gradients(model, seq, user, target, n_steps=n),
                              "deletion": lambda: deletion_attribution(model, q.history, q.user, target),
                              "combined (all)": lambda n=steps: explain(model, q.history, q.user, target, n_steps=n)}))
    for steps, methods in costs:
        for name, fn in methods.items():
            fn()
            times = []
            for _ in range(config.explain_repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append(ExplainMethod(name, steps, round(1000 * float(np.median(times)), 2)))
    return rows
