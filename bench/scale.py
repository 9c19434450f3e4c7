"""`attnrec bench --scale`: how the cost of a recommendation grows with the catalogue, for
exact scoring and for two-stage retrieval (model/retrieval.py), on one replica's thread.

Catalogues of 10^4, 10^5 and 10^6 items are grown from a trained model (the embedded
MovieLens one by default), so that item vectors have the structure of a trained item tower:
item j is a copy of trained item j mod N0 (its id embedding and its feature codes) with
Gaussian noise of `noise` times the embedding's spread added to the id embedding. Queries
are user states of histories drawn by training popularity. The same is also measured on
*random* item vectors (isotropic Gaussian, the worst case for any index) at the largest size.

Per catalogue size and history length it records, in OUT/bench.json (under "scale"): recall@10
of two-stage against exact, model-alone recs/s at batch 64, the p50 of one query alone
(batch 1), the item table's and the index's memory, the index build time and the time to
load checkpoint and index from disk. With --serve, for the first history length, also
through Ray Serve straight at the Recommender replica (direct ingress): Recommend p50 at 1
in flight, saturated calls/s at 32 in flight, and Explain p50.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from attnrec.bench.config import git_commit
from attnrec.model.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint
from attnrec.model.onnx_encoder import encoder_for
from attnrec.model.retrieval import (
    IndexConfig,
    Ranker,
    Retrieval,
    faiss_module,
    load_retriever,
    recall_at,
    write_index,
)
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import Vocab
from attnrec.serving.codec import Catalog, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

SIZES = (10_000, 100_000, 1_000_000)
HISTORIES = (50, 200)
BATCH = 64


@dataclass(frozen=True)
class ScaleConfig:
    sizes: tuple[int, ...] = SIZES
    histories: tuple[int, ...] = HISTORIES
    noise: float = 0.5  # the grown items' distance from their source, in units of the embedding's spread
    candidates: int = 300  # two-stage: items the index proposes per query
    queries: int = 1_000  # recall is measured over this many sampled histories
    timed_s: float = 3.0  # seconds per throughput and latency measurement
    threads: int = 1  # torch and faiss threads while timing (a num_cpus: 1 replica)
    seed: int = 0


def grown(base: Checkpoint, n_items: int, noise: float, seed: int, random: bool = False) -> Checkpoint:
    """The base model with a catalogue of n_items (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    n0 = len(base.items)
    config = replace(base.config, n_items=n_items)
    model = SASRec(config)
    state = {k: v for k, v in base.model.state_dict().items() if not k.startswith(("item_emb", "item_codes_"))}
    model.load_state_dict(state, strict=False)
    source = np.r_[0, np.arange(n_items) % n0 + 1]  # new index -> base index (0 = padding)
    weights = base.model.item_emb.weight.detach()
    spread = float(weights[1:].std())
    with torch.no_grad():
        if random:
            model.item_emb.weight.copy_(torch.randn(n_items + 1, config.d_model,
                                                    generator=torch.Generator().manual_seed(seed)) * spread)
        else:
            fresh = torch.as_tensor(rng.normal(0, noise * spread, (n_items + 1, config.d_model)), dtype=weights.dtype)
            fresh[1:n0 + 1] = 0  # the trained items stay as they are
            model.item_emb.weight.copy_(weights[torch.as_tensor(source)] + fresh)
        model.item_emb.weight[0].zero_()
    model.set_item_codes([getattr(base.model, f"item_codes_{i}")[torch.as_tensor(source)]
                          for i in range(len(config.item_features))])
    model.eval()
    counts = None if base.item_counts is None else base.item_counts[source] * (source > 0)
    ids = tuple(base.items.ids) + tuple(f"grown{j}" for j in range(n0, n_items))
    return Checkpoint(model, Vocab(ids[:n_items]), base.users, base.item_encoders, base.user_encoders,
                      base.user_codes, {"grown_from": base.model_version, "noise": noise}, counts)


def histories(ckpt: Checkpoint, n: int, length: int, seed: int) -> list[list[str]]:
    """n histories of `length` distinct trained items, drawn by training popularity."""
    rng = np.random.default_rng(seed)
    counts = ckpt.item_counts[1:].astype(float)
    p = counts / counts.sum()
    picks = [rng.choice(len(p), size=length, replace=False, p=p) for _ in range(n)]
    return [[ckpt.items.ids[i] for i in row] for row in picks]


def _timed(call, seconds: float) -> list[float]:
    call()  # warm
    took, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(took) < 5:
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return took


def _rss_mb() -> float:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(base: Checkpoint, n_items: int, config: ScaleConfig, random: bool, work: Path) -> list[dict]:
    """The records of one catalogue: exact and two-stage, per history length."""
    before = _rss_mb()
    ckpt = grown(base, n_items, config.noise, config.seed, random)
    directory = work / f"{n_items}{'-random' if random else ''}"
    ckpt.save(directory)
    started = time.perf_counter()
    meta = write_index(directory, ckpt.model, ckpt.model_version, ckpt.item_counts,
                       IndexConfig(candidates=config.candidates, threads=os.cpu_count() or 1))
    index_s = time.perf_counter() - started
    del ckpt
    started = time.perf_counter()
    ckpt = load_checkpoint(directory)
    retriever = load_retriever(directory, ckpt.model_version, n_items)
    load_s = time.perf_counter() - started
    ckpt.model.all_item_vectors()  # the table every exact query multiplies, as a serving replica holds it
    rss = _rss_mb() - before
    torch.set_num_threads(config.threads)
    faiss = faiss_module()
    faiss.omp_set_num_threads(config.threads)
    catalog, serving = Catalog(ckpt), ServingConfig(checkpoint="unused", max_history=1_000)
    encode = encoder_for(ckpt.model, serving.engine, config.threads)  # as a replica ranks
    exact = Ranker(ckpt.model, None, encode)
    two_stage = Ranker(ckpt.model, Retrieval(retriever, config.candidates), encode)
    out = []
    for length in config.histories:
        if length > ckpt.config.max_len:
            continue
        asked = histories(ckpt, max(config.queries, BATCH), length, config.seed)
        queries = [decode_recommend(pb.RecommendRequest(history=h, k=10), catalog, serving) for h in asked]
        recall = recall_at([r.items for r in rank(exact, queries[:config.queries])],
                           [r.items for r in rank(two_stage, queries[:config.queries])])
        for path, ranker in (("exact", exact), ("two_stage", two_stage)):
            batch = _timed(lambda ranker=ranker, q=queries[:BATCH]: rank(ranker, q), config.timed_s)
            alone = _timed(lambda ranker=ranker, q=queries[:1]: rank(ranker, q), config.timed_s)
            out.append({"items": n_items, "history": length, "path": path, "structure": "random" if random else "grown",
                        "recall_at_10": 1.0 if path == "exact" else round(recall, 4),
                        "model_recs_s": round(BATCH / float(np.median(batch)), 1),
                        "one_query_p50_ms": round(1000 * float(np.median(alone)), 3),
                        "rss_mb": round(rss, 1), "load_s": round(load_s, 2),
                        "index_build_s": round(index_s, 2), "index_lists": meta["n_lists"],
                        "index_probe": meta["n_probe"], "candidates": config.candidates})
            print(json.dumps(out[-1]), flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    return out


def serve_layer(directories: dict[int, Path], config: ScaleConfig, history: int) -> list[dict]:
    """Through Ray Serve, straight at the Recommender replica (direct ingress): Recommend p50 at
    1 in flight, saturated Recommend calls/s at 32 in flight, Explain p50 at 1 in flight; per
    catalogue, with retrieval off (exact) and on (two-stage)."""
    from ray import serve

    from attnrec.bench.config import BenchConfig, single_replicas
    from attnrec.bench.servers import _load
    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG
    from attnrec.serving.server import deploy, direct_ingress_targets, free_port, start_ray, start_service

    start_ray(direct_ingress=True)
    serve_file = replace(ServeFile.load(DEFAULT_CONFIG), deployments=single_replicas(config.threads))
    started, out = False, []
    try:
        for n_items, directory in directories.items():
            for path, retrieval in (("exact", "off"), ("two_stage", "on")):
                serving = ServingConfig(checkpoint=str(directory), device="cpu", retrieval=retrieval,
                                        retrieval_candidates=config.candidates, max_history=1_000)
                if not started:
                    start_service(serving, serve_file, free_port(), free_port())
                    started = True
                else:
                    deploy(serving, serve_file)  # new args: Serve replaces the replicas
                bench = BenchConfig(str(directory), duration_s=config.timed_s, history=history)
                target = direct_ingress_targets()[0]
                alone = _load(target, str(directory), "recommend", bench, 1)
                saturated = _load(target, str(directory), "recommend", bench, 32)
                explain = _load(target, str(directory), "explain", replace(bench, duration_s=2 * config.timed_s), 1)
                out.append({"items": n_items, "history": history, "path": path, "recommend_p50_ms": alone.p50_ms,
                            "saturated_calls_s": saturated.calls_per_s, "saturated_p50_ms": saturated.p50_ms,
                            "explain_p50_ms": explain.p50_ms})
                print(json.dumps(out[-1]), flush=True)
    finally:
        serve.shutdown()
    return out


def run(checkpoint: str, config: ScaleConfig, work: Path | None = None, serving: bool = False) -> dict:
    """The model-alone records of every catalogue, and with `serving` the Serve layer's too
    (catalogues are kept under `work`, a temporary directory if None)."""
    base = load_checkpoint(resolve_checkpoint(checkpoint))
    records, served = [], []
    with tempfile.TemporaryDirectory(prefix="attnrec-scale-") as temporary:
        work = work or Path(temporary)
        for n in config.sizes:
            records += measure(base, n, config, random=False, work=work)
        records += measure(base, max(config.sizes), replace(config, histories=config.histories[:1]), random=True,
                           work=work)
        if serving:
            served = serve_layer({n: work / str(n) for n in config.sizes}, config, config.histories[0])
    for record in records:  # one record per (catalogue, history, path): the Serve layer's figures join it
        match = [s for s in served if (s["items"], s["history"], s["path"]) ==
                 (record["items"], record["history"], record["path"]) and record["structure"] == "grown"]
        record.update({k: v for k, v in (match[0] if match else {}).items() if k not in record})
    return {"config": asdict(config), "base": base.model_version, "git_commit": git_commit(),
            "engine": ServingConfig.engine, "scale": records}


def plot(records: list[dict], path: Path) -> None:
    """Each figure against catalogue size, log-log: one line per path and history length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = (("model_recs_s", "recommendations/s, batch 64"), ("one_query_p50_ms", "one query alone, p50 ms"),
               ("recall_at_10", "recall@10 against exact"))
    fig, axes = plt.subplots(1, len(figures), figsize=(13, 3.8))
    lines = sorted({(r["path"], r["history"]) for r in records if r["structure"] == "grown"})
    for ax, (key, title) in zip(axes, figures):
        for path_name, history in lines:
            rows = sorted((r for r in records if r["structure"] == "grown" and r["path"] == path_name
                           and r["history"] == history), key=lambda r: r["items"])
            ax.plot([r["items"] for r in rows], [r[key] for r in rows], marker="o",
                    linestyle="-" if path_name == "exact" else "--", label=f"{path_name}, history {history}")
        ax.set_xscale("log")
        if key != "recall_at_10":
            ax.set_yscale("log")
        ax.set_xlabel("items in the catalogue")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="attnrec bench --scale")
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--out", type=Path, default=Path("runs/scale"))
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    p.add_argument("--timed", type=float, default=ScaleConfig.timed_s)
    p.add_argument("--serve", action="store_true", help="also measure through Ray Serve (direct ingress)")
    args = p.parse_args(argv)
    config = ScaleConfig(sizes=tuple(int(s) for s in args.sizes.split(",")), timed_s=args.timed)
    result = run(args.checkpoint, config, serving=args.serve)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    plot(result["scale"], args.out / "scale.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
