import pytest

from attnrec.serving.app import ServeFile
from attnrec.serving.config import DEFAULT_CONFIG, BatchConfig


def test_serve_yaml_parses():
    f = ServeFile.load(DEFAULT_CONFIG)
    assert f.route_prefix == "/attnrec" and f.grpc_port == 9000
    rec = f.deployments["Recommender"]
    assert rec["max_ongoing_requests"] >= rec["user_config"]["max_batch_size"]  # or batches never fill
    assert BatchConfig.from_user_config(rec["user_config"]).max_batch_size == rec["user_config"]["max_batch_size"]
    assert {"min_replicas", "max_replicas", "target_ongoing_requests"} <= set(rec["autoscaling_config"])


@pytest.mark.parametrize("bad", [{"max_batch_size": 0}, {"batch_wait_timeout_s": -1}, {"max_batch": 3},
                                 {"adaptive_wait": "no"}])
def test_bad_user_config_is_refused(bad):
    with pytest.raises(ValueError, match="user_config"):
        BatchConfig.from_user_config(bad)
