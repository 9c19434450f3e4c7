"""Do the feature families earn their place? `attnrec ablate` trains item ids only, then + item
features, then + user features, for several seeds, and scores each on the test split.

It also scores what `attnrec train` does with the same runs: for each seed, the candidate with
the best validation NDCG@10 (`--features auto`), and that candidate trained again on the
validation items too for its best epoch's number of epochs (the refit, model/refit.py), both
measured on the test split neither saw.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from attnrec.model.checkpoint import Checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.evaluate import cases, evaluate, model_scorer
from attnrec.model.refit import refit
from attnrec.model.selection import Fit, candidates


def held_out_metrics(ckpt: Checkpoint, prepared) -> dict[str, float]:
    """Leave-one-out test HR@10 and NDCG@10 of a freshly trained checkpoint, on its own split."""
    split = prepared.split
    device = next(ckpt.model.parameters()).device
    scorer = model_scorer(ckpt.model, lambda rows: ckpt.user_inputs(split.full.users[rows], device))
    result = evaluate(scorer, cases(split, "test"))
    return {"HR@10": result["HR@10"], "NDCG@10": result["NDCG@10"]}


def ablate(prepared, out: Path, seeds: Sequence[int], model_config: ModelConfig, config: TrainConfig, fit: Fit,
           fingerprint: str, progress: bool) -> dict:
    """Every candidate family set for every seed, each checkpoint kept under out/seed<S>/<name>,
    and the refit of each seed's choice under out/seed<S>/refit."""
    options = list(reversed(candidates(bool(prepared.item_encoders), bool(prepared.user_encoders))))
    runs, refits = [], []
    for seed in seeds:
        trained: dict[str, Checkpoint] = {}
        for candidate in options:
            if progress:
                print(f"seed {seed}, {candidate.name}", flush=True)
            train_config = candidate.apply(replace(config, seed=seed))
            ckpt = fit(prepared, out / f"seed{seed}" / candidate.name, model_config, train_config, fingerprint,
                       progress)
            trained[candidate.name] = ckpt
            runs.append(_record(seed, candidate.name, ckpt, prepared))
        chosen = chosen_by_validation([r for r in runs if r["seed"] == seed])[0]
        if progress:
            print(f"seed {seed}, refit of {chosen['features']}", flush=True)
        validated = trained[chosen["features"]]
        refitted = refit(prepared, out / f"seed{seed}" / "refit", model_config, validated,
                         validated.metadata["best_epoch"], fit, fingerprint, progress)
        if refitted is not None:
            refits.append({**_record(seed, chosen["features"], refitted, prepared),
                           "train_seconds": refitted.metadata["refit"]["train_seconds"]})
    return {"runs": runs, "refits": refits, "summary": summarize(runs, [c.name for c in options], refits)}


def _record(seed: int, features: str, ckpt: Checkpoint, prepared) -> dict:
    m = ckpt.metadata
    return {"seed": seed, "features": features, "valid_NDCG@10": m["valid_NDCG@10"],
            **{f"test_{k}": v for k, v in held_out_metrics(ckpt, prepared).items()},
            "best_epoch": m["best_epoch"], "train_seconds": m.get("train_seconds"), "stopped_by": m.get("stopped_by")}


def chosen_by_validation(runs: list[dict]) -> list[dict]:
    """Per seed, the run `--features auto` keeps: the best validation NDCG@10 (the richer on a tie)."""
    by_seed: dict[int, list[dict]] = {}
    for run in runs:
        by_seed.setdefault(run["seed"], []).append(run)
    return [max(reversed(group), key=lambda r: r["valid_NDCG@10"]) for group in by_seed.values()]


def summarize(runs: list[dict], order: list[str], refits: list[dict] = ()) -> dict:
    """Mean and standard deviation over seeds of each family set, of auto's choice, and of its refit."""
    groups = {name: [r for r in runs if r["features"] == name] for name in order}
    groups["auto"] = chosen_by_validation(runs)
    groups["refit"] = list(refits)
    out = {}
    for name, group in groups.items():
        if not group:
            continue
        row = {"seeds": len(group)}
        for key in ("test_NDCG@10", "test_HR@10", "valid_NDCG@10"):
            values = [r[key] for r in group]
            row[key] = statistics.fmean(values)
            row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        if name in ("auto", "refit"):
            row["chosen"] = [r["features"] for r in group]
        out[name] = row
    return out


def summary_table(summary: dict, popularity: dict[str, float]) -> str:
    """The summary as a Markdown table, mean ± standard deviation over seeds."""
    lines = ["| features | test NDCG@10 | test HR@10 | validation NDCG@10 | seeds |", "|---|---|---|---|---|"]
    for name, row in summary.items():
        label = name
        if name == "auto":
            label = f"auto (chose {', '.join(row['chosen'])})"
        elif name == "refit":
            label = "auto, then refit (`attnrec train`'s default)"
        lines.append(f"| {label} | {row['test_NDCG@10']:.4f} ± {row['test_NDCG@10_std']:.4f} | "
                     f"{row['test_HR@10']:.4f} ± {row['test_HR@10_std']:.4f} | "
                     f"{row['valid_NDCG@10']:.4f} ± {row['valid_NDCG@10_std']:.4f} | {row['seeds']} |")
    lines.append(f"| popularity | {popularity['NDCG@10']:.4f} | {popularity['HR@10']:.4f} | | |")
    return "\n".join(lines)
