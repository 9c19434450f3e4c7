"""What a replica serves, and what a checkpoint must pass before it may replace it (no Ray)."""

import json
import shutil

import pytest

from attnrec.model.checkpoint import CheckpointError, load_checkpoint
from attnrec.serving.app import app_config, served_checkpoint, with_checkpoint
from attnrec.serving.config import ServingConfig, checkpoint_of
from attnrec.serving.loaded import check_replacement, check_rollout, load


def test_model_version_names_the_weights(checkpoint, retrained):
    a, again, b = load_checkpoint(checkpoint), load_checkpoint(checkpoint), load_checkpoint(retrained)
    assert a.metadata["data_fingerprint"] == b.metadata["data_fingerprint"]  # same data, same run name
    assert a.model_version == again.model_version == a.metadata["model_version"]
    assert a.model_version != b.model_version
    with_other_weights = load_checkpoint(checkpoint)
    with_other_weights.model.item_emb.weight.data[3, 0] += 1e-3
    assert with_other_weights.model_version != a.model_version


def test_a_retrained_checkpoint_may_replace_the_served_one(checkpoint, retrained):
    old, new = check_rollout(str(checkpoint), str(retrained))
    assert (old, new) == (load(str(checkpoint)).model_version, load(str(retrained)).model_version)


def test_another_catalogue_is_refused_unless_allowed(checkpoint, other_shop_checkpoint):
    with pytest.raises(CheckpointError, match="another item catalogue.*--allow-new-catalog"):
        check_rollout(str(checkpoint), str(other_shop_checkpoint))
    check_rollout(str(checkpoint), str(other_shop_checkpoint), allow_new_catalog=True)


def broken(checkpoint, tmp_path, how: str):
    bad = tmp_path / how
    shutil.copytree(checkpoint, bad)
    if how == "missing_weights":
        (bad / "model.safetensors").unlink()
    elif how == "torn_weights":
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "wrong_shapes":
        config = json.loads((bad / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps({**config, "d_model": 32}))
    elif how == "no_config":
        (bad / "config.json").unlink()
    return bad


@pytest.mark.parametrize("how, message", [
    ("missing_weights", "incomplete checkpoint, missing model.safetensors"),
    ("torn_weights", "do not fit"),
    ("wrong_shapes", "do not fit"),
    ("no_config", "not a checkpoint directory"),
])
def test_a_broken_checkpoint_is_refused_with_its_reason(checkpoint, tmp_path, how, message):
    with pytest.raises((CheckpointError, FileNotFoundError), match=message):
        check_rollout(str(checkpoint), str(broken(checkpoint, tmp_path, how)))


def test_non_finite_weights_are_refused(checkpoint):
    current, new = load_checkpoint(checkpoint), load_checkpoint(checkpoint)
    new.model.item_emb.weight.data[:] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        check_replacement(current, new)


def test_the_application_config_carries_the_checkpoint_each_model_deployment_serves(checkpoint, retrained):
    deployments = {"Recommender": {"user_config": {"max_batch_size": 8}, "num_replicas": 2}}
    app = app_config(ServingConfig(checkpoint=str(checkpoint)), deployments, "/attnrec")
    assert served_checkpoint(app) == str(checkpoint)
    rolled = with_checkpoint(app, str(retrained))
    assert served_checkpoint(rolled) == str(retrained) and served_checkpoint(app) == str(checkpoint)
    entries = {d["name"]: d for d in rolled["deployments"]}
    assert entries["Recommender"] == {"name": "Recommender", "num_replicas": 2,
                                      "user_config": {"max_batch_size": 8, "checkpoint": str(retrained)}}
    assert entries["Explainer"] == {"name": "Explainer", "user_config": {"checkpoint": str(retrained)}}
    assert rolled["args"] == app["args"]  # args unchanged: Serve reconfigures replicas, never restarts them
    assert checkpoint_of(entries["Recommender"]["user_config"]) == (str(retrained), {"max_batch_size": 8})
    with pytest.raises(ValueError, match="checkpoint must be a directory path"):
        checkpoint_of({"checkpoint": 3})
