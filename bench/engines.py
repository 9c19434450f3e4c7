"""`attnrec bench --engines`: the Recommender's forward pass on three engines, side by side:
eager torch, `torch.compile` (inductor) and ONNX Runtime (what CPU replicas run by default).

Each engine computes the user states of a batch of histories (`SASRec.encode`); ONNX
Runtime's is the replicas' own (model/onnx_encoder.py). Every item's score against the cached
item table (B, N+1), masking and top-k then run in torch for all three alike, as on a
replica, so the figures are what a Recommend batch costs the model and differ by the engine
alone. One thread each (what a `num_cpus: 1` replica gets), the same batches, engines taken
in turn within every round so that the machine's drift falls on all of them; the median over
rounds is kept. Each engine's scores are checked against eager torch's on the same batch.

    attnrec bench --engines --out runs/engines     # writes OUT/engines.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attnrec.bench.config import git_commit
from attnrec.bench.inprocess import queries
from attnrec.model.checkpoint import load_checkpoint, resolve_checkpoint
from attnrec.model.inputs import stack_users
from attnrec.model.onnx_encoder import Encode, export_encoder
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad

ENGINES = ("eager", "compile", "onnxruntime")


@dataclass(frozen=True)
class EnginesConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    history: int = 50
    k: int = 10
    rounds: int = 15  # timed rounds per engine and batch size, engines in turn
    calls: int = 10  # calls per round; a round's figure is their mean
    warmup: int = 3  # untimed calls per engine and batch size (compile's shapes settle here)
    threads: int = 1


def eager(model: SASRec) -> Encode:
    def run(seq, user):
        with torch.inference_mode():
            return model.encode(seq, user)

    return run


def compiled(model: SASRec) -> Encode:
    fn = torch.compile(model.encode)

    def run(seq, user):
        with torch.no_grad():
            return fn(seq, user)

    return run


def inputs(ckpt, batch_size: int, config: EnginesConfig) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """A batch as the Recommender builds it: histories left-padded to max_len, user codes stacked."""
    batch = queries(ckpt, batch_size, history=config.history, k=config.k)
    seq = torch.as_tensor(left_pad([q.history for q in batch], ckpt.model.config.max_len))
    return seq, stack_users([q.user for q in batch], ckpt.model.config.user_features, "cpu")


def scores_of(model: SASRec, encode: Encode, seq: torch.Tensor, user: list[torch.Tensor] | None) -> torch.Tensor:
    """Every item's score (B, N+1) from the engine's user states."""
    with torch.inference_mode():
        return encode(seq, user) @ model.all_item_vectors().T


def top_k(scores: torch.Tensor, seq: torch.Tensor, k: int) -> torch.Tensor:
    """What follows every engine alike: padding and seen items masked, the top k."""
    scores = scores.clone()
    scores.scatter_(1, seq, float("-inf"))  # seq holds seen items and padding (0)
    return scores.topk(k, dim=1).indices


@dataclass(frozen=True)
class EngineRow:
    engine: str
    batch_size: int
    ms_per_batch: float  # median over rounds
    recs_per_s: float
    max_abs_diff: float  # largest score difference from eager torch on the same batch
    same_top_k: bool  # the same top-k items as eager torch, in order
    setup_s: float  # export or compilation, and the warm-up calls


def run(checkpoint: str, config: EnginesConfig = EnginesConfig(), engines: tuple[str, ...] = ENGINES,
        progress: Callable[[str], None] = print) -> dict:
    torch.set_num_threads(config.threads)
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint), "cpu")
    model = ckpt.model.eval()
    batches = {b: inputs(ckpt, b, config) for b in config.batch_sizes}
    made: dict[str, Encode] = {}
    setup: dict[str, float] = {}
    for name in engines:
        start = time.perf_counter()
        if name == "eager":
            made[name] = eager(model)
        elif name == "compile":
            made[name] = compiled(model)
        elif name == "onnxruntime":
            made[name] = export_encoder(model, config.threads)
        else:
            raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        for seq, user in batches.values():  # warm-up: compile traces its shapes here
            for _ in range(config.warmup):
                scores_of(model, made[name], seq, user)
        setup[name] = round(time.perf_counter() - start, 2)
        progress(f"{name}: ready in {setup[name]} s")
    rows = []
    for b, (seq, user) in batches.items():
        reference = scores_of(model, eager(model), seq, user)
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(config.rounds):
            for name in engines:
                start = time.perf_counter()
                for _ in range(config.calls):
                    top_k(scores_of(model, made[name], seq, user), seq, config.k)
                times[name].append((time.perf_counter() - start) / config.calls)
        for name in engines:
            scores = scores_of(model, made[name], seq, user)
            ms = 1000 * statistics.median(times[name])
            rows.append(EngineRow(name, b, round(ms, 3), round(b / ms * 1000, 1),
                                  float((scores - reference).abs().max()),
                                  bool(torch.equal(top_k(scores, seq, config.k), top_k(reference, seq, config.k))),
                                  setup[name]))
            progress(f"batch {b:>3}  {name:<12} {ms:8.3f} ms  {b / ms * 1000:9.1f} recs/s")
    return {"config": asdict(config), "checkpoint": checkpoint, "git_commit": git_commit(),
            "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
            "engines": [asdict(r) for r in rows]}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="attnrec bench --engines", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--out", type=Path, default=Path("runs/engines"))
    p.add_argument("--batch-sizes", default=",".join(map(str, EnginesConfig.batch_sizes)))
    p.add_argument("--rounds", type=int, default=EnginesConfig.rounds)
    p.add_argument("--engines", default=",".join(ENGINES), help=f"any of {', '.join(ENGINES)}")
    args = p.parse_args(argv)
    config = EnginesConfig(batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), rounds=args.rounds)
    result = run(args.checkpoint, config, tuple(args.engines.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'engines.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
