"""Pictures for people: a PNG heatmap and a self-contained HTML view of one explanation."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np

from attnrec.explain.explain import Explanation


def png(e: Explanation, labels: Sequence[str], title: str, removed: frozenset[int] = frozenset(),
        note: str = "") -> bytes:
    """Heatmap of attention from the final position (one row per layer x head, then rollout),
    above bars of the IG attribution and the combined score, one column per position.
    `removed`: positions (indices of `labels`) of a counterfactual set, marked in red and
    explained by `note` under the picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"L{layer + 1} h{h + 1}", att[h]) for layer, att in enumerate(e.attention_layers) for h in range(len(att))]
    rows.append(("rollout", e.rollout))
    T = len(labels)
    fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.35 * T + 2), 2.2 + 0.3 * len(rows) + 4.0),
                             gridspec_kw={"height_ratios": [max(1.0, 0.3 * len(rows)), 1.2, 1.2]})
    heat = np.stack([r for _, r in rows])
    image = axes[0].imshow(heat, aspect="auto", cmap="viridis", vmin=0.0)  # attention weights: 0 = ignored
    # beside the heatmap, not inside its width, so its columns stay above the bars' columns
    bar = fig.colorbar(image, cax=axes[0].inset_axes([1.01, 0.0, 0.015, 1.0]))
    bar.set_label("attention weight", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    axes[0].set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
    axes[0].set_xticks([])
    axes[0].set_title(title, fontsize=9)
    for ax, values, name in ((axes[1], e.attribution, "IG attribution (logits)"), (axes[2], e.combined, "combined")):
        ax.bar(range(T), values, color=np.where(values >= 0, "#2a9d8f", "#e76f51"))
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_ylabel(name, fontsize=7)
        ax.set_xlim(-0.5, T - 0.5)
        ax.set_xticks([])
    axes[2].set_xticks(range(T), [f"\u2717 {label}" if i in removed else label for i, label in enumerate(labels)],
                       rotation=75, fontsize=6)
    for i, tick in enumerate(axes[2].get_xticklabels()):
        if i in removed:
            tick.set_color("#c1121f")
            tick.set_fontweight("bold")
            for ax in axes[1:]:
                ax.axvspan(i - 0.5, i + 0.5, color="#c1121f", alpha=0.12, linewidth=0)
    if note:
        axes[2].set_xlabel(note, fontsize=7, color="#c1121f")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # keeps the colour bar
    plt.close(fig)
    return buf.getvalue()


def _score_line(e: Explanation) -> str:
    """The score, and what integrated gradients says of it when it ran."""
    if e.convergence_delta is None:
        return f"score {e.score:.3f}; integrated gradients not run"
    return (f"score {e.score:.3f} (baseline {e.baseline_score:.3f}); IG {e.n_steps} steps, "
            f"convergence delta {e.convergence_delta:+.2e}")


def html_page(e: Explanation, labels: Sequence[str], title: str, features: Sequence[tuple[str, str, float]],
              picture: bytes | None = None, removed: frozenset[int] = frozenset(), note: str = "",
              reason: str = "") -> str:
    """A self-contained HTML page: the reason sentence, per-position table with shaded cells (a
    counterfactual set marked, `note` saying what it means), top features, the PNG."""
    def shade(v: float, top: float) -> str:
        a = min(1.0, abs(v) / top) if top > 0 else 0.0
        return f"rgba({'42,157,143' if v >= 0 else '231,111,81'},{a:.2f})"

    top = float(np.abs(e.combined).max()) or 1.0
    rows = "".join(
        f"<tr><td>{'&#10007; ' * (i in removed)}{html.escape(label)}</td><td>{e.attention[i]:.3f}</td>"
        f"<td>{e.rollout[i]:.3f}</td>"
        f"<td>{e.attribution[i]:+.3f}</td>"
        f"<td style='background:{shade(e.combined[i], top)}'>{e.combined[i]:+.3f}</td></tr>"
        for i, label in enumerate(labels)
    )
    feats = "".join(f"<tr><td>{html.escape(f)}</td><td>{html.escape(v)}</td><td>{a:+.3f}</td></tr>"
                    for f, v, a in features[:15])
    img = f"<img src='data:image/png;base64,{base64.b64encode(picture).decode()}'>" if picture else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
            "td:first-child{text-align:left}</style>"
            f"</head><body><h2>{html.escape(title)}</h2>"
            + (f"<p><b>{html.escape(reason)}</b></p>" if reason else "") +
            f"<p>{html.escape(_score_line(e))}</p>"
            + (f"<p style='color:#c1121f'>{html.escape(note)}</p>" if note else "") +
            "<table><tr><th>history (oldest first)</th><th>attention</th><th>rollout</th><th>IG</th>"
            "<th>combined</th></tr>"
            f"{rows}</table><h3>Features</h3><table><tr><th>feature</th><th>value</th><th>IG</th></tr>{feats}</table>"
            f"{img}</body></html>")
