"""`attnrec bench`: every layer of the serving path measured in one run, side by side.

1. model alone: decoded queries -> batched forward + top-k, per batch size (the limit),
   by pytest-benchmark (bench/test_model_speed.py); again at RecommendBatch's size just
   before RecommendBatch, whose ratio is read against it
2. plain grpc.aio server with an asyncio micro-batcher (bench/plain_server.py)
3. Ray Serve gRPC, through the proxy and by direct ingress: Recommend with batching on and
   off, RecommendBatch, Explain
4. Explain per method (attention only, IG, deletion, combined) per n_steps, in-process
Load comes from bench/loadgen.py in its own process (closed-loop concurrency sweep and
open-loop runs at fixed rates). The plain server and Ray Serve run side by side, and each
load point measures them back to back, so that the ratios between them are taken minutes
apart at most, never across the machine's drift between runs. Results: JSON (config,
versions, machine, git commit, every figure), PNG plots, and a table. Nothing here
asserts a timing. Without Ray (`ray=False`, `--no-ray`): layers 1, 2 and 4 only. With
`rounds` > 1 (`--rounds N`) layers 2-3 run N times in a row on the same servers, and each
goal ratio is the median over the rounds, kept with every round's own.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from attnrec.serving.config import BatchConfig


@dataclass(frozen=True)
class BenchConfig:
    checkpoint: str
    concurrency: tuple[int, ...] = (1, 8, 32, 128)
    duration_s: float = 5.0  # per load point
    history: int = 50  # items per request history
    k: int = 10
    batch_users: int = 64  # users per RecommendBatch call
    model_batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128)
    model_rounds: int = 20  # pytest-benchmark rounds per batch size (after 3 warm-up rounds)
    explain_steps: tuple[int, ...] = (16, 32, 64)
    explain_repeats: int = 5
    # open-loop rates, each a share of that server's own saturated closed-loop rate: light load
    # (where batching's wait shows) to heavy load (where queueing shows)
    open_loop_fractions: tuple[float, ...] = (0.05, 0.5, 0.8)
    max_batch_size: int = BatchConfig.max_batch_size  # both servers batch as the Recommender does by default
    batch_wait_timeout_s: float = BatchConfig.batch_wait_timeout_s
    adaptive_wait: bool = BatchConfig.adaptive_wait  # both servers skip the wait while requests do not overlap
    throughput_optimized: bool = False  # RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for Ray Serve (set before Ray starts)
    # torch threads of the plain server and of the Ray replica alike; the model-alone limit is
    # read at this count. 1 = what Ray gives a replica with num_cpus: 1 (serve.yaml's default).
    threads: int = 1
    # "cuda": the model alone, the plain server and both Ray deployments run on the GPU
    # (the two Ray replicas take half a GPU each). Torch threads then matter little.
    device: str = "cpu"
    # False: the model alone, the plain server and Explain in-process only, nothing imports Ray
    # (a machine without Ray, such as the lent GPU machine: bench/gpu_check.sh)
    ray: bool = True
    # the servers' layers measured this many times in a row on the same servers; each goal ratio is
    # then the median over rounds, with its range (the machine drifts 10-30% between runs)
    rounds: int = 1

    @staticmethod
    def quick(checkpoint: str) -> BenchConfig:
        return BenchConfig(checkpoint, concurrency=(1, 8), duration_s=1.5, model_batch_sizes=(1, 32), model_rounds=3,
                           open_loop_fractions=(0.5,), explain_steps=(16,), explain_repeats=2)


def _git_commit() -> str | None:
    """The measured code's commit, "+dirty" when tracked files differ from it. Where there is
    no git or no .git (the GPU machine gets a bare copy of the working tree), ATTNREC_GIT_COMMIT."""
    if commit := os.environ.get("ATTNREC_GIT_COMMIT"):
        return commit

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
        except OSError:  # no git on this machine
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return commit or None


def _versions(with_ray: bool) -> dict:
    import grpc

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": _ray_version() if with_ray else None,
            "grpcio": grpc.__version__, "git_commit": _git_commit(),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}


def _ray_version() -> str:
    import ray

    return ray.__version__


def _queries(ckpt, n: int, history: int, k: int, seed: int = 0):
    from attnrec.serving.codec import Catalog, decode_recommend
    from attnrec.serving.config import ServingConfig
    from attnrec.v1 import recommender_pb2 as pb

    rng = np.random.default_rng(seed)
    catalog, config = Catalog(ckpt), ServingConfig(checkpoint="bench")
    ids = list(ckpt.items.ids)
    return [decode_recommend(pb.RecommendRequest(history=list(rng.choice(ids, history, replace=False)), k=k),
                             catalog, config) for _ in range(n)]


def model_alone(config: BenchConfig, out: Path) -> list[dict]:
    """pytest-benchmark (`bench/test_model_speed.py`) per batch size, in its own process, with
    the servers' thread count (config.threads; Ray gives a replica with num_cpus: 1 one
    thread) and with every core. Its JSON is kept as `model_alone_<n>threads.json`."""
    return [row for threads in sorted({config.threads, torch.get_num_threads()})
            for row in _pytest_benchmark(config, threads, config.model_batch_sizes,
                                         out / f"model_alone_{threads}threads.json")]


def _pytest_benchmark(config: BenchConfig, threads: int, batch_sizes: tuple[int, ...], saved: Path) -> list[dict]:
    env = {**os.environ, "ATTNREC_BENCH_CHECKPOINT": config.checkpoint, "ATTNREC_BENCH_DEVICE": config.device,
           "ATTNREC_BENCH_THREADS": str(threads), "ATTNREC_BENCH_HISTORY": str(config.history),
           "ATTNREC_BENCH_K": str(config.k), "ATTNREC_BENCH_ROUNDS": str(config.model_rounds),
           "ATTNREC_BENCH_BATCH_SIZES": ",".join(map(str, batch_sizes))}
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).with_name("test_model_speed.py")), "-q",
           "-p", "no:cacheprovider", "--import-mode=importlib", "--benchmark-json", str(saved)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"model-alone benchmark failed ({' '.join(cmd)}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return [{"batch_size": b["extra_info"]["batch_size"], "threads": threads,
             "recs_per_s": round(b["extra_info"]["batch_size"] / b["stats"]["median"], 1),
             "ms_per_batch": round(1000 * b["stats"]["median"], 3), "rounds": b["stats"]["rounds"]}
            for b in json.loads(saved.read_text())["benchmarks"]]


def explain_methods(ckpt, config: BenchConfig) -> list[dict]:
    from attnrec.explain.ablation import deletion_attribution
    from attnrec.explain.attention import rollout
    from attnrec.explain.attribution import integrated_gradients
    from attnrec.explain.explain import explain

    q = _queries(ckpt, 1, config.history, 1)[0]
    model = ckpt.model
    device = model.item_emb.weight.device
    seq = torch.as_tensor(q.history[None], device=device)
    user = None if q.user is None else [torch.as_tensor(np.asarray(c)[None], device=device) for c in q.user]
    with torch.no_grad():
        target = int(model.score_all(seq, user).argmax())  # the top-1 item, as Explain does by default

    def attention_only() -> None:
        with torch.no_grad():
            _, att = model(seq, user, return_attention=True)
            rollout(att)

    rows = []
    for steps in config.explain_steps:
        methods = {"attention+rollout": attention_only,
                   "ig": lambda n=steps: integrated_gradients(model, seq, user, target, n_steps=n),
                   "deletion": lambda: deletion_attribution(model, q.history, q.user, target),
                   "combined (all)": lambda n=steps: explain(model, q.history, q.user, target, n_steps=n)}
        for name, fn in methods.items():
            fn()
            times = []
            for _ in range(config.explain_repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append({"method": name, "n_steps": steps, "p50_ms": round(1000 * float(np.median(times)), 2)})
    return rows


def _load(target: str, items: str, kind: str, config: BenchConfig, concurrency: int = 1, mode: str = "closed",
          rate: float = 0.0) -> dict:
    cmd = [sys.executable, "-m", "attnrec.bench.loadgen", "--target", target, "--items", items, "--kind", kind,
           "--mode", mode, "--concurrency", str(concurrency), "--rate", str(rate or 1), "--duration",
           str(config.duration_s), "--history", str(config.history), "--k", str(config.k),
           "--batch", str(config.batch_users), "--warmup", "4" if kind == "explain" else "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=config.duration_s * 4 + 300)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mean_batch_size(before: dict, after: dict) -> float | None:
    """Mean size of the batches formed between two cumulative histograms {size: count}."""
    formed = {int(size): n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}
    batches = sum(formed.values())
    return round(sum(size * n for size, n in formed.items()) / batches, 2) if batches else None


@contextmanager
def _plain_server(config: BenchConfig):
    """The plain grpc.aio server in its own process: yields (target, batch-size histogram getter)."""
    server = subprocess.Popen([sys.executable, "-m", "attnrec.bench.plain_server", "--checkpoint", config.checkpoint,
                               "--max-batch-size", str(config.max_batch_size),
                               "--batch-wait-timeout-s", str(config.batch_wait_timeout_s),
                               *(["--adaptive-wait"] if config.adaptive_wait else []),
                               "--threads", str(config.threads), "--device", config.device],
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, port = server.stdout.readline().strip().partition(" ")
        if ready != "ready":
            raise RuntimeError("plain gRPC server did not start")

        def histogram() -> dict:
            server.send_signal(signal.SIGUSR1)
            return json.loads(server.stdout.readline())["histogram"]

        yield f"127.0.0.1:{port}", histogram
    finally:
        server.terminate()
        server.wait(timeout=30)


INGRESSES = {"proxy": "gRPC proxy", "direct_ingress": "direct ingress (replica port)"}


class _RayService:
    """One Ray, one app, reached two ways: through Serve's gRPC proxy and straight at the
    Recommender replica's own gRPC port (Serve's direct ingress). Both go through the same
    replica, the same @serve.batch and the same code."""

    def __init__(self, config: BenchConfig):
        from ray import serve

        from attnrec.serving.app import APP_NAME, ServeFile
        from attnrec.serving.config import DEFAULT_CONFIG, ServingConfig
        from attnrec.serving.server import free_port, start_ray, start_service

        self.config = config
        # The bench redeploys; Ray's 30 s draining period for direct-ingress replicas is for load balancers.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
        start_ray(direct_ingress=True, throughput_optimized=config.throughput_optimized)
        self.serve_file = ServeFile.load(DEFAULT_CONFIG)
        self.serve_file.deployments = self._options(config.max_batch_size)
        self.port = free_port()
        self.serving = ServingConfig(checkpoint=config.checkpoint, device=config.device)
        start_service(self.serving, self.serve_file, self.port, free_port())
        self.handle = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
        self.targets = self._targets()

    def _options(self, batch_size: int) -> dict:
        gpus = 0.5 if self.config.device == "cuda" else 0
        actor = {"num_cpus": 0, "num_gpus": gpus, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(self.config.threads)}}}
        return {"Recommender": {"num_replicas": 1, "max_ongoing_requests": 512, "ray_actor_options": actor,
                                "logging_config": {"enable_access_log": False},  # as serve.yaml
                                "user_config": {"max_batch_size": batch_size,
                                                "batch_wait_timeout_s": self.config.batch_wait_timeout_s,
                                                "adaptive_wait": self.config.adaptive_wait}},
                "Explainer": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0, "num_gpus": gpus}}}

    def _targets(self) -> dict[str, str]:
        from attnrec.serving.server import direct_ingress_targets

        return {"proxy": f"127.0.0.1:{self.port}", "direct_ingress": direct_ingress_targets()[0]}

    def redeploy(self, batch_size: int) -> None:
        """serve.run starts new replicas; each takes a fresh direct-ingress port."""
        from ray import serve

        from attnrec.serving.app import APP_NAME, build_app

        serve.run(build_app(self.serving, self._options(batch_size)), name=APP_NAME,
                  route_prefix=self.serve_file.route_prefix)
        self.targets = self._targets()

    def histogram(self) -> dict:
        return self.handle.stats_summary.remote().result()["histogram"]

    def close(self) -> None:
        from ray import serve

        serve.shutdown()


def _point(target: str, histogram, items: str, config: BenchConfig, c: int) -> dict:
    """One closed-loop Recommend load point, with the mean size of the batches the server formed."""
    before = histogram()
    row = _load(target, items, "recommend", config, c)
    row["mean_batch_size"] = _mean_batch_size(before, histogram())
    return row


def _open_loop(target: str, sweep: list[dict], items: str, config: BenchConfig) -> list[dict]:
    """Fixed-rate Recommend at each of config.open_loop_fractions of the server's saturated rate."""
    saturated = max(r["calls_per_s"] for r in sweep)
    return [{**_load(target, items, "recommend", config, mode="open", rate=f * saturated), "fraction": f}
            for f in config.open_loop_fractions]


