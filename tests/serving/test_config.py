import pytest

from attnrec.serving.app import ServeFile
from attnrec.serving.config import DEFAULT_CONFIG, BatchConfig


def test_serve_yaml_parses():
    f = ServeFile.load(DEFAULT_CONFIG)
    assert f.route_prefix == "/attnrec" and f.grpc_port == 9000
    rec = f.deployments["Recommender"]
    batch = BatchConfig.from_user_config(rec.get("user_config", {}))
    assert rec["max_ongoing_requests"] >= batch.max_batch_size  # or batches never fill
    assert {"min_replicas", "max_replicas", "target_ongoing_requests"} <= set(rec["autoscaling_config"])


def test_batching_defaults_have_one_source():
    """The deployment's user_config and its @serve.batch come from BatchConfig, and serve.yaml
    leaves the numbers out (it may override them, never restate them)."""
    from dataclasses import asdict

    from attnrec.serving.deployments import Recommender

    assert Recommender.user_config == asdict(BatchConfig())
    assert "user_config" not in ServeFile.load(DEFAULT_CONFIG).deployments["Recommender"]


@pytest.mark.parametrize("bad", [{"max_batch_size": 0}, {"batch_wait_timeout_s": -1}, {"max_batch": 3},
                                 {"adaptive_wait": "no"}])
def test_bad_user_config_is_refused(bad):
    with pytest.raises(ValueError, match="user_config"):
        BatchConfig.from_user_config(bad)
