"""The project's performance goals, read as ratios from one run's records.

- Ray Serve's saturated Recommend rate against the plain gRPC server's (goal: at least 0.6)
- RecommendBatch's users per second against the model alone at the same batch size,
  measured just before it (goal: at least 0.8)
- Recommend with @serve.batch against batching off, at 32 in flight (goal: at least 3x)
- Explain p50 against Recommend p50, both at 1 in flight (goal: at most 10x)
"""

from __future__ import annotations

import numpy as np

from attnrec.bench.records import Load, Round

INGRESSES = {"proxy": "gRPC proxy", "direct_ingress": "direct ingress (replica port)"}


def at(sweep: list[Load], concurrency: int) -> Load | None:
    return next((r for r in sweep if r.concurrency == concurrency), None)


def saturated(sweep: list[Load]) -> float:
    return max(r.calls_per_s for r in sweep)


def round_ratios(r: Round) -> dict[str, float | None]:
    """Each goal's ratio in one round, for each way into Ray Serve."""
    plain = saturated(r.plain.recommend)
    model = r.model_alone_beside_batch.recs_per_s
    out: dict[str, float | None] = {}
    for ingress in INGRESSES:
        if (ray := r.ray.get(ingress)) is None:
            continue
        out[f"{ingress}: ray_vs_plain_saturated"] = round(saturated(ray.batching_on) / plain, 3)
        out[f"{ingress}: recommend_batch_vs_model_alone"] = round(ray.recommend_batch.recs_per_s / model, 3)
        c = 32 if at(ray.batching_on, 32) else max(p.concurrency for p in ray.batching_on)
        on, off = at(ray.batching_on, c), at(ray.batching_off, c)
        out[f"{ingress}: batching_on_vs_off_at_{c}"] = (round(on.calls_per_s / off.calls_per_s, 3)
                                                        if off and off.calls_per_s else None)
        rec1 = at(ray.batching_on, 1)
        out[f"{ingress}: explain_p50_vs_recommend_p50_at_1"] = (
            round(ray.explain.p50_ms / rec1.p50_ms, 2) if ray.explain.p50_ms and rec1 and rec1.p50_ms else None)
    return out


def goal_ratios(rounds: list[Round]) -> tuple[dict[str, float | None], list[dict[str, float | None]]]:
    """(each goal's median over the rounds, each round's own ratios)."""
    by_round = [round_ratios(r) for r in rounds]
    median = {}
    for key in by_round[0] if by_round else {}:
        values = [r[key] for r in by_round if r.get(key) is not None]
        median[key] = round(float(np.median(values)), 3) if values else None
    return median, by_round
