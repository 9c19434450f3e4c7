"""pytest-benchmark micro-benchmarks of the model alone (not part of the test suite):

    python -m pytest bench/test_model_speed.py --benchmark-json runs/model-bench.json

Each measures decoded queries -> batched forward + top-k (`serving.ranking.rank`) on the
checkpoint kept in the repo, after pytest-benchmark's warm-up rounds.
"""

import pytest

from attnrec.bench.run import _queries
from attnrec.model.checkpoint import load_checkpoint
from attnrec.serving.app import DEFAULT_CHECKPOINT
from attnrec.serving.ranking import rank


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("batch_size", [1, 8, 32, 64, 128])
def test_rank_batch(benchmark, ckpt, batch_size):
    queries = _queries(ckpt, batch_size, history=50, k=10)
    benchmark.extra_info["batch_size"] = batch_size
    result = benchmark.pedantic(rank, args=(ckpt.model, queries), warmup_rounds=3, rounds=20)
    assert len(result) == batch_size
