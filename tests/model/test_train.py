import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import torch

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.evaluate import evaluate_checkpoint
from attnrec.model.sequences import Sequences, leave_one_out, left_pad
from attnrec.model.train import gained, planned_epochs, prepare, train, training_windows
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
    # what re-ranking calls popular: the interactions the model trained on, per item
    trained_on = np.bincount(prepared.split.train.items, minlength=len(ckpt.items) + 1)
    assert loaded.item_counts.tolist() == trained_on.tolist()
    assert loaded.item_counts[0] == 0 and loaded.item_counts.sum() == len(prepared.split.train.items)
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
                 "--features", "all", "--quiet"]) == 0
    assert main(["evaluate", *args, "--checkpoint", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "NDCG@10" in printed
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved) >= {"model", "popularity", "model_version", "groups", "beyond_accuracy"}
    assert set(saved["groups"]) == {"history_length", "age", "gender", "region"}  # the shop's user features
    for table in saved["groups"].values():
        assert sum(row["users"] for row in table.values()) == saved["model"]["users"]
        assert all(set(row) == {"users", "HR@10", "NDCG@10", "NDCG@10_low", "NDCG@10_high"} for row in table.values())
    beyond = saved["beyond_accuracy"]
    assert set(beyond) >= {"coverage_at_10", "long_tail_share_at_10", "mean_popularity_percentile_at_10",
                           "exposure_gini_at_10", "calibration_feature", "calibration_kl"}
    assert beyond["calibration_feature"] == "category" and 0 < beyond["coverage_at_10"] <= 1
    assert "NDCG@10 by gender" in printed and "calibration: KL" in printed


def test_cli_reports_bad_data_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "none.parquet"
    assert main(["train", "--interactions", str(missing), "--out", str(tmp_path / "x")]) == 2
    assert f"error: {missing}: interactions file does not exist" in capsys.readouterr().err


def test_only_gains_above_the_threshold_keep_training_going():
    mark, mark_epoch, history = -1.0, 0, [0.30, 0.40, 0.401, 0.4019, 0.4015, 0.399, 0.41]
    marks = []
    for epoch, ndcg in enumerate(history, start=1):
        if gained(ndcg, mark, 0.005):
            mark, mark_epoch = ndcg, epoch
        marks.append(mark_epoch)
    # 0.401..0.4019 are within 0.5% of 0.40: better checkpoints, but no reason to go on
    assert marks == [1, 2, 2, 2, 2, 2, 7]
    assert gained(0.4001, 0.40, 0.0) and not gained(0.40, 0.40, 0.0)  # 0: any gain counts, as before
    assert gained(0.0, -1.0, 0.005)  # the first validation always counts


def test_out_of_range_training_flags_are_one_line_naming_the_flag(shop, tmp_path, capsys):
    base = ["train", "--interactions", str(shop["interactions"]), "--out", str(tmp_path / "x")]
    for flags, says in ((["--min-improvement", "-0.1"], "--min-improvement: must be 0 or more"),
                        (["--patience", "0"], "--patience: must be at least 1"),
                        (["--lr", "0"], "--lr: must be above 0"),
                        (["--d-model", "30", "--heads", "4"], "--d-model 30 must be a multiple of --heads 4")):
        assert main(base + flags) == 2, flags
        assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_planned_length_follows_early_stopping():
    config = TrainConfig(epochs=100, patience=10)
    assert planned_epochs(config, 0, 0) == 10
    assert planned_epochs(config, 7, 7) == 17  # a new best moves the end
    assert planned_epochs(config, 12, 7) == 17
    assert planned_epochs(TrainConfig(epochs=15, patience=10), 9, 9) == 15


def test_a_stop_keeps_the_best_epoch_with_complete_metadata(shop, tmp_path):
    prepared = prepare(load_tables(**shop))
    asked = []

    batches = -(-len(training_windows(prepared.split, TINY.max_len)) // 64)

    def stop_in_the_third_epoch() -> bool:  # asked before every batch and once after each epoch
        asked.append(1)
        return len(asked) > 2 * (batches + 1) + 1

    ckpt = train(prepared, tmp_path / "ckpt", TINY, TrainConfig(epochs=50, batch_size=64), progress=False,
                 should_stop=stop_in_the_third_epoch)
    saved = json.loads((tmp_path / "ckpt" / "metadata.json").read_text())
    assert saved["stopped_by"] == "interrupted" and saved["epochs_run"] == 2 and saved["best_epoch"] in (1, 2)
    assert saved["train_seconds"] > 0 and saved["model_version"] == load_checkpoint(tmp_path / "ckpt").model_version
    assert ckpt.model_version == saved["model_version"]


def test_sigterm_ends_cli_training_with_the_best_checkpoint_and_its_summary(shop, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "ckpt"
    process = subprocess.Popen(
        [sys.executable, "-m", "attnrec.serving.cli", "train", "--interactions", str(shop["interactions"]),
         "--items", str(shop["items"]), "--users", str(shop["users"]), "--out", str(out), "--epochs", "500",
         "--d-model", "16", "--max-len", "16", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300  # catches a hang only
    while not (out / "metadata.json").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    printed, _ = process.communicate(timeout=300)
    assert process.returncode == 0, printed
    assert "ended by a stop signal" in printed, printed
    saved = json.loads((out / "metadata.json").read_text())
    assert saved["stopped_by"] == "interrupted" and saved["epochs_run"] < 500
    assert saved["data"]["interactions"] == str(shop["interactions"]) and "popularity_valid" in saved
    load_checkpoint(out)


def test_help_shows_the_defaults(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--batch-size", "64"), ("--epochs", "100"), ("--max-minutes", "0.0"),
                            ("--dropout", "0.2"), ("--d-model", "64"), ("--features", "auto"), ("--refit", "auto"),
                            ("--max-len", "the length that covers 90% of the users' histories whole, between 20 "
                                          "and 200")):
        assert option in text and f"(default: {default})" in text.split(option, 2)[-1].split("--", 1)[0], option


def test_evaluate_says_who_it_could_not_score_instead_of_scoring_an_older_item(shop, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    out = tmp_path / "cli"
    assert main(["train", *args, "--out", str(out), "--epochs", "1", "--d-model", "16", "--max-len", "16",
                 "--features", "all", "--quiet"]) == 0
    before = evaluate_checkpoint(out, load_tables(**shop), device="cpu")
    interactions = pq.read_table(shop["interactions"])
    user = interactions.column("user_id")[0].as_py()
    newer = pa.table({"user_id": pa.array([user], interactions.schema.field("user_id").type),
                      "item_id": pa.array(["a-new-item"]),
                      "timestamp": pa.array([interactions.column("timestamp").to_numpy().max() + 1],
                                            interactions.schema.field("timestamp").type)})
    later = tmp_path / "later.parquet"
    pq.write_table(pa.concat_tables([interactions.select(["user_id", "item_id", "timestamp"]),
                                     newer.cast(interactions.select(["user_id", "item_id", "timestamp"]).schema)]),
                   later)
    after = evaluate_checkpoint(out, load_tables(later, shop["items"], shop["users"]), device="cpu")
    assert after["not_scored"]["newest_item_unknown_to_the_model"] == 1
    assert after["model"]["users"] == before["model"]["users"] - 1
    assert main(["evaluate", "--interactions", str(later), "--items", str(shop["items"]), "--users",
                 str(shop["users"]), "--checkpoint", str(out)]) == 0
    assert "not scored: 1 users whose newest interaction is with an item the model does not know" in \
        capsys.readouterr().out


def test_titles_come_from_the_items_table_and_travel_with_the_checkpoint(shop, checkpoint, tmp_path):
    tables = load_tables(**shop)
    ids = tables.items.column("item_id").to_pylist()
    titled = tables.items.append_column("title", pa.array([f"Thing {i}" if n % 2 else None for n, i in enumerate(ids)]))
    prepared = prepare(replace(tables, items=titled))
    assert [e.name for e in prepared.item_encoders] == ["category", "price", "brand"]  # a title is not a feature
    by_id = dict(zip(prepared.items.ids, prepared.titles))
    assert by_id[ids[1]] == f"Thing {ids[1]}" and by_id[ids[0]] == ""  # no title: ""
    assert prepare(tables).titles is None  # no title column: no titles

    ckpt = load_checkpoint(checkpoint)
    assert ckpt.titles is None
    ckpt.titles = tuple(by_id.get(i, "") for i in ckpt.items.ids)
    ckpt.save(tmp_path / "titled")
    assert load_checkpoint(tmp_path / "titled").titles == ckpt.titles
