"""`attnrec index`: build a checkpoint's item index for two-stage retrieval (model/retrieval.py)."""

from __future__ import annotations

import argparse
import time

from attnrec.model.checkpoint import load_checkpoint, resolve_checkpoint
from attnrec.model.retrieval import (
    IndexConfig,
    item_matrix,
    load_retriever,
    measured_recall,
    sampled_states,
    write_index,
)

RECALL_GOAL = 0.98


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build the item index that large catalogues are served from (two-stage retrieval)")
    p.add_argument("--checkpoint", default="default", help="checkpoint directory; the index is written into it")
    p.add_argument("--lists", type=int, default=IndexConfig.n_lists,
                   help="k-means lists of the index (default 0: about 4 x sqrt(items))")
    p.add_argument("--probe", type=int, default=IndexConfig.n_probe,
                   help="lists a query scans, the recall knob (default 0: lists / 10, at least 32)")
    p.add_argument("--candidates", type=int, default=300, help="candidates per query the recall check uses, as "
                                                                "serving's retrieval_candidates")
    p.add_argument("--check-queries", type=int, default=1_000, help="sampled histories the recall check uses")
    p.add_argument("--threads", type=int, default=0, help="threads to build with (default 0: every core)")
    p.set_defaults(run=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    directory = resolve_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(directory)
    vectors = item_matrix(ckpt.model)
    print(f"building the index of {vectors.shape[0]:,} item vectors ({vectors.shape[1]} dimensions) ...", flush=True)
    meta = write_index(directory, ckpt.model_version, vectors, IndexConfig(args.lists, args.probe,
                                                                           threads=args.threads))
    retriever = load_retriever(directory, ckpt.model_version, vectors.shape[0])
    started = time.perf_counter()
    recall = measured_recall(ckpt.model, retriever, sampled_states(ckpt.model, ckpt.item_counts, args.check_queries),
                             args.candidates)
    checked_s = time.perf_counter() - started
    print(f"wrote {directory}/ann.faiss: {meta['n_lists']} lists, {meta['n_probe']} probed per query, built in "
          f"{meta['built_s']:.1f} s\nrecall@10 against exact scoring, {args.check_queries} sampled histories, "
          f"{args.candidates} candidates: {recall:.4f} ({checked_s:.1f} s)", flush=True)
    if recall < RECALL_GOAL:
        print(f"below {RECALL_GOAL}: rebuild with a larger --probe (or serve with a larger retrieval_candidates)")
    return 0
