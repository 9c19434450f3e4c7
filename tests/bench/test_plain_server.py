import asyncio

import numpy as np

from attnrec.bench import plain_server
from attnrec.bench.plain_server import MicroBatcher
from attnrec.serving.codec import Query
from attnrec.serving.config import BatchConfig, ServingConfig
from attnrec.serving.loaded import load


def query(item: int) -> Query:
    seen = np.array([item], dtype=np.int64)
    return Query(history=seen, seen=seen, user=None, k=3, candidates=None, include_history=False,
                 unknown_item_ids=(), unknown_user=False)


def test_queued_requests_share_a_batch_even_with_no_wait(checkpoint):
    """With the wait at zero (a lone caller), what already arrived still joins the batch."""
    loaded = load(str(checkpoint), "cpu", ServingConfig(checkpoint=str(checkpoint)))
    batcher = MicroBatcher(loaded, BatchConfig(max_batch_size=8, batch_wait_timeout_s=0.5))
    batcher.wait.wait_s = 0.0

    async def run():
        loop = asyncio.create_task(batcher.loop())
        answers = await asyncio.gather(*(batcher.submit(query(i)) for i in range(1, 6)))
        loop.cancel()
        return answers

    answers = asyncio.run(run())
    assert [len(a.items) for a in answers] == [3] * 5
    assert batcher.stats.sizes == {5: 1}  # one batch, not five, and no 0.5 s wait needed


def test_a_batch_that_fails_fails_its_callers_and_the_next_batch_is_served(checkpoint, monkeypatch):
    loaded = load(str(checkpoint), "cpu", ServingConfig(checkpoint=str(checkpoint), engine="torch"))
    batcher = MicroBatcher(loaded, BatchConfig(max_batch_size=8, batch_wait_timeout_s=0.0))
    real_rank = plain_server.rank
    monkeypatch.setattr(plain_server, "rank", lambda *a: (_ for _ in ()).throw(RuntimeError("broken batch")))

    async def run():
        loop = asyncio.create_task(batcher.loop())
        failed = await asyncio.gather(batcher.submit(query(1)), return_exceptions=True)
        monkeypatch.setattr(plain_server, "rank", real_rank)
        served = await batcher.submit(query(2))
        loop.cancel()
        return failed, served

    failed, served = asyncio.run(run())
    assert isinstance(failed[0], RuntimeError) and len(served.items) == 3
