"""`attnrec serve` and `attnrec recommend`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.model.data import DataError
from attnrec.serving.config import DEFAULT_CONFIG
from attnrec.serving.network import prepare_to_connect


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over gRPC from Ray Serve (blocks; Ctrl-C stops)")
    p.add_argument("--checkpoint", help="checkpoint directory (default: the one kept in the repo)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Serve config YAML")
    p.add_argument("--port", type=int, help="gRPC port (default: from the config, 9000)")
    p.add_argument("--http-port", type=int, help="Serve HTTP port (default: from the config, 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address Ray and Serve's HTTP proxy bind to (default loopback; 0.0.0.0 = every interface)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the config's device")
    p.add_argument("--feedback-dir", metavar="DIR",
                   help="log Feedback events and Recommend impressions as Parquet under DIR (a directory or a "
                        "pyarrow filesystem URI such as s3://bucket/prefix); default: the config's "
                        "args.feedback_dir, else no log")
    p.add_argument("--model", action="append", metavar="NAME=DIR:SHARE",
                   help="serve several checkpoints side by side (A/B), each to its share of users by a stable "
                        "hash of user_id; repeat it, e.g. --model a=runs/a:0.9 --model b=runs/b:0.1 "
                        "(the first is the one `attnrec rollout` replaces)")
    p.add_argument("--metrics-port", type=int,
                   help="serve every metric, Ray Serve's and attnrec's, as Prometheus text at "
                        "http://127.0.0.1:PORT/metrics (default: a port of Ray's choosing, printed at start)")
    p.add_argument("--num-cpus", type=int, help="CPUs Ray may use (default: all)")
    p.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (on --host)")
    p.add_argument("--direct-ingress", action="store_true",
                   help="each Recommender replica also serves gRPC on its own port, skipping Serve's proxy "
                        "(about 2x the proxy's throughput here, see README); port 9000 keeps working")
    p.add_argument("--throughput-optimized", action="store_true",
                   help="Ray Serve's RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (in Ray 2.60 this includes --direct-ingress)")
    p.set_defaults(run=cmd_serve)

    o = sub.add_parser("rollout", help="make a running attnrec serve a new checkpoint, with no failed calls",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    o.add_argument("--checkpoint", required=True, help="checkpoint directory to serve (a path every node sees)")
    o.add_argument("--address", default="auto",
                   help="Ray cluster of the running service: auto = the one on this machine, or the head's "
                        "address (host:6379, ray://host:10001)")
    o.add_argument("--allow-new-catalog", action="store_true",
                   help="accept a checkpoint with another item catalogue or other user features")
    o.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for every replica to take it; past them the old model is restored")
    o.set_defaults(run=cmd_rollout)

    r = sub.add_parser("recommend", help="ask a running service for recommendations (a gRPC client)")
    r.add_argument("--target", default="127.0.0.1:9000", help="host:port of the gRPC proxy")
    r.add_argument("--user", default="", help="user id (selects stored user features)")
    r.add_argument("--history", default="", help="comma-separated item ids, oldest first")
    r.add_argument("--candidates", default="", help="comma-separated item ids to re-rank (default: all)")
    r.add_argument("--k", type=int, default=10, help="how many items to recommend")
    r.add_argument("--include-history", action="store_true", help="allow items already in the history")
    r.add_argument("--rerank", default="", choices=["", "none", "calibrated"],
                   help="calibrated: match the history's genre/category mix (default: the server's setting)")
    r.add_argument("--rerank-weight", type=float, default=0.0,
                   help="calibration against relevance, 0..1 (0: the server's default)")
    r.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    r.add_argument("--json", action="store_true", help="print the response as JSON")
    r.add_argument("--explain", action="store_true",
                   help="also ask the service why it recommends the top item (the Explain RPC)")
    r.set_defaults(run=cmd_recommend)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_serve(args: argparse.Namespace) -> int:
    from ray import serve

    from attnrec.serving.app import ServeFile
    from attnrec.serving.server import (
        DRAIN_S,
        direct_ingress_targets,
        drain,
        metrics_address,
        page_address,
        serving_config,
        start_ray,
        start_service,
    )

    serve_file = ServeFile.load(args.config)
    try:
        config = serving_config(serve_file, args.checkpoint, args.device, args.feedback_dir, args.model)
    except ValueError as e:  # a --model flag or the config's models: said as any other bad input
        raise DataError(str(e)) from e
    checkpoint = resolve_checkpoint(config.checkpoint)
    for path in [checkpoint, *(m.checkpoint for m in config.models)]:
        if not (Path(path) / "config.json").exists():
            raise FileNotFoundError(f"{path}: not a checkpoint directory; train one with `attnrec train --out DIR`")
    serve_file = serve_file.with_models(config)
    grpc_port = args.port or serve_file.grpc_port
    http_port = args.http_port or serve_file.http_port
    models = ", ".join(f"{m.name} {m.share:.0%} {m.checkpoint}" for m in config.models)
    print(f"starting Ray and Serve ({f'models {models}' if models else f'checkpoint {checkpoint}'}) ...", flush=True)
    for note in serve_file.fit_to(args.num_cpus or os.cpu_count() or 1):
        print(f"this machine has too few CPUs for the config: {note}", flush=True)
    start_ray(args.num_cpus, args.host, args.dashboard, args.direct_ingress, args.throughput_optimized,
              serve_file.custom_resources(), args.metrics_port)
    direct = args.direct_ingress or args.throughput_optimized  # Ray 2.60's throughput mode implies it
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, and a supervisor's stop
        signal.signal(sig, lambda *_: stop.update(now=True))
    try:
        start_service(config, serve_file, grpc_port, http_port, args.host)
        examples = _example_history(checkpoint)
        import ray

        print(f"\nattnrec is serving on {args.host}:{grpc_port} (gRPC, reflection on)\n"
              f"The page for people: {page_address(args.host, http_port, serve_file.route_prefix)}\nTry:\n"
              f"  attnrec recommend --target 127.0.0.1:{grpc_port} --history {','.join(examples)} --k 5\n"
              f"  grpcurl -plaintext -d '{{\"history\": {json.dumps(examples)}, \"k\": 5}}' "
              f"127.0.0.1:{grpc_port} attnrec.v1.Recommender/Recommend\n"
              f"{_feedback_line(config)}"
              f"Prometheus metrics (Ray Serve's and attnrec's): {metrics_address()}\n"
              f"New weights, no failed calls: attnrec rollout --checkpoint DIR "
              f"--address {ray.get_runtime_context().gcs_address}\n"
              f"Ctrl-C stops.", flush=True)
        if direct:
            try:
                targets = ", ".join(direct_ingress_targets(args.host)) or "none reported yet"
            except RuntimeError as e:
                targets = str(e)
            print(f"Direct ingress, one address per Recommender replica (skips the proxy; a load balancer in front "
                  f"spreads calls; autoscaled replicas add addresses): {targets}", flush=True)
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"stopping: finishing the calls in flight (up to {DRAIN_S:.0f} s) ...", flush=True)
        drained = drain()
        more = " (direct-ingress replicas first drain for load balancers, 30 s by default)" if direct else ""
        print(f"{'drained' if drained else 'calls still in flight are dropped'}; stopping Serve{more} ...", flush=True)
        serve.shutdown()
        import ray

        ray.shutdown()
    return 0


def _feedback_line(config) -> str:
    if not config.feedback_dir:
        return "Feedback: off (--feedback-dir DIR logs events and impressions)\n"
    return f"Feedback events and impressions are logged under {config.feedback_dir}\n"


def cmd_rollout(args: argparse.Namespace) -> int:
    prepare_to_connect(args.address)
    import ray

    from attnrec.serving.rollout import RolloutFailed, RolloutRefused, rollout

    try:
        ray.init(address=args.address, log_to_driver=False, logging_level="WARNING")
    except ConnectionError as e:
        print(f"attnrec rollout: no Ray cluster at {args.address} ({e}); is `attnrec serve` running?",
              file=sys.stderr)
        return 2
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its router's start-up lines are not ours to print
    try:
        done = rollout(args.checkpoint, args.allow_new_catalog, args.timeout, say=lambda m: print(m, flush=True))
    except RolloutRefused as e:
        print(f"attnrec rollout: refused, the served model keeps serving: {e}", file=sys.stderr)
        return 2
    except RolloutFailed as e:
        print(f"attnrec rollout: failed: {e}", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    print(f"serving {done.new_version} (was {done.old_version}) from {done.checkpoint}; "
          f"switched in {done.switch_s:.1f} s")
    return 0


def _example_history(checkpoint: str, n: int = 5) -> list[str]:
    """A few item ids the model knows, for the ready message."""
    import pyarrow.parquet as pq

    ids = pq.read_table(Path(checkpoint) / "items.parquet").column("item_id").to_pylist()
    return ids[:: max(1, len(ids) // n)][:n]


def cmd_recommend(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from attnrec.serving.client import RecommenderClient

    with RecommenderClient(args.target, timeout=args.timeout) as client:
        try:
            r = client.recommend(_split(args.history), args.k, args.user, _split(args.candidates),
                                 args.include_history, rerank=args.rerank, rerank_weight=args.rerank_weight)
            why = client.explain(_split(args.history), r.items[0].item_id, args.user, counterfactual=True) \
                if args.explain and r.items else None
        except grpc.RpcError as e:
            print(f"attnrec recommend: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json_format.MessageToJson(r, preserving_proto_field_name=True))
        if why is not None:
            print(json_format.MessageToJson(why, preserving_proto_field_name=True))
        return 0
    print(f"model {r.model_version}; history used {r.history_used}"
          + (f"; unknown ids {list(r.unknown_item_ids)}" if r.unknown_item_ids else ""))
    for rank, item in enumerate(r.items, 1):
        print(f"{rank:>3}. {item.item_id:<20} {item.score:8.3f}")
    if why is not None:
        print(explanation_text(why))
    return 0


def explanation_text(why, n: int = 3) -> str:
    """An ExplainResponse for people: its sentence, then the history items and the feature values
    that drove it most."""
    items = sorted((c for c in why.contributions if c.position >= 0), key=lambda c: -c.combined)[:n]
    lines = [f"why {why.item_id}: {why.reason}" if why.reason else f"why {why.item_id}:",
             "  the history items that drove it most (logit drop without each, combined score):"]
    lines += [f"  {c.item_id:<20} deletion {c.deletion:+.3f}  combined {c.combined:+.3f}  attention {c.attention:.3f}"
              for c in items]
    if why.feature_reasons:
        lines.append("  features whose absence lowers it most: " + ", ".join(
            f"{f.feature}={f.value} (-{f.score_drop:.2f})" for f in why.feature_reasons[:n] if f.score_drop > 0))
    return "\n".join(lines)
