import argparse
import json

import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.serving.cli import main
from attnrec.serving.cluster_tune import defaults_point, parse_duration, search_space, trial_configs


def test_durations_read_as_people_write_them():
    assert [parse_duration(t) for t in ("30m", "90s", "1.5h", "45")] == [1800, 90, 5400, 45]
    for bad in ("soon", "-3m", "0", "5d"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def test_the_defaults_are_a_point_of_the_search_space_and_map_back_to_themselves():
    model_config, config = ModelConfig(n_items=10, max_len=100), TrainConfig()
    for has_items, has_users in ((True, True), (True, False), (False, False)):
        point = defaults_point(model_config, config, has_items, has_users)
        assert set(point) == set(search_space(has_items, has_users))
        m, c = trial_configs(point, model_config, config)
        assert m == model_config and c.lr == config.lr and (c.use_item_features, c.use_user_features) == (
            has_items or not has_users, has_users or not has_items)
    sampled = {"lr": 1e-3, "dropout": 0.3, "d_model": 32, "n_layers": 3, "max_len": 50, "features": "ids"}
    m, c = trial_configs(sampled, model_config, config)
    assert (m.d_model, m.n_layers, m.max_len, m.dropout, c.lr) == (32, 3, 50, 0.3, 1e-3)
    assert not c.use_item_features and not c.use_user_features


@pytest.mark.integration
def test_cli_tune_keeps_the_best_trial_checkpoint(shop, tmp_path, capsys, ray_session):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    out = tmp_path / "best"
    assert main(["tune", *args, "--out", str(out), "--time-budget", "90s", "--epochs", "2", "--grace-epochs", "1",
                 "--cpus-per-trial", "1", "--storage", str(tmp_path / "runs"), "--quiet"]) == 0
    result = json.loads((out / "tune.json").read_text())
    scored = [t for t in result["trials"] if t["best_valid_NDCG@10"] is not None]
    assert scored and result["defaults"] is not None and result["defaults"]["defaults"]
    assert result["best"]["best_valid_NDCG@10"] == max(t["best_valid_NDCG@10"] for t in scored)
    best = load_checkpoint(out)
    config = result["best"]["config"]
    assert (best.config.d_model, best.config.n_layers, best.config.max_len) == (
        config["d_model"], config["n_layers"], config["max_len"])
    assert best.metadata["valid_NDCG@10"] == pytest.approx(result["best"]["best_valid_NDCG@10"])
    assert best.metadata["tune"]["config"] == config
    assert 0 <= result["best"]["test"]["NDCG@10"] <= 1
    # the winning recipe trained again on the validation items too, for its best epoch's epochs
    assert best.metadata["refit"]["epochs"] == best.metadata["best_epoch"] and "test_before_refit" in result["best"]
    printed = capsys.readouterr().out
    assert "(the defaults)" in printed and "best: validation NDCG@10" in printed
