import pytest

from attnrec.serving.app import ServeFile
from attnrec.serving.config import DEFAULT_CONFIG, BatchConfig


def test_serve_yaml_parses():
    f = ServeFile.load(DEFAULT_CONFIG)
    assert f.route_prefix == "/" and f.grpc_port == 9000
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


def test_explainers_reserve_no_cpu_and_the_machine_offers_their_own_resource():
    """An Explainer replica must never hold the CPU a Recommender replica (or its replacement)
    waits for: it asks for a resource of its own, which one machine offers max_replicas of."""
    f = ServeFile.load(DEFAULT_CONFIG)
    explainer = f.deployments["Explainer"]
    assert explainer["ray_actor_options"]["num_cpus"] == 0
    assert f.custom_resources() == {"attnrec_explainer": float(explainer["autoscaling_config"]["max_replicas"])}
    assert f.deployments["Recommender"]["ray_actor_options"]["num_cpus"] >= 1


def test_min_replicas_shrink_to_what_the_machine_holds():
    f = ServeFile.load(DEFAULT_CONFIG)
    assert f.deployments["Recommender"]["autoscaling_config"]["min_replicas"] == 2
    assert f.fit_to(8) == []
    (note,) = f.fit_to(1)
    assert note.startswith("Recommender: min_replicas 2 -> 1")
    assert f.deployments["Recommender"]["autoscaling_config"]["min_replicas"] == 1


def test_each_models_deployments_get_options_and_the_machine_is_shared_among_them(checkpoint, retrained):
    from attnrec.serving.app import app_config, deployments_of
    from attnrec.serving.config import ServingConfig

    config = ServingConfig(checkpoint="", models=({"name": "a", "checkpoint": str(checkpoint), "share": 9},
                                                  {"name": "b", "checkpoint": str(retrained), "share": 1}))
    assert config.checkpoint == str(checkpoint) and [m.share for m in config.models] == [0.9, 0.1]
    assert deployments_of(config) == ("Recommender", "Explainer", "Recommender-b", "Explainer-b")
    f = ServeFile.load(DEFAULT_CONFIG)
    f.deployments["Recommender"]["user_config"] = {"checkpoint": "/rolled/out", "max_batch_size": 32}
    f = f.with_models(config)
    assert f.deployments["Recommender-b"]["user_config"] == {"max_batch_size": 32}  # not A's checkpoint
    assert f.deployments["Explainer-b"]["ray_actor_options"]["resources"] == {"attnrec_explainer": 1}
    assert f.custom_resources()["attnrec_explainer"] == 2 * f.deployments["Explainer"]["autoscaling_config"][
        "max_replicas"]
    assert f.fit_to(2) == ["Recommender: min_replicas 2 -> 1 (2 CPUs, 1 per replica)",
                           "Recommender-b: min_replicas 2 -> 1 (2 CPUs, 1 per replica)"]
    app = app_config(config, f.deployments, "/attnrec")
    assert [d["name"] for d in app["deployments"]] == ["Recommender", "Explainer", "Recommender-b", "Explainer-b"]
    assert app["args"]["models"][1] == {"name": "b", "checkpoint": str(retrained), "share": 0.1}
    assert ServingConfig(**app["args"]) == config  # what Serve hands app_builder is the same config


def test_the_training_jobs_command_is_one_attnrec_accepts():
    import shlex
    from pathlib import Path

    import yaml

    from attnrec.serving.cli import build_parser

    job = yaml.safe_load(Path(DEFAULT_CONFIG).with_name("kuberay-rayjob-train.yaml").read_text())
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[0] == "attnrec"
    args = build_parser().parse_args(words[1:])
    assert args.command == "train" and args.ray and args.use_gpu and args.num_workers == 2
