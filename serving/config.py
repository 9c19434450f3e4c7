"""The serving component's one frozen config. Runtime knobs that Serve changes while
running (batch size, wait timeout) arrive separately through `user_config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnrec.explain.config import ExplainConfig
from attnrec.model.config import ENGINES

DEFAULT_CONFIG = Path(__file__).with_name("serve.yaml")  # the Serve config `attnrec serve` reads


@dataclass(frozen=True)
class ServingConfig:
    checkpoint: str  # checkpoint directory, loaded by every replica
    device: str = "auto"  # "cpu", "cuda" or "auto": cuda when the replica was given a GPU
    max_k: int = 1_000  # largest k a request may ask for
    max_history: int = 10_000  # longer histories are refused (the model uses its last max_len items)
    max_candidates: int = 10_000  # candidate_item_ids per request
    max_batch_requests: int = 1_024  # entries per RecommendBatch call
    max_id_bytes: int = 256  # UTF-8 bytes per item id, user id, user feature name or value
    default_n_steps: int = ExplainConfig.n_steps  # Explain: integrated-gradients steps when the request says 0
    max_n_steps: int = 512
    max_explain_top_k: int = 10  # Explain: recommendations explained per call
    rerank: str = "none"  # a request's rerank when it leaves it empty: "none" or "calibrated"
    rerank_weight: float = 0.025  # calibration against relevance (docs/accuracy.md: KL -37%, NDCG@10 +2%)
    # The feedback log: events and impressions as Parquet under this directory or pyarrow
    # filesystem URI (model/feedback_log.py); "" = no log, and Feedback is UNIMPLEMENTED.
    feedback_dir: str = ""
    max_feedback_events: int = 1_000  # events per Feedback call
    # Recommend answers are logged as impressions in the background, this often: a replica
    # that dies loses at most this much of them (events are acknowledged only once durable)
    impression_flush_s: float = 1.0
    # Several models side by side (A/B): name, checkpoint and share of users each
    # (serving/variants.py; `attnrec serve --model NAME=DIR:SHARE`). The first is served by the
    # ingress replicas themselves, and `checkpoint` is its; each other has its own Recommender
    # and Explainer deployments behind the ingress. Empty: one model, `checkpoint`.
    models: tuple = ()
    # Two-stage retrieval (model/retrieval.py) for whole-catalogue Recommend: "auto" = from the
    # checkpoint's item index (`attnrec index`) when the catalogue has at least
    # retrieval_min_items items; "on" = whenever it has an index; "off" = always exact.
    retrieval: str = "auto"
    retrieval_min_items: int = 100_000  # below it, exact scoring is as fast or faster (docs/performance.md)
    retrieval_candidates: int = 300  # items the index proposes per query, then scored exactly
    retrieval_probe: int = 0  # index lists a query scans; 0 = the index's own (set by `attnrec index`)
    # What runs the transformer pass of Recommend (and of Explain's rankings, so that both rank
    # alike) on a CPU replica: "onnxruntime" (model/onnx_encoder.py: the same scores to float
    # rounding, in less time: docs/performance.md, "Engines") or "torch". GPU replicas use torch.
    engine: str = "onnxruntime"

    def __post_init__(self) -> None:
        if self.retrieval not in ("auto", "on", "off"):
            raise ValueError(f"retrieval: {self.retrieval!r}, expected auto, on or off")
        if self.engine not in ENGINES:
            raise ValueError(f"engine: {self.engine!r}, expected {' or '.join(ENGINES)}")
        if not self.models:
            return
        from attnrec.model.checkpoint import resolve_checkpoint
        from attnrec.serving.variants import Variant, check_variants

        variants = check_variants([m if isinstance(m, Variant) else Variant(**m) for m in self.models])
        variants = tuple(Variant(v.name, resolve_checkpoint(v.checkpoint), v.share) for v in variants)
        object.__setattr__(self, "models", variants)
        object.__setattr__(self, "checkpoint", variants[0].checkpoint)

    def alone(self, variant) -> ServingConfig:
        """The config of one variant's own deployments: its checkpoint, no other models."""
        from dataclasses import replace

        return replace(self, checkpoint=variant.checkpoint, models=())


CHECKPOINT_KEY = "checkpoint"  # user_config: the checkpoint every replica serves; `attnrec rollout` sets it


def checkpoint_of(user_config: dict) -> tuple[str | None, dict]:
    """(the user_config's checkpoint or None, the rest of it)."""
    rest = {k: v for k, v in user_config.items() if k != CHECKPOINT_KEY}
    checkpoint = user_config.get(CHECKPOINT_KEY)
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ValueError(f"user_config: {CHECKPOINT_KEY} must be a directory path, got {checkpoint!r}")
    return checkpoint, rest


@dataclass(frozen=True)
class BatchConfig:
    """@serve.batch settings, set from Serve's user_config at start and on every reconfigure."""

    max_batch_size: int = 64  # requests scored in one forward pass
    batch_wait_timeout_s: float = 0.005  # how long a non-full batch waits for more requests
    # opt-in: no wait while requests do not overlap; faster at light load, can fall behind under
    # load (see batching.BatchWait and the README's measurements)
    adaptive_wait: bool = False

    @staticmethod
    def from_user_config(user_config: dict) -> BatchConfig:
        unknown = set(user_config) - {"max_batch_size", "batch_wait_timeout_s", "adaptive_wait"}
        if unknown:
            raise ValueError(f"user_config: unknown keys {sorted(unknown)}")
        config = BatchConfig(**user_config)
        if not isinstance(config.adaptive_wait, bool):
            raise ValueError(f"user_config: adaptive_wait must be true or false, got {config.adaptive_wait!r}")
        if config.max_batch_size < 1 or config.batch_wait_timeout_s < 0:
            raise ValueError(f"user_config: max_batch_size must be >= 1 and batch_wait_timeout_s >= 0, got {config}")
        return config