def _round(config: BenchConfig, plain_target: str, plain_histogram, ray: _RayService | None, items: str, bar,
           beside_batch_json: Path) -> dict:
    """One round of the servers' layers: at each load point the plain server, the proxy and
    direct ingress are measured back to back, so the machine's drift between runs hardly
    enters their ratios; the model alone is measured again at RecommendBatch's batch size just
    before RecommendBatch, for the same reason. Leaves Ray's Recommender with batching off."""
    plain: dict = {"recommend": []}
    targets = ray.targets if ray else {}
    ray_results: dict = {ingress: {"batching_on": [], "batching_off": []} for ingress in targets}
    names = "plain, proxy, direct" if ray else "plain"
    for c in config.concurrency:
        bar.set_postfix_str(f"Recommend, {c} in flight: {names}")
        plain["recommend"].append(_point(plain_target, plain_histogram, items, config, c))
        for ingress, target in targets.items():
            ray_results[ingress]["batching_on"].append(_point(target, ray.histogram, items, config, c))
        bar.update()
    bar.set_postfix_str("open loop, RecommendBatch" + (", Explain" if ray else ""))
    plain["open_loop"] = _open_loop(plain_target, plain["recommend"], items, config)
    for ingress, target in targets.items():
        ray_results[ingress]["open_loop"] = _open_loop(target, ray_results[ingress]["batching_on"], items, config)
    beside_batch = _pytest_benchmark(config, config.threads, (config.batch_users,), beside_batch_json)[0]
    plain["recommend_batch"] = _load(plain_target, items, "batch", config, 2)
    for ingress, target in targets.items():
        ray_results[ingress]["recommend_batch"] = _load(target, items, "batch", config, 2)
        ray_results[ingress]["explain"] = _load(target, items, "explain", config, 1)
    bar.update()
    if ray:
        ray.redeploy(batch_size=1)
        for c in config.concurrency:
            bar.set_postfix_str(f"Recommend, batching off, {c} in flight: proxy, direct")
            for ingress, target in ray.targets.items():
                ray_results[ingress]["batching_off"].append(_point(target, ray.histogram, items, config, c))
            bar.update()
    return {"plain_grpc": plain, **({"ray_serve": ray_results} if ray else {}), "model_alone_beside_batch": beside_batch}


