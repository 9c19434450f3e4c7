"""`attnrec bench`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnrec.serving.config import BatchConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput and latency of every layer, side by side (JSON + plots)")
    p.add_argument("--checkpoint", default="default", help="checkpoint to serve (default: the one kept in the repo)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (CI): fewer, shorter load points")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="directory for bench.json and bench.png")
    p.add_argument("--duration", type=float, help="seconds per load point")
    p.add_argument("--batch-wait", type=float,
                   help=f"batch_wait_timeout_s for both servers (default {BatchConfig.batch_wait_timeout_s})")
    p.add_argument("--adaptive-wait", action="store_true",
                   help="both servers skip the batch wait while requests do not overlap (adaptive_wait: true)")
    p.add_argument("--throughput-optimized", action="store_true",
                   help="start Ray Serve with RAY_SERVE_THROUGHPUT_OPTIMIZED=1")
    p.add_argument("--threads", type=int, help="torch threads of both servers (default 1, a num_cpus: 1 replica's)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where the model runs in every layer (default cpu)")
    p.add_argument("--no-ray", action="store_true",
                   help="only the model alone, the plain server and Explain in-process; never imports Ray "
                        "(for a machine without Ray)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the servers' layers this many times in a row; goal ratios are then the median, "
                        "with their range (default 1)")
    p.add_argument("--feedback-cost", action="store_true",
                   help="only what the feedback log costs Recommend (log off / on, --rounds pairs of --duration "
                        "seconds, default 3 x 15 s) and Feedback's own rate; writes OUT/feedback_cost.json")
    p.add_argument("--feedback-loop", action="store_true",
                   help="only the feedback loop: serve model A, simulated users who like one brand send feedback, "
                        "train B on it, compare the brand's share of both top 10s; writes OUT/feedback_loop.json")
    p.add_argument("--scale", action="store_true",
                   help="cost against catalogue size (10^4..10^6 items), exact scoring and two-stage retrieval, "
                        "the model alone on one thread and through Ray Serve; writes OUT/bench.json (its records "
                        "under \"scale\") and OUT/scale.png")
    p.add_argument("--engines", action="store_true",
                   help="the Recommender's forward pass on eager torch, torch.compile and ONNX Runtime side by "
                        "side, one thread, batches of 1 to 64 (--quick: 1 and 8, 3 rounds); writes OUT/engines.json")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"), help="compare two result files")
    p.set_defaults(run=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from attnrec.bench.config import BenchConfig
    from attnrec.bench.records import Report
    from attnrec.bench.report import compare, table
    from attnrec.bench.run import run
    from attnrec.model.checkpoint import resolve_checkpoint

    if args.compare:
        try:
            a, b = (Report.from_json(p.read_text()) for p in args.compare)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"attnrec bench: error: cannot read a result file: {e}", file=sys.stderr)
            return 2
        print(compare(a, b))
        return 0
    if args.feedback_cost:
        from attnrec.bench.feedback_cost import main as feedback_cost

        out = args.out if args.out != Path("runs/bench") else Path("runs/feedback_cost")
        rounds = args.rounds if args.rounds > 1 else 3  # off/on pairs: one pair says little
        return feedback_cost(["--checkpoint", args.checkpoint, "--rounds", str(rounds), "--duration",
                              str(args.duration or 15.0), "--threads", str(args.threads or 1), "--out", str(out)])
    if args.scale:
        from attnrec.bench.scale import main as scale

        out = args.out if args.out != Path("runs/bench") else Path("runs/scale")
        return scale(["--checkpoint", args.checkpoint, "--out", str(out)]
                     + (["--sizes", "10000", "--timed", "0.5"] if args.quick else ["--serve"]))
    if args.engines:
        from attnrec.bench.engines import main as engines

        out = args.out if args.out != Path("runs/bench") else Path("runs/engines")
        return engines(["--checkpoint", args.checkpoint, "--out", str(out)]
                       + (["--batch-sizes", "1,8", "--rounds", "3"] if args.quick else []))
    if args.feedback_loop:
        from attnrec.bench.feedback_loop import main as feedback_loop

        out = args.out if args.out != Path("runs/bench") else Path("runs/feedback_loop")
        return feedback_loop(["--out", str(out)])
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("attnrec bench: error: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
            return 2
    checkpoint = resolve_checkpoint(args.checkpoint)
    config = BenchConfig.quick(checkpoint) if args.quick else BenchConfig(checkpoint)
    if args.duration:
        config = replace(config, duration_s=args.duration)
    if args.batch_wait is not None:
        config = replace(config, batch_wait_timeout_s=args.batch_wait)
    if args.adaptive_wait:
        config = replace(config, adaptive_wait=True)
    if args.throughput_optimized:
        config = replace(config, throughput_optimized=True)
    if args.threads:
        config = replace(config, threads=args.threads)
    if args.device:
        config = replace(config, device=args.device)
    if args.no_ray:
        config = replace(config, ray=False)
    if args.rounds < 1:
        print(f"attnrec bench: error: --rounds must be at least 1, got {args.rounds}", file=sys.stderr)
        return 2
    config = replace(config, rounds=args.rounds)
    try:
        report = run(config, args.out)
    finally:
        if config.ray:  # a --no-ray run never imports Ray
            import ray

            ray.shutdown()
    print(table(report))
    print(f"written to {args.out}/bench.json and bench.png")
    return 0
