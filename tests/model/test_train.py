import json

import numpy as np
import torch

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.evaluate import evaluate_checkpoint
from attnrec.model.sequences import Sequences, leave_one_out, left_pad
from attnrec.model.train import prepare, train, training_windows
from attnrec.serving.cli import main

TINY = ModelConfig(n_items=1, max_len=16, d_model=16, n_layers=1, n_heads=2, dropout=0.1)


def test_leave_one_out_and_windows():
    seqs = Sequences(users=np.array([1, 2]), offsets=np.array([0, 5, 7]), items=np.array([1, 2, 3, 4, 5, 6, 7]))
    split = leave_one_out(seqs)
    assert split.train.get(0).tolist() == [1, 2, 3] and split.train.get(1).tolist() == [6, 7]
    assert split.eval_rows.tolist() == [0]  # two interactions: training only
    w = training_windows(split, max_len=2)
    targets = sorted(t for _, first, end in w for t in split.train.items[first:end])
    assert targets == [2, 3, 7]  # every interaction but each sequence's first is a target once
    assert left_pad([np.array([1, 2, 3]), np.array([4])], 2).tolist() == [[2, 3], [0, 4]]


def test_train_checkpoint_load_score(shop, tmp_path):
    prepared = prepare(load_tables(**shop))
    assert [e.name for e in prepared.item_encoders] == ["category", "price", "brand"]
    assert [e.name for e in prepared.user_encoders] == ["age", "gender", "region"]
    ckpt = train(prepared, tmp_path / "ckpt", TINY, TrainConfig(epochs=2, batch_size=64), progress=False)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == ckpt.config and loaded.items == ckpt.items
    assert loaded.metadata["best_epoch"] in (1, 2)
    hist = torch.as_tensor(left_pad([prepared.split.full.get(r) for r in range(4)], TINY.max_len))
    users = prepared.split.full.users[:4]
    torch.testing.assert_close(
        loaded.model.score_all(hist, loaded.user_inputs(users)), ckpt.model.score_all(hist, ckpt.user_inputs(users))
    )
    result = evaluate_checkpoint(tmp_path / "ckpt", load_tables(**shop), device="cpu")
    assert result["model"]["users"] == len(prepared.split.eval_rows) > 0
    assert 0.0 <= result["model"]["NDCG@10"] <= result["model"]["HR@10"] <= 1.0
    short = evaluate_checkpoint(tmp_path / "ckpt", load_tables(**shop), device="cpu", history_limit=1)
    assert short["model"]["users"] == result["model"]["users"] and short["history_limit"] == 1
    assert short["model"]["NDCG@10"] != result["model"]["NDCG@10"]  # the model saw less


def test_cli_train_then_evaluate(shop, tmp_path, capsys):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    out = tmp_path / "cli"
    assert main(["train", *args, "--out", str(out), "--epochs", "1", "--d-model", "16", "--max-len", "16",
                 "--quiet"]) == 0
    assert main(["evaluate", *args, "--checkpoint", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "NDCG@10" in printed
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved) >= {"model", "popularity", "model_version"}


def test_cli_reports_bad_data_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "none.parquet"
    assert main(["train", "--interactions", str(missing), "--out", str(tmp_path / "x")]) == 2
    assert f"error: {missing}: interactions file does not exist" in capsys.readouterr().err
