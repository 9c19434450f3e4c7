"""The metrics endpoint of a running service: Ray Serve's and attnrec's own, as Prometheus text."""

import urllib.request

import pytest

from attnrec.serving.client import RecommenderClient
from tests.serving.test_feedback_service import wait_for

pytestmark = pytest.mark.integration


def scrape() -> str:
    from attnrec.serving.server import metrics_address

    with urllib.request.urlopen(metrics_address(), timeout=10) as answer:
        return answer.read().decode()


def test_the_metrics_endpoint_serves_ours_beside_serves(client, service):
    from attnrec.serving.server import metrics_address

    assert metrics_address().startswith("http://127.0.0.1:")  # loopback, like every other port
    answer = client.recommend(["i1", "i2", "not-an-item"], k=3, user_id="metrics-user")
    client.recommend_batch([RecommenderClient.request(["i3"], 2, user_id=f"m{u}") for u in range(5)])
    client.explain(["i1", "i2"], top_k=1, n_steps=8, methods=["ig"])
    client.feedback([RecommenderClient.event("metrics-e1", "metrics-user", "i4", "purchase", answer.request_id),
                     RecommenderClient.event("metrics-e1", "metrics-user", "i4", "purchase", answer.request_id)])
    wanted = ["ray_attnrec_recommend_answers_total{", f'model_version="{answer.model_version}"',
              "ray_attnrec_batch_size_bucket{", "ray_attnrec_history_items_total{", "ray_attnrec_unknown_items_total{",
              "ray_attnrec_explain_convergence_delta_bucket{", 'event_type="purchase"',
              "ray_attnrec_feedback_duplicates_total{", 'ray_attnrec_feedback_write_ms_bucket{',
              'kind="impressions"', "ray_serve_num_grpc_requests_total{", "ray_serve_deployment_processing_latency_ms"]

    def missing() -> list[str]:
        text = scrape()
        return [w for w in wanted if w not in text]

    assert wait_for(lambda: not missing(), seconds=30), f"missing from /metrics: {missing()}"
