"""attnrec's own Prometheus metrics, beside the ones Ray Serve exports (docs/operations.md
lists both). Made in each replica through Ray Serve's metrics API, which adds the
`application`, `deployment` and `replica` labels; Ray exports them with a `ray_` prefix (and
`_total` on counters) at the metrics port (`attnrec serve --metrics-port`).

Counters and histograms only: Ray drops a gauge that is not set again within two export
intervals.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from ray.serve import metrics

from attnrec.v1 import recommender_pb2 as pb

BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
DELTA_BOUNDARIES = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]  # |IG completeness error|, in logits
WRITE_MS_BOUNDARIES = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500]


class RecommendMetrics:
    """What the Recommender ingress counts: answers per model, batch sizes, unknown items."""

    def __init__(self):
        self.answers = metrics.Counter("attnrec_recommend_answers", tag_keys=("model_version",),
                                       description="Recommend answers (RecommendBatch entries each count), "
                                                   "per model version")
        self.batch_size = metrics.Histogram("attnrec_batch_size", boundaries=BATCH_BOUNDARIES,
                                            description="Users ranked in one forward pass (@serve.batch or a "
                                                        "RecommendBatch chunk)")
        self.history_items = metrics.Counter("attnrec_history_items",
                                             description="History item ids received in Recommend requests")
        self.unknown_items = metrics.Counter("attnrec_unknown_items",
                                             description="Item ids in requests the model does not know "
                                                         "(history and candidates); over attnrec_history_items: "
                                                         "the unknown-item rate")

    def batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def answered(self, requests: Iterable[pb.RecommendRequest], answers: Iterable[pb.RecommendResponse]) -> None:
        by_version: Tally[str] = Tally()
        history = unknown = 0
        for request, answer in zip(requests, answers):
            history += len(request.history)
            if answer.model_version:
                by_version[answer.model_version] += 1
                unknown += len(answer.unknown_item_ids)
        for version, n in by_version.items():
            self.answers.inc(n, tags={"model_version": version})
        if history:  # Ray refuses an increment of 0
            self.history_items.inc(history)
        if unknown:
            self.unknown_items.inc(unknown)


class ExplainMetrics:
    def __init__(self):
        self.delta = metrics.Histogram("attnrec_explain_convergence_delta", boundaries=DELTA_BOUNDARIES,
                                       description="|convergence delta| of each Explain answer's integrated "
                                                   "gradients: how far attributions miss adding up to the score")

    def explained(self, answers: Iterable) -> None:
        for answer in answers:
            if isinstance(answer, pb.ExplainResponse):  # else a refused request
                for explanation in (answer, *answer.more):
                    if explanation.HasField("convergence_delta"):
                        self.delta.observe(abs(explanation.convergence_delta))


class FeedbackMetrics:
    def __init__(self):
        self.events = metrics.Counter("attnrec_feedback_events", tag_keys=("event_type",),
                                      description="Feedback events written to the log (each event_id once)")
        self.duplicates = metrics.Counter("attnrec_feedback_duplicates",
                                          description="Feedback events not written again: their event_id was")
        self.write_ms = metrics.Histogram("attnrec_feedback_write_ms", boundaries=WRITE_MS_BOUNDARIES,
                                          tag_keys=("kind",),
                                          description="Time to write one file of the log durably (events or "
                                                      "impressions), milliseconds")

    def written(self, event_types: Iterable[str], duplicates: int) -> None:
        for event_type, n in Tally(event_types).items():
            self.events.inc(n, tags={"event_type": event_type})
        if duplicates:
            self.duplicates.inc(duplicates)

    def write_took(self, kind: str, ms: float) -> None:
        self.write_ms.observe(ms, tags={"kind": kind})
