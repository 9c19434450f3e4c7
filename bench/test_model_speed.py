"""pytest-benchmark micro-benchmarks of the model alone: decoded queries -> batched forward
+ top-k (`serving.ranking.rank`), after pytest-benchmark's warm-up rounds.

`attnrec bench` runs this file for its model-alone layer (once per torch thread count) and
keeps the JSON beside its own. Alone, on the checkpoint kept in the repo:

    python -m pytest bench/test_model_speed.py --benchmark-json runs/model-bench.json

Not part of the test suite. `attnrec bench` sets these, all optional:
ATTNREC_BENCH_CHECKPOINT, ATTNREC_BENCH_DEVICE, ATTNREC_BENCH_THREADS (torch threads),
ATTNREC_BENCH_BATCH_SIZES ("1,8,32"), ATTNREC_BENCH_HISTORY, ATTNREC_BENCH_K, ATTNREC_BENCH_ROUNDS,
ATTNREC_BENCH_ENGINE (what computes user states, as the replica's ServingConfig.engine; its default).
"""

import os

import pytest
import torch

from attnrec.bench.inprocess import queries
from attnrec.model.checkpoint import DEFAULT_CHECKPOINT
from attnrec.serving.config import ServingConfig
from attnrec.serving.loaded import load
from attnrec.serving.ranking import rank

BATCH_SIZES = [int(b) for b in os.environ.get("ATTNREC_BENCH_BATCH_SIZES", "1,8,32,64,128").split(",")]


@pytest.fixture(scope="module")
def loaded():
    if threads := os.environ.get("ATTNREC_BENCH_THREADS"):
        torch.set_num_threads(int(threads))
    checkpoint, device = os.environ.get("ATTNREC_BENCH_CHECKPOINT", DEFAULT_CHECKPOINT), \
        os.environ.get("ATTNREC_BENCH_DEVICE", "cpu")
    engine = os.environ.get("ATTNREC_BENCH_ENGINE", ServingConfig.engine)
    return load(checkpoint, device, ServingConfig(checkpoint=checkpoint, device=device, engine=engine))


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_rank_batch(benchmark, loaded, batch_size):
    history, k = int(os.environ.get("ATTNREC_BENCH_HISTORY", 50)), int(os.environ.get("ATTNREC_BENCH_K", 10))
    batch = queries(loaded.ckpt, batch_size, history=history, k=k)
    benchmark.extra_info.update(batch_size=batch_size, threads=torch.get_num_threads(),
                                engine="torch" if loaded.encode is None else "onnxruntime")
    result = benchmark.pedantic(rank, args=(loaded.ranker, batch),
                                warmup_rounds=3, rounds=int(os.environ.get("ATTNREC_BENCH_ROUNDS", 20)))
    assert len(result) == batch_size
