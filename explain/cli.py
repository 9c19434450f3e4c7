"""`attnrec explain-eval`: measured faithfulness of each explanation method."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnrec.explain.config import ExplainConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("explain-eval", help="deletion faithfulness of each explanation method, on held-out users")
    e.add_argument("--checkpoint", default="default", help="checkpoint directory (default: the embedded model)")
    e.add_argument("--interactions", type=Path, help="Parquet interactions (default: embedded MovieLens)")
    e.add_argument("--users", type=int, default=100, help="number of users to explain")
    e.add_argument("--history", type=int, default=50, help="most recent items kept per user")
    e.add_argument("--n-steps", type=int, default=0,
                   help=f"integrated-gradients steps (default {ExplainConfig.n_steps})")
    e.add_argument("--seed", type=int, default=0, help="which users are sampled, and the random deletions")
    e.add_argument("--counterfactual", action="store_true",
                   help="instead: the smallest sets of history items that take each user's top-1 out of the "
                        "top --rank, against removing the newest items one by one; sizes and search latency")
    e.add_argument("--curves", action="store_true",
                   help="instead: comprehensiveness and sufficiency at 1/5/10/20/50%% of the history, deleting "
                        "and masking, for every method, recency and random, normalised by search bounds, and POS@10")
    e.add_argument("--feature-reasons", action="store_true",
                   help="instead: PN, PS and F_NS of the two side-feature values integrated gradients credits "
                        "most, against two random ones and the explained item's own")
    e.add_argument("--planted-brands", type=int, metavar="N",
                   help="instead, on a synthetic shop made with N loyal brands (attnrec data synthetic "
                        "--loyal-brands N): how often the first feature reason is the planted brand")
    e.add_argument("--rank", type=int, default=10, help="with --counterfactual: the rank the item must leave")
    e.add_argument("--max-size", type=int, default=5, help="with --counterfactual: largest set searched")
    e.add_argument("--exhaustive", type=int, default=0, metavar="SIZE",
                   help="with --counterfactual: also find each user's true smallest set up to SIZE by trying every "
                        "set (slow: C(history, SIZE) sets), the bound on what any search can reach")
    e.add_argument("--out", type=Path, default=Path("runs/explain-eval"), help="directory for JSON and plot")
    e.set_defaults(run=cmd_explain_eval)


def cmd_explain_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from attnrec.explain.evaluate import METHODS, explain_eval
    from attnrec.model.checkpoint import load_checkpoint, resolve_checkpoint
    from attnrec.model.cli import embedded_movielens
    from attnrec.model.data import load_tables
    from attnrec.model.sequences import Vocab, build_sequences, leave_one_out

    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    tables = load_tables(args.interactions or embedded_movielens()["interactions"])
    users = Vocab.from_columns(tables.interactions.column("user_id"))
    split = leave_one_out(build_sequences(tables.interactions, ckpt.items, users)[0])
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(split.eval_rows, size=min(args.users, len(split.eval_rows)), replace=False)
    histories = [split.full.get(r)[:-1][-args.history:] for r in rows]  # the test-time history
    known = ckpt.users.lookup(list(np.asarray(users.ids)[split.full.users[rows] - 1]))
    user_inputs = [None if not ckpt.config.has_user_token else [c[u] for c in ckpt.user_codes] for u in known]
    if args.counterfactual:
        return _counterfactuals(args, ckpt, histories, user_inputs)
    config = ExplainConfig(n_steps=args.n_steps or ExplainConfig.n_steps)
    if args.curves:
        return _curves(args, ckpt, histories, user_inputs, config)
    if args.planted_brands:
        from attnrec.explain.evaluate import planted_brand_eval

        loyal = {f"brand{b}" for b in range(args.planted_brands)}
        result = planted_brand_eval(ckpt, histories, user_inputs, loyal)
        print(f"{result['eligible']} of {result['users']} users have a top-1 item of a loyal brand that their newest "
              f"item also has; the first feature reason is that brand for "
              f"{result['brand_ranked_first'] or 0:.0%} of them")
        return 0
    if args.feature_reasons:
        return _feature_reasons(args, ckpt, histories, user_inputs, config)
    result = explain_eval(ckpt.model, histories, user_inputs, config=config, seed=args.seed)
    result["checkpoint"] = str(resolve_checkpoint(args.checkpoint))
    result["history"] = args.history
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain_eval.json").write_text(json.dumps(result, indent=2))
    ks = result["ks"]
    print(f"{result['users']} users, top-1 item, history {args.history}, IG {config.n_steps} steps; "
          "mean logit drop (rank drop) when the top-k positions of each method are removed")
    print(f"{'method':<10}" + "".join(f"{'k=' + str(k):>18}" for k in ks) + f"{'AOPC':>8}")
    for name in METHODS:
        m = result["methods"][name]
        print(f"{name:<10}" + "".join(f"{m[f'score_drop@{k}']:>9.3f} ({m[f'rank_drop@{k}']:>6.1f})" for k in ks)
              + f"{m['aopc']:>8.3f}")
    d = result["convergence_delta"]
    print(f"IG |convergence delta|: median {d['median_abs']:.2e} logits = {100 * d['median_rel']:.4f}% of "
          f"|F(input) - F(baseline)| (p90 {100 * d['p90_rel']:.4f}%)")
    _plot(result, args.out / "explain_eval.png")
    print(f"written to {args.out}/explain_eval.json and explain_eval.png")
    return 0


def _curves(args: argparse.Namespace, ckpt, histories: list, user_inputs: list, config: ExplainConfig) -> int:
    from attnrec.explain.evaluate import curves_eval

    result = curves_eval(ckpt.model, histories, user_inputs, config, seed=args.seed)
    result.update(model_version=str(ckpt.metadata.get("model_version", "")), history=args.history, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves_eval.json").write_text(json.dumps(result, indent=2))
    fractions = "/".join(f"{100 * f:g}" for f in result["fractions"])
    print(f"{result['users']} users, top-1 item, history {args.history}; items removed at {fractions}% of the "
          "history; AOPC in logits (comprehensiveness: higher is better; sufficiency: lower is better)")
    for mode, rows in result["modes"].items():
        print(f"\n{mode}: {'method':<14}{'compr. AOPC':>12}{'normalised':>12}{'suff. AOPC':>12}{'POS@10':>9}")
        for name, row in sorted(rows.items(), key=lambda r: -r[1]["aopc_comprehensiveness"]):
            pos = result["pos_at_10"].get(name)
            print(f"{'':<8}{name:<14}{row['aopc_comprehensiveness']:>12.3f}{row['normalised_comprehensiveness']:>12.3f}"
                  f"{row['aopc_sufficiency']:>12.3f}{'' if pos is None else f'{pos:.2f}':>9}")
    cost = result["ms_per_explanation"]
    print(f"\ncost of one explanation, mean: integrated gradients ({result['n_steps']} steps) {cost['ig']:.1f} ms, "
          f"AttnLRP (one forward and backward pass) {cost['attnlrp']:.1f} ms")
    print(f"POS@10: share of users whose item stays in their top 10 once the method's top items are deleted "
          f"(mean over the fractions; lower is more faithful). Written to {args.out}/curves_eval.json")
    return 0


def _feature_reasons(args: argparse.Namespace, ckpt, histories: list, user_inputs: list,
                     config: ExplainConfig) -> int:
    from attnrec.explain.evaluate import feature_reasons_eval

    result = feature_reasons_eval(ckpt.model, histories, user_inputs, config, k=args.rank, seed=args.seed)
    result.update(model_version=str(ckpt.metadata.get("model_version", "")), history=args.history, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_reasons_eval.json").write_text(json.dumps(result, indent=2))
    print(f"{result['users']} users, top-1 item, history {args.history}: {result['size']} side-feature values per "
          f"user; PN = neutralising them takes the item out of the top {result['k']}, PS = neutralising every "
          "other value keeps it in")
    print(f"{'values':<14}{'PN':>7}{'PS':>7}{'F_NS':>7}")
    for name, row in result["methods"].items():
        print(f"{name:<14}{row['PN']:>7.2f}{row['PS']:>7.2f}{row['F_NS']:>7.2f}")
    print(f"written to {args.out}/feature_reasons_eval.json")
    return 0


def _counterfactuals(args: argparse.Namespace, ckpt, histories: list, user_inputs: list) -> int:
    import torch

    from attnrec.explain.counterfactual import CounterfactualConfig
    from attnrec.explain.evaluate import counterfactual_eval

    torch.set_num_threads(1)  # as one Explainer replica computes it
    config = CounterfactualConfig(max_size=args.max_size, k=args.rank)
    result = counterfactual_eval(ckpt.model, histories, user_inputs, config, exhaustive=args.exhaustive)
    result.update(checkpoint=str(ckpt.metadata.get("model_version", "")), history=args.history, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "counterfactual_eval.json").write_text(json.dumps(result, indent=2))
    print(f"{result['users']} users, top-1 item, history {args.history}: smallest set of history items whose "
          f"removal takes it out of the top {config.k} (searched up to {config.max_size})")
    print(f"{'':<20}" + "".join(f"{'<= ' + str(m):>8}" for m in range(1, config.max_size + 1)))
    for name, key in (("search", "found_within"), ("newest first", "recency_within")):
        print(f"{name:<20}" + "".join(f"{result[key][m]:>8.0%}"
                                       for m in range(1, config.max_size + 1)))
    print(f"median size {result['median_size']}; smaller than newest-first for {result['smaller_than_recency']:.0%} "
          f"of users, larger for {result['larger_than_recency']}; search latency p50 "
          f"{result['latency_ms']['p50']:.0f} ms, p95 {result['latency_ms']['p95']:.0f} ms (one thread)")
    if args.exhaustive:
        print(f"{'smallest possible':<20}" + "".join(f"{result['minimal_within'][m]:>8.0%}"
                                                    for m in range(1, config.max_size + 1)))
        print(f"trying every set up to {args.exhaustive}: a set smaller than newest-first exists for "
              f"{result['minimal_smaller_than_recency']:.0%} of users; the search found the smallest for "
              f"{result['search_is_minimal']:.0%}")
    print(f"written to {args.out}/counterfactual_eval.json")
    return 0


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in result["methods"].items():
        ax.plot(result["ks"], [m[f"score_drop@{k}"] for k in result["ks"]], marker="o", label=name)
    ax.set_xlabel("history items removed (k)")
    ax.set_ylabel("mean logit drop of the top-1 item")
    ax.set_xticks(result["ks"])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