def servers(config: BenchConfig, items: str, bar, out: Path) -> list[dict]:
    """The plain server and Ray Serve side by side, config.rounds rounds in a row on the same
    servers (`_round`). Returns each round's {plain_grpc, ray_serve (when config.ray),
    model_alone_beside_batch}."""
    rounds = []
    with _plain_server(config) as (plain_target, plain_histogram):
        ray = _RayService(config) if config.ray else None
        try:
            for n in range(1, config.rounds + 1):
                if ray and n > 1:
                    ray.redeploy(batch_size=config.max_batch_size)  # batching back on: the previous round ended with it off
                if config.rounds > 1:
                    bar.set_description(f"bench, round {n}/{config.rounds}")
                suffix = "" if n == 1 else f"_round{n}"
                rounds.append(_round(config, plain_target, plain_histogram, ray, items, bar,
                                     out / f"model_alone_beside_batch{suffix}.json"))
        finally:
            if ray:
                ray.close()
    return rounds


def run(config: BenchConfig, out: Path, progress: bool = True) -> dict:
    from attnrec.model.checkpoint import load_checkpoint
    from attnrec.model.train import resolve_device

    out.mkdir(parents=True, exist_ok=True)
    versions = _versions(config.ray)  # the commit measured: edits made while the run goes on are not in it
    ckpt = load_checkpoint(config.checkpoint, resolve_device(config.device))
    steps = 2 + config.rounds * ((2 if config.ray else 1) * len(config.concurrency) + 1)
    bar = tqdm(total=steps, desc="bench", unit="step", disable=not progress)
    bar.set_postfix_str("model alone")
    results = {"model_alone": model_alone(config, out)}
    bar.update()
    bar.set_postfix_str("explain methods")
    results["explain_methods"] = explain_methods(ckpt, config)
    bar.update()
    first, *later = servers(config, config.checkpoint, bar, out)  # the load generator draws its ids from the checkpoint
    results.update(first)  # round 1 in full, where files have always held it
    if later:
        results["later_rounds"] = later
    bar.close()
    report = {"config": asdict(config), "versions": versions, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "model_version": ckpt.metadata.get("model_version"), "results": results,
              **goal_ratios(results, config.threads)}
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    plot(report, out)
    return report


