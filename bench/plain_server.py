"""The comparison a user would pick instead of Ray: one `grpc.aio` process with an asyncio
micro-batcher, serving the same model through the same codec, loading and ranking code
(the Recommender's default engine included).

`python -m attnrec.bench.plain_server --checkpoint DIR [--port P]` (prints "ready PORT" when serving,
then a JSON line of the batch sizes formed so far on each SIGUSR1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import grpc
import torch

from attnrec.serving.batching import BatchStats, BatchWait
from attnrec.serving.codec import InvalidArgument, Query, Ranked, decode_recommend, encode_recommend
from attnrec.serving.config import BatchConfig, ServingConfig
from attnrec.serving.loaded import Loaded, load
from attnrec.serving.ranking import answer_batch, rank
from attnrec.v1 import recommender_pb2_grpc as pb_grpc


class MicroBatcher:
    """Collects queries until the batch is full or its wait (`BatchWait`, as the Ray replica
    uses) is over, then ranks them together."""

    def __init__(self, loaded: Loaded, batch: BatchConfig):
        self.loaded, self.batch = loaded, batch
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future]] = asyncio.Queue()
        self.stats = BatchStats()
        self.wait = BatchWait(batch)

    async def submit(self, query: Query) -> Ranked:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((query, future))
        return await future

    async def loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + self.wait.wait_s
            while len(items) < self.batch.max_batch_size:
                if not self.queue.empty():  # what has already arrived joins, wait or no wait
                    items.append(self.queue.get_nowait())
                    continue
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            self.stats.record(len(items))
            self.wait.after(len(items) + self.queue.qsize())
            loaded = self.loaded
            try:
                answers = rank(loaded.ranker, [q for q, _ in items])
            except Exception as e:  # noqa: BLE001 (each caller hears of it; the loop serves the next batch)
                for _, future in items:
                    future.set_exception(e)
                continue
            for (_, future), ranked in zip(items, answers):
                future.set_result(ranked)


class PlainRecommender(pb_grpc.RecommenderServicer):
    def __init__(self, checkpoint: str, batch: BatchConfig, device: str = "cpu"):
        self.config = ServingConfig(checkpoint=checkpoint, device=device)
        self.loaded = load(checkpoint, device, self.config)
        self.catalog = self.loaded.catalog
        self.batcher = MicroBatcher(self.loaded, batch)

    async def Recommend(self, request, context):
        try:
            query = decode_recommend(request, self.catalog, self.config)
        except InvalidArgument as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return encode_recommend(query, await self.batcher.submit(query), self.catalog)

    async def RecommendBatch(self, request, context):
        n = len(request.requests)
        if not 1 <= n <= self.config.max_batch_requests:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"requests: {n} entries, expected 1..{self.config.max_batch_requests}")
        return answer_batch(request, self.loaded.ranker, self.catalog, self.config,
                            self.batcher.batch.max_batch_size)[0]


async def serve(checkpoint: str, port: int, batch: BatchConfig, device: str = "cpu") -> None:
    servicer = PlainRecommender(checkpoint, batch, device)
    server = grpc.aio.server()
    pb_grpc.add_RecommenderServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")  # 0: a free port, chosen here
    await server.start()
    task = asyncio.create_task(servicer.batcher.loop())
    # SIGUSR1: print the batch sizes formed so far, one JSON line (the benchmark reads them
    # before and after each load point, as it asks the Ray replica through a handle).
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: print(json.dumps(servicer.batcher.stats.summary()), flush=True))
    print(f"ready {port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one, printed)")
    p.add_argument("--max-batch-size", type=int, default=BatchConfig.max_batch_size)
    p.add_argument("--batch-wait-timeout-s", type=float, default=BatchConfig.batch_wait_timeout_s)
    p.add_argument("--adaptive-wait", action="store_true", help="skip the wait while requests do not overlap")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, every core)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    batching = BatchConfig(a.max_batch_size, a.batch_wait_timeout_s, a.adaptive_wait)
    asyncio.run(serve(a.checkpoint, a.port, batching, a.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
