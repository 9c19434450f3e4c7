"""`attnrec index`: build a checkpoint's item index for two-stage retrieval (model/retrieval.py)."""

from __future__ import annotations

import argparse

from attnrec.model.checkpoint import load_checkpoint, resolve_checkpoint
from attnrec.model.retrieval import CODECS, IndexConfig, write_index


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build the item index that large catalogues are served from (two-stage retrieval)")
    p.add_argument("--checkpoint", default="default", help="checkpoint directory; the index is written into it")
    p.add_argument("--lists", type=int, default=IndexConfig.n_lists,
                   help="k-means lists of the index (default 0: about 4 x sqrt(items))")
    p.add_argument("--probe", type=int, default=IndexConfig.n_probe,
                   help="lists a query scans (default 0: the fewest of 8, 12, 16, 24, 32, 48, ... that reach --recall)")
    p.add_argument("--recall", type=float, default=IndexConfig.recall,
                   help="recall@10 against exact scoring that the chosen --probe must reach")
    p.add_argument("--candidates", type=int, default=IndexConfig.candidates,
                   help="candidates per query the recall is measured with, as serving's retrieval_candidates")
    p.add_argument("--check-queries", type=int, default=IndexConfig.check_queries,
                   help="histories, drawn by training popularity, that the recall is measured on")
    p.add_argument("--codec", choices=list(CODECS), default=IndexConfig.codec,
                   help="how the index stores item vectors: sq8, 8 bits a dimension (a quarter of the memory, "
                        "faster scans; candidates are still scored exactly), or flat, exact floats")
    p.add_argument("--threads", type=int, default=0, help="threads to build with (default 0: every core)")
    p.set_defaults(run=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    directory = resolve_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(directory)
    print(f"building the index of {len(ckpt.items):,} item vectors ({ckpt.config.d_model} dimensions) ...", flush=True)
    config = IndexConfig(args.lists, args.probe, args.recall, args.candidates, args.check_queries,
                         threads=args.threads, codec=args.codec)
    meta = write_index(directory, ckpt.model, ckpt.model_version, ckpt.item_counts, config)
    tried = ", ".join(f"{probe}: {recall:.4f}" for probe, recall in meta["probes_tried"])
    print(f"wrote {directory}/ann.faiss ({meta['kind']}): {meta['n_lists']} lists, built in {meta['built_s']:.1f} s\n"
          f"recall@10 against exact scoring by lists probed ({args.check_queries} sampled histories, "
          f"{args.candidates} candidates): {tried}\n"
          f"serving probes {meta['n_probe']} lists a query", flush=True)
    if meta["recall_at_10"] < args.recall:
        print(f"below {args.recall}: serve with a larger retrieval_candidates, or build with more --lists")
    return 0