def _at(sweep: list[dict], c: int) -> dict | None:
    return next((r for r in sweep if r["concurrency"] == c), None)


def _ray(results: dict, ingress: str) -> dict | None:
    """One ingress's results; files written before direct ingress was measured hold the proxy's at the top."""
    ray = results.get("ray_serve", {})
    return ray.get(ingress) or (ray if ingress == "proxy" and "batching_on" in ray else None)


def _model_limit(results: dict, threads: int) -> float:
    """The model alone at the servers' thread count, best batch size: the limit a server approaches."""
    return max(r["recs_per_s"] for r in results["model_alone"] if r["threads"] == threads)


def rounds_of(results: dict) -> list[dict]:
    """Each round's results in round 1's shape (one for files written before rounds)."""
    return [results] + [{**results, **later} for later in results.get("later_rounds", [])]


def goal_ratios(results: dict, threads: int = 1) -> dict:
    """{"ratios": each goal's median over the rounds, "ratios_by_round": [each round's ratios]}."""
    by_round = [ratios(r, threads) for r in rounds_of(results)]
    median = {key: (round(float(np.median(values)), 3) if (values := [r[key] for r in by_round if r[key] is not None])
                    else None) for key in by_round[0]}
    return {"ratios": median, "ratios_by_round": by_round}


