"""`attnrec explain`: one recommendation explained in-process, written as a PNG or HTML picture.

It answers exactly what the Explain RPC would (the same codec and limits), without a server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnrec.explain.config import ExplainConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one recommendation and write a PNG or HTML picture")
    p.add_argument("--checkpoint", default="default", help="checkpoint directory (default: the one kept in the repo)")
    p.add_argument("--history", default="", help="comma-separated item ids, oldest first")
    p.add_argument("--user", default="", help="user id (stored user features)")
    p.add_argument("--item", default="", help="item to explain (default: the top-1 recommendation)")
    p.add_argument("--n-steps", type=int, default=0,
                   help=f"integrated-gradients steps (default {ExplainConfig.n_steps})")
    p.add_argument("--counterfactual", type=int, nargs="?", const=10, metavar="RANK",
                   help="also find the smallest set of history items without which the item would not be in the "
                        "top RANK (default %(const)s), marked in the picture")
    p.add_argument("--out", type=Path, required=True, help="why.png or why.html")
    p.set_defaults(run=cmd_explain)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_explain(args: argparse.Namespace) -> int:
    from attnrec.model.checkpoint import load_checkpoint, resolve_checkpoint
    from attnrec.serving.codec import Catalog, InvalidArgument
    from attnrec.serving.config import ServingConfig
    from attnrec.serving.explain_codec import answer_explain
    from attnrec.v1 import recommender_pb2 as pb

    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    html = args.out.suffix.lower() in (".html", ".htm")
    req = pb.ExplainRequest(user_id=args.user, history=_split(args.history), item_id=args.item,
                            n_steps=args.n_steps, include_image=not html, include_html=html,
                            include_faithfulness=True, counterfactual=args.counterfactual is not None,
                            counterfactual_rank=args.counterfactual or 0)
    try:
        r = answer_explain(req, ckpt, Catalog(ckpt), ServingConfig(checkpoint=args.checkpoint))
    except InvalidArgument as e:
        print(f"attnrec explain: error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if html:
        args.out.write_text(r.html)
    else:
        args.out.write_bytes(r.image_png)
    print(r.reason)
    if r.HasField("counterfactual"):
        cf = r.counterfactual
        print(f"counterfactual: without {', '.join(cf.item_ids)} it ranks {cf.new_rank} (first: {cf.new_top_item_id})"
              if cf.found else f"counterfactual: none found within the search's bounds ({cf.sets_scored} sets scored)")
    print(f"item {r.item_id}: score {r.score:.3f}, baseline {r.baseline_score:.3f}, "
          f"IG delta {r.convergence_delta:+.1e} ({r.n_steps} steps)")
    top = sorted(r.contributions, key=lambda c: -c.combined)[:5]
    print("most influential history items:", ", ".join(f"{c.item_id} ({c.combined:+.2f})" for c in top))
    print("features:", ", ".join(f"{f.feature}={f.value} ({f.attribution:+.2f})" for f in r.feature_attributions[:5]))
    f = r.faithfulness
    print(f"removing the top-{f.k} items drops the score by {f.combined_drop:.3f} "
          f"(the {f.k} most recent: {f.recent_drop:.3f}, {f.k} random: {f.random_drop:.3f})")
    print(f"written to {args.out}")
    return 0
