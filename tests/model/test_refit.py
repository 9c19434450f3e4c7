import json
from types import SimpleNamespace

import numpy as np

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.refit import RefitConfig, refit, refit_epochs
from attnrec.model.sequences import Sequences, held_out
from attnrec.model.train import prepare, train
from attnrec.serving.cli import main

TINY = ModelConfig(n_items=1, max_len=16, d_model=16, n_layers=1, n_heads=2, dropout=0.1)


def test_the_refit_data_hold_each_users_validation_item_but_never_the_test_item():
    seqs = Sequences(users=np.array([1, 2]), offsets=np.array([0, 5, 7]), items=np.array([1, 2, 3, 4, 5, 6, 7]),
                     weights=np.array([1, 1, 1, 0.5, 1, 1, 1], dtype=np.float32))
    refit_train = held_out(seqs, 1)
    assert refit_train.get(0).tolist() == [1, 2, 3, 4] and refit_train.get(1).tolist() == [6, 7]
    assert refit_train.weights.tolist() == [1, 1, 1, 0.5, 1, 1]


def test_when_the_refit_runs_and_why_not():
    ran = {"best_epoch": 7, "stopped_by": "early_stopping", "train_seconds": 170.0, "epochs_run": 17}
    assert refit_epochs(ran, 1_000, RefitConfig(), None)[0] == 7
    assert refit_epochs(ran, 1_000, RefitConfig(mode="off"), None) == (0, "off (--refit off)")
    for stopped, says in (("interrupted", "a stop signal"), ("max_minutes", "--max-minutes")):
        epochs, why = refit_epochs({**ran, "stopped_by": stopped}, 1_000, RefitConfig(), None)
        assert epochs == 0 and says in why
    epochs, why = refit_epochs(ran, 400_000, RefitConfig(), None)
    assert epochs == 0 and "400,000 interactions is above 300,000" in why
    assert refit_epochs(ran, 400_000, RefitConfig(mode="on"), None)[0] == 7
    epochs, why = refit_epochs(ran, 1_000, RefitConfig(), minutes_left=1.0)  # 7 epochs of 10 s: 1.2 minutes
    assert epochs == 0 and "need about 1.2 minutes" in why
    assert refit_epochs(ran, 1_000, RefitConfig(), minutes_left=1.5)[0] == 7
    assert refit_epochs({**ran, "best_epoch": 0}, 1_000, RefitConfig(), None)[0] == 0


def test_training_without_validation_runs_every_epoch_and_keeps_the_last(shop, tmp_path):
    prepared = prepare(load_tables(**shop))
    config = TrainConfig(epochs=3, batch_size=64, patience=1, validate=False)
    ckpt = train(prepared, tmp_path / "ckpt", TINY, config, progress=False)
    saved = json.loads((tmp_path / "ckpt" / "metadata.json").read_text())
    assert saved["epochs_run"] == 3 and saved["best_epoch"] == 3 and saved["stopped_by"] == "max_epochs"
    assert saved["valid_NDCG@10"] is None and not any("valid_NDCG@10" in record for record in saved["history"])
    assert load_checkpoint(tmp_path / "ckpt").model_version == ckpt.model_version


def test_a_refit_that_does_not_finish_leaves_the_validated_checkpoint(shop, tmp_path):
    prepared = prepare(load_tables(**shop))
    out = tmp_path / "ckpt"
    validated = train(prepared, out, TINY, TrainConfig(epochs=1, batch_size=64), progress=False)
    before = (out / "model.safetensors").read_bytes()

    def stopped_early(data, place, model_config, config, fingerprint, progress):
        assert config.epochs == 3 and not config.validate
        return SimpleNamespace(metadata={"epochs_run": 1, "stopped_by": "interrupted"})

    assert refit(prepared, out, TINY, validated, 3, stopped_early, "", False) is None
    assert (out / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no scratch left behind


def test_cli_training_refits_the_chosen_recipe_and_says_so(shop, tmp_path, capsys):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"]),
            "--epochs", "2", "--d-model", "16", "--max-len", "16", "--features", "items", "--quiet"]
    assert main(["train", *args, "--out", str(tmp_path / "validated"), "--refit", "off"]) == 0
    assert "refit off" in capsys.readouterr().out
    assert main(["train", *args, "--out", str(tmp_path / "refit")]) == 0
    printed = capsys.readouterr().out
    validated, refitted = load_checkpoint(tmp_path / "validated"), load_checkpoint(tmp_path / "refit")
    m = refitted.metadata
    assert f"refit on the validation items too for {m['best_epoch']} epochs" in printed
    assert m["refit"]["epochs"] == m["best_epoch"] and m["refit"]["validation_items_added"] > 0
    # the validated run that chose the recipe is the same run, with the same record
    def scores(history):  # each epoch's loss and validation, not its wall-clock seconds
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert m["valid_NDCG@10"] == validated.metadata["valid_NDCG@10"]
    assert scores(m["history"]) == scores(validated.metadata["history"])
    assert refitted.model_version != validated.model_version == validated.metadata["model_version"]
    assert m["model_version"] == refitted.model_version and "refit" not in validated.metadata
    # the refit trained on one more item per evaluated user: its popularity counts say so
    prepared = prepare(load_tables(**shop))
    assert refitted.item_counts.sum() == validated.item_counts.sum() + len(prepared.split.eval_rows)
