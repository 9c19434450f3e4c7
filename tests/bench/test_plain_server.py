import asyncio

import numpy as np

from attnrec.bench.plain_server import MicroBatcher
from attnrec.model.checkpoint import load_checkpoint
from attnrec.serving.codec import Query
from attnrec.serving.config import BatchConfig


def query(item: int) -> Query:
    seen = np.array([item], dtype=np.int64)
    return Query(history=seen, seen=seen, user=None, k=3, candidates=None, include_history=False,
                 unknown_item_ids=(), unknown_user=False)


def test_queued_requests_share_a_batch_even_with_no_wait(checkpoint):
    """With the wait at zero (a lone caller), what already arrived still joins the batch."""
    batcher = MicroBatcher(load_checkpoint(checkpoint).model, BatchConfig(max_batch_size=8, batch_wait_timeout_s=0.5))
    batcher.wait.wait_s = 0.0

    async def run():
        loop = asyncio.create_task(batcher.loop())
        answers = await asyncio.gather(*(batcher.submit(query(i)) for i in range(1, 6)))
        loop.cancel()
        return answers

    answers = asyncio.run(run())
    assert [len(a.items) for a in answers] == [3] * 5
    assert batcher.stats.sizes == {5: 1}  # one batch, not five, and no 0.5 s wait needed