def ratios(results: dict, threads: int = 1) -> dict:
    """The issue's goals, as ratios measured in this run, for each way into Ray Serve.
    RecommendBatch is set against the model alone at its own batch size, measured just
    before it (files from before session 4: the best batch size, measured at the start)."""
    plain = max(r["calls_per_s"] for r in results["plain_grpc"]["recommend"])
    model = (results.get("model_alone_beside_batch") or {}).get("recs_per_s") or _model_limit(results, threads)
    out = {}
    for ingress in INGRESSES:
        ray = _ray(results, ingress)
        if ray is None:
            continue
        on_sweep, off_sweep = ray["batching_on"], ray["batching_off"]
        out[f"{ingress}: ray_vs_plain_saturated"] = round(max(r["calls_per_s"] for r in on_sweep) / plain, 3)
        out[f"{ingress}: recommend_batch_vs_model_alone"] = round(ray["recommend_batch"]["recs_per_s"] / model, 3)
        c = 32 if _at(on_sweep, 32) else max(r["concurrency"] for r in on_sweep)
        on, off = _at(on_sweep, c), _at(off_sweep, c)
        out[f"{ingress}: batching_on_vs_off_at_{c}"] = round(on["calls_per_s"] / off["calls_per_s"], 3) if off["calls_per_s"] else None
        rec1, exp = _at(on_sweep, 1), ray["explain"]
        out[f"{ingress}: explain_p50_vs_recommend_p50_at_1"] = (round(exp["p50_ms"] / rec1["p50_ms"], 2)
                                                                if exp and exp["p50_ms"] and rec1 else None)
    return out


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(r: dict) -> dict[str, list[dict]]:
        out = {"plain grpc.aio + micro-batcher": r["plain_grpc"]["recommend"]}
        for ingress, name in INGRESSES.items():
            if ray := _ray(r, ingress):
                out[f"Ray Serve {name}, @serve.batch"] = ray["batching_on"]
                out[f"Ray Serve {name}, batching off"] = ray["batching_off"]
        return out

    r = report["results"]
    threads = report["config"].get("threads", 1)
    later = [series(x) for x in rounds_of(r)[1:]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, sweep in series(r).items():
        xs = [s["concurrency"] for s in sweep]
        (line,) = axes[0].plot(xs, [s["calls_per_s"] for s in sweep], marker="o", label=name)
        for other in later:  # later rounds' throughput: unlabelled points in the same colour, for the spread
            axes[0].plot(xs, [s["calls_per_s"] for s in other[name]], marker="o", linestyle="none",
                         color=line.get_color(), alpha=0.4)
        (line,) = axes[1].plot(xs, [s["p50_ms"] for s in sweep], marker="o", label=f"{name} p50")
        axes[1].plot(xs, [s["p99_ms"] for s in sweep], marker="x", linestyle="--", color=line.get_color(),
                     label=f"{name} p99")
    axes[0].axhline(_model_limit(r, threads), color="grey", linestyle=":",
                    label=f"model alone, {threads} thread(s) (best batch)")
    for ax, ylabel in ((axes[0], "Recommend calls / s"), (axes[1], "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    if (rounds := report["config"].get("rounds", 1)) > 1:
        fig.suptitle(f"round 1 of {rounds}; faint points: throughput in the later rounds", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)
    plt.close(fig)


def table(report: dict) -> str:
    r = report["results"]
    lines = ["model alone (batched forward + top-k):"]
    lines += [f"  {m['threads']} thread(s), batch {m['batch_size']:>4}: {m['recs_per_s']:>9,.0f} recs/s  "
              f"{m['ms_per_batch']:>8.2f} ms/batch" for m in r["model_alone"]]
    if m := r.get("model_alone_beside_batch"):
        lines.append(f"  again just before RecommendBatch, {m['threads']} thread(s), batch {m['batch_size']}: "
                     f"{m['recs_per_s']:,.0f} recs/s (RecommendBatch's ratio is read against this)")
    lines.append(f"{'Recommend':<28}{'in flight':>10}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                 f"{'batch':>7}{'client cpu':>11}  errors")
    sweeps = [("plain grpc.aio", r["plain_grpc"]["recommend"])]
    for ingress, short in (("proxy", "proxy"), ("direct_ingress", "direct")):
        if ray := _ray(r, ingress):
            sweeps += [(f"Ray {short}, batching on", ray["batching_on"]), (f"Ray {short}, batching off", ray["batching_off"])]
    for name, sweep in sweeps:
        for s in sweep:
            lines.append(f"{name:<28}{s['concurrency']:>10}{s['calls_per_s']:>10.1f}{s['p50_ms'] or 0:>9.1f}"
                         f"{s['p95_ms'] or 0:>9.1f}{s['p99_ms'] or 0:>9.1f}{s.get('mean_batch_size') or '':>7}"
                         f"{s['client_cpu_share']:>11.2f}  {s['errors'] or ''}")
    open_loops = [("plain grpc.aio", r["plain_grpc"]["open_loop"])]
    open_loops += [(f"Ray {name}", ray["open_loop"]) for ingress, name in INGRESSES.items()
                   if (ray := _ray(r, ingress)) and "open_loop" in ray]
    for name, rows in open_loops:
        for o in rows if isinstance(rows, list) else [rows]:  # one dict in files from before session 3
            lines.append(f"{name} open loop at {o['rate']:.0f}/s: {o['calls_per_s']:.1f} calls/s, p50 {o['p50_ms']} ms, "
                         f"p95 {o['p95_ms']} ms, p99 {o['p99_ms']} ms, errors {o['errors'] or 0}")
    if b := r["plain_grpc"].get("recommend_batch"):
        lines.append(f"plain grpc.aio RecommendBatch ({report['config']['batch_users']} users/call, 2 in flight): "
                     f"{b['recs_per_s']:,.0f} recs/s, p50 {b['p50_ms']} ms")
    for ingress, name in INGRESSES.items():
        if ray := _ray(r, ingress):
            b, e = ray["recommend_batch"], ray["explain"]
            lines.append(f"Ray Serve {name}: RecommendBatch ({report['config']['batch_users']} users/call, 2 in flight) "
                         f"{b['recs_per_s']:,.0f} recs/s, p50 {b['p50_ms']} ms; Explain (1 in flight) "
                         f"{e['calls_per_s']:.2f} calls/s, p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms")
    lines.append("Explain in-process, p50 ms: " + ", ".join(f"{x['method']} @{x['n_steps']} steps {x['p50_ms']}"
                                                          for x in r["explain_methods"]))
    by_round = report.get("ratios_by_round") or [report["ratios"]]
    if len(by_round) > 1:
        lines.append(f"the tables above are round 1 of {len(by_round)}; ratios are the median over the rounds [min-max]")

    def spread(key: str) -> str:
        values = [one[key] for one in by_round if one.get(key) is not None]
        return f" [{min(values)}-{max(values)}]" if len(values) > 1 else ""

    lines.append("ratios: " + (", ".join(f"{k} = {v}{spread(k)}" for k, v in report["ratios"].items())
                               or "none, no Ray Serve layer in this run"))
    return "\n".join(lines)


def compare(a: dict, b: dict) -> str:
    """Side by side: two result files' throughputs and latencies (round 1) and goal ratios
    (the median over each file's rounds)."""
    def headline(rep: dict) -> dict:
        r = rep["results"]
        threads = rep["config"].get("threads", 1)
        def p50_at_1(sweep: list[dict]) -> float | None:
            return (_at(sweep, 1) or {}).get("p50_ms")

        out = {f"model alone recs/s ({threads} thread(s))": _model_limit(r, threads),
               "plain gRPC calls/s": max(s["calls_per_s"] for s in r["plain_grpc"]["recommend"]),
               "plain gRPC p50 ms at 1 in flight": p50_at_1(r["plain_grpc"]["recommend"]),
               "plain gRPC RecommendBatch recs/s": (r["plain_grpc"].get("recommend_batch") or {}).get("recs_per_s"),
               "model alone just before RecommendBatch": (r.get("model_alone_beside_batch") or {}).get("recs_per_s")}
        for ingress in INGRESSES:
            if ray := _ray(r, ingress):
                out[f"{ingress}: Recommend calls/s"] = max(s["calls_per_s"] for s in ray["batching_on"])
                out[f"{ingress}: Recommend p50 ms at 1 in flight"] = p50_at_1(ray["batching_on"])
                out[f"{ingress}: RecommendBatch recs/s"] = ray["recommend_batch"]["recs_per_s"]
                out[f"{ingress}: Explain p50 ms"] = ray["explain"]["p50_ms"]
        return {**out, **goal_ratios(r, threads)["ratios"]}  # the median over rounds

    ha, hb = headline(a), headline(b)
    lines = [f"{'':<48}{a['versions'].get('git_commit') or 'A':>12}{b['versions'].get('git_commit') or 'B':>12}{'B/A':>8}"]
    for key in dict.fromkeys([*ha, *hb]):
        va, vb = ha.get(key), hb.get(key)
        ratio = f"{vb / va:.2f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else ""
        lines.append(f"{key:<48}{va!s:>12}{vb!s:>12}{ratio:>8}")
    return "\n".join(lines)
