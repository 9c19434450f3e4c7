"""Reading a bench run: its plot (bench.png), its table, and two runs side by side."""

from __future__ import annotations

from pathlib import Path

from attnrec.bench.goals import INGRESSES, at, goal_ratios, saturated
from attnrec.bench.records import Load, Report, Round

SHORT = {"proxy": "proxy", "direct_ingress": "direct"}


def model_limit(report: Report) -> float:
    """The model alone at the servers' thread count, best batch size: the limit a server approaches."""
    return max(m.recs_per_s for m in report.model_alone if m.threads == report.config.threads)


def sweeps(r: Round) -> dict[str, list[Load]]:
    """Every closed-loop Recommend sweep of a round, by a name for people."""
    out = {"plain grpc.aio": r.plain.recommend}
    for ingress, ray in r.ray.items():
        out[f"Ray {SHORT[ingress]}, batching on"] = ray.batching_on
        out[f"Ray {SHORT[ingress]}, batching off"] = ray.batching_off
    return out


def plot(report: Report, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, *later = report.rounds
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, sweep in sweeps(first).items():
        xs = [s.concurrency for s in sweep]
        (line,) = axes[0].plot(xs, [s.calls_per_s for s in sweep], marker="o", label=name)
        for other in later:  # later rounds' throughput: unlabelled points in the same colour, for the spread
            axes[0].plot(xs, [s.calls_per_s for s in sweeps(other)[name]], marker="o", linestyle="none",
                         color=line.get_color(), alpha=0.4)
        (line,) = axes[1].plot(xs, [s.p50_ms for s in sweep], marker="o", label=f"{name} p50")
        axes[1].plot(xs, [s.p99_ms for s in sweep], marker="x", linestyle="--", color=line.get_color(),
                     label=f"{name} p99")
    axes[0].axhline(model_limit(report), color="grey", linestyle=":",
                    label=f"model alone, {report.config.threads} thread(s) (best batch)")
    for ax, ylabel in ((axes[0], "Recommend calls / s"), (axes[1], "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    commit = report.versions.get("git_commit") or "unknown commit"
    title = f"{report.created[:10]}, {commit}"
    if len(report.rounds) > 1:
        title += f"; round 1 of {len(report.rounds)}, faint points: throughput in the later rounds"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)
    plt.close(fig)


def _load_line(name: str, s: Load) -> str:
    return (f"{name:<28}{s.concurrency:>10}{s.calls_per_s:>10.1f}{s.p50_ms or 0:>9.1f}{s.p95_ms or 0:>9.1f}"
            f"{s.p99_ms or 0:>9.1f}{s.mean_batch_size or '':>7}{s.client_cpu_share:>11.2f}  {s.errors or ''}")


def table(report: Report) -> str:
    first = report.rounds[0]
    users = report.config.batch_users
    lines = ["model alone (batched forward + top-k):"]
    lines += [f"  {m.threads} thread(s), batch {m.batch_size:>4}: {m.recs_per_s:>9,.0f} recs/s  "
              f"{m.ms_per_batch:>8.2f} ms/batch" for m in report.model_alone]
    m = first.model_alone_beside_batch
    lines.append(f"  again just before RecommendBatch, {m.threads} thread(s), batch {m.batch_size}: "
                 f"{m.recs_per_s:,.0f} recs/s (RecommendBatch's ratio is read against this)")
    lines.append(f"{'Recommend':<28}{'in flight':>10}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                 f"{'batch':>7}{'client cpu':>11}  errors")
    lines += [_load_line(name, s) for name, sweep in sweeps(first).items() for s in sweep]
    open_loops = [("plain grpc.aio", first.plain.open_loop)]
    open_loops += [(f"Ray {INGRESSES[ingress]}", ray.open_loop) for ingress, ray in first.ray.items()]
    for name, rows in open_loops:
        for o in rows:
            lines.append(f"{name} open loop at {o.rate:.0f}/s: {o.calls_per_s:.1f} calls/s, p50 {o.p50_ms} ms, "
                         f"p95 {o.p95_ms} ms, p99 {o.p99_ms} ms, errors {o.errors or 0}")
    b = first.plain.recommend_batch
    lines.append(f"plain grpc.aio RecommendBatch ({users} users/call, 2 in flight): "
                 f"{b.recs_per_s:,.0f} recs/s, p50 {b.p50_ms} ms")
    for ingress, ray in first.ray.items():
        b, e = ray.recommend_batch, ray.explain
        lines.append(f"Ray Serve {INGRESSES[ingress]}: RecommendBatch ({users} users/call, 2 in flight) "
                     f"{b.recs_per_s:,.0f} recs/s, p50 {b.p50_ms} ms; Explain (1 in flight) "
                     f"{e.calls_per_s:.2f} calls/s, p50 {e.p50_ms} ms, p99 {e.p99_ms} ms")
    lines.append("Explain in-process, p50 ms: " + ", ".join(f"{x.method} @{x.n_steps} steps {x.p50_ms}"
                                                          for x in report.explain_methods))
    if len(report.rounds) > 1:
        lines.append(f"the tables above are round 1 of {len(report.rounds)}; "
                     "ratios are the median over the rounds [min-max]")

    def spread(key: str) -> str:
        values = [one[key] for one in report.ratios_by_round if one.get(key) is not None]
        return f" [{min(values)}-{max(values)}]" if len(values) > 1 else ""

    lines.append("ratios: " + (", ".join(f"{k} = {v}{spread(k)}" for k, v in report.ratios.items())
                               or "none, no Ray Serve layer in this run"))
    return "\n".join(lines)


def headline(report: Report) -> dict[str, float | None]:
    """The figures worth comparing between runs: round 1's rates and latencies, the goals' medians."""
    first = report.rounds[0]

    def p50_at_1(sweep: list[Load]) -> float | None:
        return p.p50_ms if (p := at(sweep, 1)) else None

    out: dict[str, float | None] = {
        f"model alone recs/s ({report.config.threads} thread(s))": model_limit(report),
        "plain gRPC calls/s": saturated(first.plain.recommend),
        "plain gRPC p50 ms at 1 in flight": p50_at_1(first.plain.recommend),
        "plain gRPC RecommendBatch recs/s": first.plain.recommend_batch.recs_per_s,
        "model alone just before RecommendBatch": first.model_alone_beside_batch.recs_per_s,
    }
    for ingress, ray in first.ray.items():
        out[f"{ingress}: Recommend calls/s"] = saturated(ray.batching_on)
        out[f"{ingress}: Recommend p50 ms at 1 in flight"] = p50_at_1(ray.batching_on)
        out[f"{ingress}: RecommendBatch recs/s"] = ray.recommend_batch.recs_per_s
        out[f"{ingress}: Explain p50 ms"] = ray.explain.p50_ms
    return {**out, **goal_ratios(report.rounds)[0]}


def compare(a: Report, b: Report) -> str:
    """Two runs side by side, with B's figures as a share of A's."""
    ha, hb = headline(a), headline(b)
    lines = [f"{'':<48}{a.versions.get('git_commit') or 'A':>12}{b.versions.get('git_commit') or 'B':>12}{'B/A':>8}"]
    for key in dict.fromkeys([*ha, *hb]):
        va, vb = ha.get(key), hb.get(key)
        ratio = f"{vb / va:.2f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else ""
        lines.append(f"{key:<48}{va!s:>12}{vb!s:>12}{ratio:>8}")
    return "\n".join(lines)
