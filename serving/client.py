"""A small Python client for internal services: typed calls over the generated stubs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import grpc

from attnrec.v1 import recommender_pb2 as pb
from attnrec.v1 import recommender_pb2_grpc as pb_grpc

# Every RPC is idempotent (reads, answered from the request alone; Feedback keeps an event_id
# once), so a call that found no
# replica to answer it (UNAVAILABLE: a replica stopped under it, or none is up yet) is tried
# again, up to 4 times in all over about a second. Any gRPC client can use the same config
# (docs/operations.md).
SERVICE_CONFIG = {
    "methodConfig": [{
        "name": [{"service": "attnrec.v1.Recommender"}],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
}
CHANNEL_OPTIONS = [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(SERVICE_CONFIG))]


class RecommenderClient:
    """`with RecommenderClient("127.0.0.1:9000") as c: c.recommend(history=["1", "2"], k=10)`.

    Every call takes a deadline (`timeout`, seconds); errors arrive as grpc.RpcError with
    the server's status code (INVALID_ARGUMENT names the offending field). UNAVAILABLE is
    retried with backoff (SERVICE_CONFIG) within the deadline.
    """

    def __init__(self, target: str = "127.0.0.1:9000", timeout: float = 10.0,
                 channel: grpc.Channel | None = None):
        self.channel = channel or grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.timeout = timeout

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    @staticmethod
    def request(history: Sequence[str] = (), k: int = 10, user_id: str = "",
                candidates: Sequence[str] = (), include_history: bool = False,
                user_features: Mapping[str, str] | None = None, rerank: str = "",
                rerank_weight: float = 0.0, model_name: str = "") -> pb.RecommendRequest:
        return pb.RecommendRequest(user_id=user_id, history=[str(h) for h in history], k=k,
                                   candidate_item_ids=[str(c) for c in candidates],
                                   include_history=include_history, user_features=dict(user_features or {}),
                                   rerank=rerank, rerank_weight=rerank_weight, model_name=model_name)

    def recommend(self, history: Sequence[str] = (), k: int = 10, user_id: str = "",
                  candidates: Sequence[str] = (), include_history: bool = False,
                  user_features: Mapping[str, str] | None = None, timeout: float | None = None,
                  rerank: str = "", rerank_weight: float = 0.0, model_name: str = "") -> pb.RecommendResponse:
        """model_name pins one of several models served side by side ("" = the user's own)."""
        req = self.request(history, k, user_id, candidates, include_history, user_features, rerank, rerank_weight,
                           model_name)
        return self.stub.Recommend(req, timeout=timeout or self.timeout)

    def recommend_batch(self, requests: Iterable[pb.RecommendRequest],
                        timeout: float | None = None) -> pb.RecommendBatchResponse:
        return self.stub.RecommendBatch(pb.RecommendBatchRequest(requests=list(requests)),
                                        timeout=timeout or self.timeout)

    def explain(self, history: Sequence[str] = (), item_id: str = "", user_id: str = "", n_steps: int = 0,
                include_image: bool = False, include_html: bool = False, include_faithfulness: bool = False,
                methods: Sequence[str] = (), top_k: int = 0, user_features: Mapping[str, str] | None = None,
                timeout: float | None = None, model_name: str = "", counterfactual: bool = False,
                counterfactual_max_size: int = 0, counterfactual_rank: int = 0) -> pb.ExplainResponse:
        """Why `item_id` (or, when empty, the top `top_k` recommendations) for this user context;
        `methods` from "ig", "deletion", "combined" (empty: all); `counterfactual` also asks for the
        smallest set of history items without which the item would not be in the top
        `counterfactual_rank` (0 = 10). Explain's deadline is at least 120 s."""
        req = pb.ExplainRequest(user_id=user_id, history=[str(h) for h in history], item_id=item_id,
                                n_steps=n_steps, include_image=include_image, include_html=include_html,
                                include_faithfulness=include_faithfulness, methods=list(methods), top_k=top_k,
                                user_features=dict(user_features or {}), model_name=model_name,
                                counterfactual=counterfactual, counterfactual_max_size=counterfactual_max_size,
                                counterfactual_rank=counterfactual_rank)
        return self.stub.Explain(req, timeout=timeout or max(self.timeout, 120.0))

    @staticmethod
    def event(event_id: str, user_id: str, item_id: str, event_type: str, request_id: str = "",
              timestamp_ms: int = 0, value: float = 0.0) -> pb.FeedbackEvent:
        """One FeedbackEvent; timestamp_ms 0 = when the service receives it."""
        return pb.FeedbackEvent(event_id=event_id, user_id=user_id, item_id=str(item_id), event_type=event_type,
                                request_id=request_id, timestamp_ms=timestamp_ms, value=value)

    def feedback(self, events: Iterable[pb.FeedbackEvent], timeout: float | None = None) -> pb.FeedbackResponse:
        """Log events; an answer means the accepted ones are durable. Retry a failure as it was."""
        return self.stub.Feedback(pb.FeedbackRequest(events=list(events)), timeout=timeout or self.timeout)
