"""What `attnrec bench` measures, as typed records, and their JSON (bench.json)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from attnrec.bench.config import BenchConfig


@dataclass(frozen=True)
class Load:
    """One load-generator run against one server (bench/loadgen.py's output line)."""

    kind: str  # recommend, batch (RecommendBatch) or explain
    mode: str  # closed (fixed concurrency) or open (fixed rate)
    concurrency: int
    rate: float  # open loop: calls started per second
    calls: int  # answered OK
    seconds: float
    calls_per_s: float
    recs_per_s: float  # users answered per second (RecommendBatch: users per call x calls)
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]  # status code name -> count
    client_cpu_share: float  # the load generator's own CPU, in cores (near 1 = the client is the limit)
    mean_batch_size: float | None = None  # batches the server formed during this run
    fraction: float | None = None  # open loop: the rate as a share of the server's saturated rate

    @staticmethod
    def from_dict(d: dict) -> Load:
        return Load(**{f.name: d[f.name] for f in fields(Load) if f.name in d})


@dataclass(frozen=True)
class ModelAlone:
    """The model alone (decoded queries -> batched forward + top-k), by pytest-benchmark."""

    batch_size: int
    threads: int
    recs_per_s: float  # median over rounds
    ms_per_batch: float
    rounds: int


@dataclass(frozen=True)
class ExplainMethod:
    """One explanation method in-process, one history."""

    method: str
    n_steps: int
    p50_ms: float


@dataclass(frozen=True)
class Plain:
    """The plain grpc.aio server with its asyncio micro-batcher."""

    recommend: list[Load]  # closed loop, one per concurrency
    open_loop: list[Load]  # one per open-loop fraction
    recommend_batch: Load

    @staticmethod
    def from_dict(d: dict) -> Plain:
        return Plain([Load.from_dict(x) for x in d["recommend"]], [Load.from_dict(x) for x in d["open_loop"]],
                     Load.from_dict(d["recommend_batch"]))


@dataclass(frozen=True)
class Ingress:
    """Ray Serve reached one way (the gRPC proxy, or a replica's own port)."""

    batching_on: list[Load]
    batching_off: list[Load]  # max_batch_size 1
    open_loop: list[Load]
    recommend_batch: Load
    explain: Load

    @staticmethod
    def from_dict(d: dict) -> Ingress:
        loads = {k: [Load.from_dict(x) for x in d[k]] for k in ("batching_on", "batching_off", "open_loop")}
        return Ingress(**loads, recommend_batch=Load.from_dict(d["recommend_batch"]),
                       explain=Load.from_dict(d["explain"]))


@dataclass(frozen=True)
class Round:
    """One pass over the servers' layers, every server measured back to back at each point."""

    plain: Plain
    ray: dict[str, Ingress]  # by ingress name (INGRESSES); empty without Ray
    model_alone_beside_batch: ModelAlone  # at RecommendBatch's size, just before it

    @staticmethod
    def from_dict(d: dict) -> Round:
        return Round(Plain.from_dict(d["plain"]), {k: Ingress.from_dict(v) for k, v in d["ray"].items()},
                     ModelAlone(**d["model_alone_beside_batch"]))


@dataclass(frozen=True)
class Report:
    """A whole run: bench.json."""

    config: BenchConfig
    versions: dict  # python, torch, ray, grpcio, git_commit, machine
    created: str  # UTC, ISO 8601
    model_version: str | None
    model_alone: list[ModelAlone]
    explain_methods: list[ExplainMethod]
    rounds: list[Round]
    ratios: dict[str, float | None] = field(default_factory=dict)  # each goal: the median over rounds
    ratios_by_round: list[dict[str, float | None]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Report:
        d = json.loads(text)
        if "rounds" not in d:
            raise ValueError("not a bench.json of this version of attnrec (no 'rounds'): rerun `attnrec bench`")
        config = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["config"].items()})
        return Report(config, d["versions"], d["created"], d.get("model_version"),
                      [ModelAlone(**m) for m in d["model_alone"]], [ExplainMethod(**m) for m in d["explain_methods"]],
                      [Round.from_dict(r) for r in d["rounds"]], d.get("ratios", {}), d.get("ratios_by_round", []))
