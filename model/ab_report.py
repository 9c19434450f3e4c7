"""The A/B readout of a feedback log: per model_version, what was shown and what users did
with it, and each version against a control.

An event counts for a version when its (request_id, item_id) is an impression of that
version; each (request_id, item_id, event_type) counts once, so repeated clicks on one shown
item do not inflate CTR. Events whose request_id matches no impression are organic
("unattributed"); those in a logged answer on an item it did not show are "not_shown".

Caveat: the intervals and the z-test treat impressions as independent draws, but the items of
one answer, and the answers of one user, are clustered: a user who clicks a lot clicks in many
answers. The intervals are therefore optimistic. `ctr_design_effect` (per-user delta method)
says by how much: multiply a CTR interval's half-width by its square root.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from attnrec.model.feedback_log import read_events, read_impressions

OUTCOMES = ("click", "purchase")  # the event types a version is credited with
Z95 = 1.959963984540054  # two-sided 95% normal quantile
ALPHA = 0.05


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    # Wilson, not the per-user delta method: it stays inside [0, 1] and is sensible at small
    # counts and rates near 0 (purchase rates), and is defined with one user; the clustering it
    # ignores is reported beside it as a design effect instead.
    if trials == 0:
        return float("nan"), float("nan")
    p, zz = successes / trials, z * z
    centre = (p + zz / (2 * trials)) / (1 + zz / trials)
    half = z * math.sqrt(p * (1 - p) / trials + zz / (4 * trials * trials)) / (1 + zz / trials)
    # exact at the edges: rounding would otherwise leave a bound a hair inside (0 clicks, low 3e-18)
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == trials else centre + half)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> dict:
    """Rate 2 minus rate 1: difference, unpooled 95% interval, two-sided pooled z-test p-value."""
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p2 - p1) / se0 if se0 > 0 else 0.0  # both rates 0 (or 1): no difference to see
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"difference": p2 - p1, "low": p2 - p1 - Z95 * se, "high": p2 - p1 + Z95 * se, "z": z,
            "p_value": p_value, "significant": p_value < ALPHA}


def design_effect(clicks: np.ndarray, shown: np.ndarray) -> float | None:
    """Variance of the per-user ratio estimator over the binomial one (None: under 2 users or CTR 0 or 1)."""
    n, total = len(shown), float(shown.sum())
    ctr = float(clicks.sum()) / total
    if n < 2 or ctr in (0.0, 1.0):
        return None
    clustered = n / (n - 1) * float(((clicks - ctr * shown) ** 2).sum()) / total**2
    return clustered / (ctr * (1 - ctr) / total)


def _distinct(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.select(keys).group_by(keys).aggregate([])


def _by_type(events: pa.Table) -> dict[str, int]:
    counts = events.column("event_type").value_counts().to_pylist() if events.num_rows else []
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def ab_report(root: str | Path, control: str | None = None) -> dict:
    """Per-version counts, rates with intervals, and each version against `control` (default:
    the version with the most impressions)."""
    impressions, events = read_impressions(root), read_events(root)
    if impressions.num_rows == 0:
        raise ValueError(f"no impressions were logged under {root}: nothing to compare (is it the feedback log's"
                         " directory, and has the service run with logging on?)")
    shown = _distinct(impressions, ["request_id", "item_id", "model_version", "user_id"])
    acted = _distinct(events.filter(pc.is_in(events.column("event_type"), pa.array(OUTCOMES))),
                      ["request_id", "item_id", "event_type"])
    credited = acted.join(shown, keys=["request_id", "item_id"], join_type="inner")
    answered = pc.is_in(events.column("request_id"), value_set=pc.unique(impressions.column("request_id")))
    in_answer = events.filter(answered)
    not_shown = in_answer.join(_distinct(impressions, ["request_id", "item_id"]), keys=["request_id", "item_id"],
                               join_type="left anti")
    per_user = impressions.group_by(["model_version", "user_id"]).aggregate([("item_id", "count")]).join(
        credited.filter(pc.equal(credited.column("event_type"), "click"))
        .group_by(["model_version", "user_id"]).aggregate([("item_id", "count")]),
        keys=["model_version", "user_id"], left_suffix="_shown", right_suffix="_clicked")
    versions = {}
    for version in sorted(set(impressions.column("model_version").to_pylist())):
        mine = impressions.filter(pc.equal(impressions.column("model_version"), version))
        got = _by_type(credited.filter(pc.equal(credited.column("model_version"), version)))
        users = per_user.filter(pc.equal(per_user.column("model_version"), version))
        n, clicks, purchases = mine.num_rows, got.get("click", 0), got.get("purchase", 0)
        ctr_low, ctr_high = wilson(clicks, n)
        buy_low, buy_high = wilson(purchases, n)
        versions[version] = {
            "impressions": n, "answers": len(pc.unique(mine.column("request_id"))),
            "users": len(pc.unique(mine.column("user_id"))), "clicks": clicks, "ctr": clicks / n,
            "ctr_low": ctr_low, "ctr_high": ctr_high,
            "ctr_design_effect": design_effect(pc.fill_null(users.column("item_id_count_clicked"), 0).to_numpy(),
                                               users.column("item_id_count_shown").to_numpy()),
            "purchases": purchases, "purchase_rate": purchases / n,
            "purchase_rate_low": buy_low, "purchase_rate_high": buy_high}
    if control is None:
        control = min(versions, key=lambda v: (-versions[v]["impressions"], v))  # ties: first by name
    elif control not in versions:
        raise ValueError(f"control {control!r} has no impressions under {root}; versions: {', '.join(versions)}")
    base = versions[control]
    comparisons = {v: two_proportion_test(base["clicks"], base["impressions"], row["clicks"], row["impressions"])
                   for v, row in versions.items() if v != control}
    return {"root": str(root), "control": control, "versions": versions, "comparisons": comparisons,
            "unattributed": _by_type(events.filter(pc.invert(answered))), "not_shown": _by_type(not_shown)}


def _rate(value: float, low: float, high: float) -> str:
    return f"{value:.2%} [{low:.2%}, {high:.2%}]"


def report_text(report: dict) -> str:
    """An aligned table for a terminal, then each version against the control."""
    control, versions = report["control"], report["versions"]
    header = ["version", "users", "answers", "impressions", "clicks", "CTR [95%]", "purchases", "purchase rate [95%]"]
    rows = [header]
    for v in [control] + [v for v in versions if v != control]:
        r = versions[v]
        rows.append([v + (" (control)" if v == control else ""), str(r["users"]), str(r["answers"]),
                     str(r["impressions"]), str(r["clicks"]), _rate(r["ctr"], r["ctr_low"], r["ctr_high"]),
                     str(r["purchases"]),
                     _rate(r["purchase_rate"], r["purchase_rate_low"], r["purchase_rate_high"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    for v, c in report["comparisons"].items():
        lines.append(f"{v} vs {control}: CTR {c['difference']:+.2%} [{c['low']:+.2%}, {c['high']:+.2%}], "
                     f"p = {c['p_value']:.3g}, {'significant' if c['significant'] else 'not significant'}")
    for name, label in (("unattributed", "unattributed (organic)"), ("not_shown", "on items not shown")):
        if report[name]:
            lines.append(f"{label}: " + ", ".join(f"{t} {n}" for t, n in report[name].items()))
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path) -> Path:
    """PNG of CTR and purchase rate per version with their 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = report["versions"]
    names = list(versions)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8))
    for ax, (key, title) in zip(axes, (("ctr", "CTR"), ("purchase_rate", "purchase rate"))):
        values = np.array([versions[v][key] for v in names])
        errors = np.clip([values - [versions[v][f"{key}_low"] for v in names],
                          [versions[v][f"{key}_high"] for v in names] - values], 0, None)
        colors = ["#DD8452" if v == report["control"] else "#4C72B0" for v in names]
        ax.bar(range(len(names)), values, yerr=errors, capsize=3, color=colors)
        # a model_version (data-epoch-digest) is long: one part a line, so neighbours never overlap
        ax.set_xticks(range(len(names)), ["\n".join(v.split("-")) + f"{' (control)' * (v == report['control'])}\n"
                                          f"{versions[v]['impressions']:,} shown" for v in names], fontsize=7)
        ax.set_title(f"{title} per version, 95% interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
