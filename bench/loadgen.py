"""gRPC load generator, run as its own process so the client never shares an interpreter
(or a GIL) with the server: `python -m attnrec.bench.loadgen --target H:P --mode closed ...`.

closed: `concurrency` coroutines each send the next request as soon as the last answered.
open:   requests start on a fixed schedule (`rate` per second) whatever the answers do;
        latency counts from the scheduled start, so a slow server cannot hide its queue
        (no coordinated omission).
Prints one JSON object: throughput, latency percentiles (ms), errors by status code, and
the client's own CPU use (near 100% of a core would mean the client is the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import grpc

from attnrec.model.checkpoint import DEFAULT_CHECKPOINT
from attnrec.v1 import recommender_pb2 as pb
from attnrec.v1 import recommender_pb2_grpc as pb_grpc


def item_ids(source: str) -> list[str]:
    """Item ids to draw histories from: a checkpoint directory (its item vocabulary), or a
    JSON file holding a list of ids."""
    path = Path(source)
    if path.is_dir():
        import pyarrow.parquet as pq

        ids = pq.read_table(path / "items.parquet", columns=["item_id"]).column("item_id").to_pylist()
    else:
        ids = json.loads(path.read_text())
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{source}: no item ids (want a checkpoint directory or a JSON list of ids)")
    return [str(i) for i in ids]


def make_requests(items: list[str], kind: str, n: int, history: int, k: int, batch: int, seed: int) -> list:
    rng = random.Random(seed)

    def one() -> pb.RecommendRequest:
        return pb.RecommendRequest(history=rng.sample(items, history), k=k)

    if kind == "recommend":
        return [one() for _ in range(n)]
    if kind == "batch":
        return [pb.RecommendBatchRequest(requests=[one() for _ in range(batch)]) for _ in range(n)]
    if kind == "explain":
        return [pb.ExplainRequest(history=rng.sample(items, history)) for _ in range(n)]
    raise ValueError(f"unknown kind {kind}")


async def run(args: argparse.Namespace) -> dict:
    items = item_ids(args.items)
    requests = make_requests(items, args.kind, 512, args.history, args.k, args.batch, args.seed)
    method = {"recommend": "Recommend", "batch": "RecommendBatch", "explain": "Explain"}[args.kind]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = getattr(pb_grpc.RecommenderStub(channel), method)
        await stub(requests[0], timeout=args.timeout)  # warm-up: connection and first batch
        for r in requests[1 : 1 + args.warmup]:
            await stub(r, timeout=args.timeout)

        async def call(i: int, start: float) -> None:
            try:
                await stub(requests[i % len(requests)], timeout=args.timeout)
                latencies.append(time.perf_counter() - start)
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1

        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + args.duration
        if args.mode == "closed":
            async def worker(w: int) -> None:
                i = w
                while time.perf_counter() < deadline:
                    await call(i, time.perf_counter())
                    i += args.concurrency

            await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        else:
            tasks, i = [], 0
            while (start := t0 + i / args.rate) < deadline:
                await asyncio.sleep(max(0.0, start - time.perf_counter()))
                tasks.append(asyncio.create_task(call(i, start)))
                i += 1
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2) if lat else None

    per_call = args.batch if args.kind == "batch" else 1
    return {"kind": args.kind, "mode": args.mode, "concurrency": args.concurrency, "rate": args.rate,
            "calls": len(lat), "seconds": round(wall, 3), "calls_per_s": round(len(lat) / wall, 2),
            "recs_per_s": round(per_call * len(lat) / wall, 2), "p50_ms": pct(50), "p95_ms": pct(95),
            "p99_ms": pct(99), "errors": errors, "client_cpu_share": round(cpu / wall, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="gRPC load generator for attnrec's Recommender service: closed loop "
                                            "(--concurrency) or open loop (--mode open --rate); prints one JSON line")
    p.add_argument("--target", required=True)
    p.add_argument("--items", default=str(DEFAULT_CHECKPOINT),
                   help="where to draw history ids from: a checkpoint directory or a JSON list of ids "
                        "(default: the checkpoint kept in the repo, which `attnrec serve` serves)")
    p.add_argument("--kind", choices=["recommend", "batch", "explain"], default="recommend")
    p.add_argument("--mode", choices=["closed", "open"], default="closed")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rate", type=float, default=100.0, help="open loop: requests per second")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=64, help="users per RecommendBatch call")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(asyncio.run(run(p.parse_args(argv)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
