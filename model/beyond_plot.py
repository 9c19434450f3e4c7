"""`attnrec evaluate --plot`: NDCG@10 per user group with 95% intervals, and the exposure
Lorenz curve of the model's top 10 (how unevenly the catalogue is shown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_beyond(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["groups"]
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(4.2 * (len(groups) + 1), 3.8), squeeze=False)
    for ax, (feature, table) in zip(axes[0], groups.items()):
        names = list(table)
        rows = [table[n] for n in names]
        means = np.array([r["NDCG@10"] for r in rows])
        errors = np.array([[m - r["NDCG@10_low"] for m, r in zip(means, rows)],
                           [r["NDCG@10_high"] - m for m, r in zip(means, rows)]])
        ax.bar(range(len(names)), means, yerr=errors, capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(names)), [f"{n}\n({r['users']})" for n, r in zip(names, rows)], fontsize=7,
                      rotation=30 if len(names) > 4 else 0)
        ax.set_title(f"NDCG@10 by {feature}", fontsize=9)
    lorenz = np.array(result["beyond_accuracy"]["lorenz_at_10"])
    ax = axes[0][-1]
    ax.plot(np.linspace(0, 1, len(lorenz)), lorenz, label="top 10 exposure")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="equal exposure")
    ax.set_title(f"Lorenz curve, Gini {result['beyond_accuracy']['exposure_gini_at_10']:.2f}", fontsize=9)
    ax.set_xlabel("share of items (least shown first)", fontsize=8)
    ax.set_ylabel("share of top-10 slots", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
