"""What faults cost, measured against a running service started here with the shipped
Serve config: `python -m attnrec.bench.faults [--checkpoint DIR] [--out runs/faults]`.

1. kill under load: callers send Recommend through the proxy with the client's retry
   policy; one Recommender replica is killed (as `kill -9` would); counts calls, failures by
   status code, and the seconds until Serve has every replica running again.
2. the same during an Explain burst that scales the Explainer up: on a small machine the
   Explainer's replicas must not take what the Recommender's replacement needs.
3. a heavy RecommendBatch (1,024 users, histories of 1,000, about 7 MB) sent again and
   again beside single Recommends: their p50 / p99 with and without it.
4. a rollout under load (`attnrec rollout`'s path) to a copy of the checkpoint with other
   weights, and back, alone and during an Explain burst: failed calls, seconds to switch,
   the model versions the answers named.
Prints one JSON object and writes it to OUT/faults.json. Nothing here asserts anything:
the tests hold the service to its bounds, this measures where it lands.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import grpc

from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.serving.client import RecommenderClient


class Load:
    """Closed-loop callers in threads, each with its own client; outcomes counted by status."""

    def __init__(self, target: str, callers: int, rpc):
        self.outcomes: Counter[str] = Counter()
        self.details: list[str] = []
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, args=(target, w, rpc), daemon=True)
                         for w in range(callers)]

    def _call(self, target: str, w: int, rpc) -> None:
        with RecommenderClient(target, timeout=30) as client:
            i = w
            while not self._stop.is_set():
                try:
                    start = time.perf_counter()
                    rpc(client, i)
                    self.latencies_ms.append(1000 * (time.perf_counter() - start))
                    self.outcomes["OK"] += 1
                except grpc.RpcError as e:
                    self.outcomes[e.code().name] += 1
                    self.details.append(e.details() or "")
                i += len(self._threads)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)


def recommend(client: RecommenderClient, i: int) -> None:
    client.recommend([str(1 + i % 50), str(32 + i % 7), "260"], k=10)


def explain(client: RecommenderClient, i: int) -> None:
    client.explain([str(1 + i % 50), "32", "260", "1196"], n_steps=64)


def heavy_batch_request(items: list[str], users: int = 1024, history: int = 1000):
    from attnrec.v1 import recommender_pb2 as pb

    return pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=items[u % 7:][:history], k=10)
                                              for u in range(users)])


def percentiles(values: list[float]) -> dict:
    v = sorted(values)
    return {"calls": len(v), "p50_ms": round(v[len(v) // 2], 1) if v else None,
            "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))], 1) if v else None}


def heavy_batch(target: str, items: list[str], callers: int = 4, seconds: float = 10.0) -> dict:
    """Single Recommends alone, then beside a heavy RecommendBatch sent in a loop."""
    with Load(target, callers, recommend) as alone:
        time.sleep(seconds)
    request = heavy_batch_request(items)
    batch_ms: list[float] = []
    stop = threading.Event()

    def send_batches() -> None:
        with RecommenderClient(target, timeout=120) as client:
            while not stop.is_set():
                start = time.perf_counter()
                client.recommend_batch(request.requests)
                batch_ms.append(1000 * (time.perf_counter() - start))

    sender = threading.Thread(target=send_batches, daemon=True)
    with Load(target, callers, recommend) as beside:
        sender.start()
        time.sleep(seconds)
        stop.set()
    sender.join(timeout=120)
    return {"request_bytes": request.ByteSize(), "callers": callers, "seconds": seconds,
            "recommend_alone": percentiles(alone.latencies_ms),
            "recommend_beside_batch": percentiles(beside.latencies_ms),
            "batch_calls": len(batch_ms), "batch_p50_ms": percentiles(batch_ms)["p50_ms"]}


def reweighted_copy(checkpoint: str, directory: Path, seed: int = 0) -> Path:
    """A copy of `checkpoint` with its item embeddings nudged: same shapes and catalogue, other
    weights, so another model_version (a stand-in for a retrained model)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, directory)
    weights = load_file(str(directory / "model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    item = weights["item_emb.weight"]
    weights["item_emb.weight"] = item + 0.01 * torch.randn(item.shape, generator=generator, dtype=item.dtype)
    save_file(weights, str(directory / "model.safetensors"))
    return directory


def rollout_under_load(target: str, callers: int, checkpoint: str, other: str, settle_s: float,
                       burst: int = 0) -> dict:
    """Roll over to `other` and back to `checkpoint` while `callers` send Recommend (and `burst`
    callers Explain); every answer's model_version is counted."""
    from attnrec.serving.rollout import rollout

    versions: Counter[str] = Counter()

    def recommend_version(client: RecommenderClient, i: int) -> None:
        versions[client.recommend([str(1 + i % 50), str(32 + i % 7), "260"], k=10).model_version] += 1

    with Load(target, callers, recommend_version) as load, \
            (Load(target, burst, explain) if burst else nullcontext()) as explain_load:
        time.sleep(settle_s)
        there = rollout(other, timeout_s=300)
        time.sleep(settle_s)
        back = rollout(checkpoint, timeout_s=300)
        time.sleep(settle_s)
    calls = sum(load.outcomes.values())
    return {"callers": callers, "explain_callers": burst, "calls": calls, "failed": calls - load.outcomes["OK"],
            "outcomes": dict(load.outcomes), "switch_s": [round(there.switch_s, 1), round(back.switch_s, 1)],
            "answers_by_model_version": dict(versions),
            "explain_outcomes": dict(explain_load.outcomes) if explain_load else None}


def replicas(name: str) -> dict[str, int]:
    from ray import serve

    from attnrec.serving.app import APP_NAME

    return dict(serve.status().applications[APP_NAME].deployments[name].replica_states)


def recommender_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if "SERVE_REPLICA" in a["name"] and "Recommender" in a["name"]}


def kill_one_recommender() -> str:
    import ray

    victim = sorted(recommender_actors())[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    return victim


def seconds_until_replaced(victim: str, count: int, bound_s: float = 300) -> float | None:
    """Seconds from the kill until Serve runs `count` Recommender replicas again, the victim
    not among them."""
    start = time.monotonic()
    while time.monotonic() - start < bound_s:
        actors = recommender_actors()
        if victim not in actors and len(actors) >= count and replicas("Recommender") == {"RUNNING": count}:
            return round(time.monotonic() - start, 1)
        time.sleep(0.25)
    return None


def kill_under_load(target: str, callers: int, settle_s: float, after_s: float, burst: int = 0) -> dict:
    """One replica killed while `callers` send Recommend (and `burst` callers send Explain)."""
    wanted = replicas("Recommender").get("RUNNING", 0)
    explainers_at_kill = None
    with Load(target, callers, recommend) as load, \
            (Load(target, burst, explain) if burst else nullcontext()) as explain_load:
        if burst:
            deadline = time.monotonic() + 60  # the shipped upscale delay is 10 s
            while sum(replicas("Explainer").values()) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            explainers_at_kill = replicas("Explainer")
        time.sleep(settle_s)
        before = sum(load.outcomes.values())
        victim = kill_one_recommender()
        back_s = seconds_until_replaced(victim, wanted)
        time.sleep(after_s)
    calls = sum(load.outcomes.values())
    failed = calls - load.outcomes["OK"]
    return {"recommender_replicas": wanted, "callers": callers, "explain_callers": burst,
            "explainer_replicas_at_kill": explainers_at_kill, "calls": calls, "calls_before_kill": before,
            "failed": failed, "failed_share": round(failed / calls, 4) if calls else None,
            "outcomes": dict(load.outcomes), "replicas_running_again_s": back_s,
            "tracebacks_seen": sum("Traceback" in d or 'File "' in d for d in load.details),
            "explain_outcomes": dict(explain_load.outcomes) if explain_load else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--settle", type=float, default=5.0, help="seconds of load before the kill")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load after the replicas are back")
    p.add_argument("--only-heavy-batch", action="store_true", help="skip the kills and rollouts")
    p.add_argument("--only-rollout", action="store_true", help="skip the kills and the heavy batch")
    p.add_argument("--out", type=Path, default=Path("runs/faults"))
    args = p.parse_args(argv)

    import ray
    from ray import serve

    from attnrec.bench.config import versions
    from attnrec.bench.loadgen import item_ids
    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG
    from attnrec.serving.server import free_port, serving_config, start_ray, start_service

    serve_file = ServeFile.load(DEFAULT_CONFIG)
    notes = serve_file.fit_to(os.cpu_count() or 1)
    start_ray(resources=serve_file.custom_resources())
    port = free_port()
    config = serving_config(serve_file, resolve_checkpoint(args.checkpoint), None)
    try:
        start_service(config, serve_file, port, free_port())
        target = f"127.0.0.1:{port}"
        result = {"versions": versions(True), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "config_notes": notes}
        if not args.only_rollout:
            result["heavy_batch"] = heavy_batch(target, item_ids(config.checkpoint))
        if not args.only_heavy_batch:
            with tempfile.TemporaryDirectory() as scratch:
                other = str(reweighted_copy(config.checkpoint, Path(scratch) / "other"))
                result["rollout_under_load"] = rollout_under_load(target, args.callers, config.checkpoint, other,
                                                                  args.settle)
                result["rollout_during_explain_burst"] = rollout_under_load(target, args.callers, config.checkpoint,
                                                                            other, args.settle, burst=6)
        if not (args.only_heavy_batch or args.only_rollout):
            result["kill_under_load"] = kill_under_load(target, args.callers, args.settle, args.after)
            result["kill_during_explain_burst"] = kill_under_load(target, args.callers, args.settle, args.after,
                                                                  burst=6)
    finally:
        serve.shutdown()
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
