import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from attnrec.model.ablation import chosen_by_validation, summarize
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.selection import (
    BOTH,
    IDS,
    ITEMS,
    USERS,
    SelectionConfig,
    candidates,
    history_window,
    train_selected,
)
from attnrec.model.sequences import Sequences, leave_one_out
from attnrec.model.train import prepare
from attnrec.serving.cli import main

TINY = ModelConfig(n_items=1, max_len=16, d_model=16, n_layers=1, n_heads=2, dropout=0.1)


def test_candidates_add_one_family_at_a_time():
    assert candidates(True, True) == [BOTH, ITEMS, IDS]
    assert candidates(True, False) == [ITEMS, IDS]
    assert candidates(False, True) == [USERS, IDS]
    assert candidates(False, False) == [IDS]


def test_the_history_window_covers_most_histories_within_bounds():
    def split_of(lengths):
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return leave_one_out(Sequences(users=np.arange(1, len(lengths) + 1), offsets=offsets,
                                       items=np.ones(offsets[-1], dtype=np.int64)))

    # training histories are 2 shorter (validation and test items): 90% are at most 41 long
    assert history_window(split_of([12] * 50 + [43] * 40 + [1000] * 10)) == (50, 41)
    assert history_window(split_of([5] * 100))[0] == SelectionConfig.min_window
    assert history_window(split_of([5000] * 100))[0] == SelectionConfig.max_window
    config = SelectionConfig(window_quantile=0.5)
    assert history_window(split_of([32] * 60 + [500] * 40), config) == (30, 30)
    assert history_window(split_of([5] * 100))[1] == 3


class FakeFit:
    """Training stand-in: each candidate's validation NDCG@10 is given; writes a marker file."""

    def __init__(self, scores: dict[tuple[bool, bool], float], interrupt_first: bool = False):
        self.scores, self.calls, self.interrupt_first = scores, [], interrupt_first

    def __call__(self, prepared, out, model_config, config, fingerprint, progress):
        key = (config.use_item_features, config.use_user_features)
        self.calls.append((key, config.max_minutes))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "which.json").write_text(json.dumps(key))
        stopped = "interrupted" if self.interrupt_first and len(self.calls) == 1 else "early_stopping"
        return SimpleNamespace(metadata={"valid_NDCG@10": self.scores[key], "best_epoch": 3, "train_seconds": 1.0,
                                         "stopped_by": stopped})


def _prepared(n_interactions: int, items: bool = True, users: bool = True):
    return SimpleNamespace(item_encoders=("x",) if items else (), user_encoders=("y",) if users else (),
                           split=SimpleNamespace(full=SimpleNamespace(items=np.zeros(n_interactions))))


def test_auto_keeps_the_candidate_best_on_validation_and_says_which_family_it_switched_off(tmp_path):
    fit = FakeFit({(True, True): 0.20, (True, False): 0.23, (False, False): 0.19})
    out = tmp_path / "ckpt"
    selected = train_selected(_prepared(1_000), out, TINY, TrainConfig(max_minutes=9), fit, "", False)
    assert [key for key, _ in fit.calls] == [(True, True), (True, False), (False, False)]
    assert fit.calls[0][1] == pytest.approx(3, abs=0.01)  # a third of --max-minutes each, shared as it goes
    assert selected.report["chosen"] == "items" and selected.checkpoint.metadata["valid_NDCG@10"] == 0.23
    assert json.loads((out / "which.json").read_text()) == [True, False]  # the winner is in --out
    assert list(tmp_path.iterdir()) == [out]  # the other candidates are gone
    assert selected.lines[1] == ("user features switched off: validation NDCG@10 0.2300 without them, "
                                 "at best 0.2000 with them")
    assert set(selected.report["candidates"]) == {"items+users", "items", "ids"}


def test_auto_keeps_every_family_that_pays(tmp_path):
    fit = FakeFit({(True, True): 0.25, (True, False): 0.23, (False, False): 0.19})
    selected = train_selected(_prepared(1_000), tmp_path / "c", TINY, TrainConfig(), fit, "", False)
    assert selected.report["chosen"] == "items+users" and len(selected.lines) == 1
    assert json.loads((tmp_path / "c" / "which.json").read_text()) == [True, True]


def test_a_stop_during_the_first_candidate_ends_the_selection_with_it(tmp_path):
    fit = FakeFit({(True, True): 0.1, (True, False): 0.3, (False, False): 0.3}, interrupt_first=True)
    selected = train_selected(_prepared(1_000), tmp_path / "c", TINY, TrainConfig(), fit, "", False)
    assert len(fit.calls) == 1 and selected.report["chosen"] == "items+users"


def test_large_data_and_named_modes_train_once(tmp_path):
    fit = FakeFit({(True, True): 0.2, (False, False): 0.1, (True, False): 0.15})
    big = train_selected(_prepared(400_000), tmp_path / "a", TINY, TrainConfig(), fit, "", False)
    assert fit.calls == [((True, True), 0.0)] and "400,000 interactions" in big.lines[0]
    fit.calls.clear()
    train_selected(_prepared(1_000), tmp_path / "b", TINY, TrainConfig(), fit, "", False,
                   SelectionConfig(features="none"))
    train_selected(_prepared(1_000, users=False), tmp_path / "c", TINY, TrainConfig(), fit, "", False,
                   SelectionConfig(features="all"))
    assert [key for key, _ in fit.calls] == [(False, False), (True, False)]


def test_the_ablation_scores_auto_by_what_validation_chose():
    runs = [{"seed": s, "features": f, "valid_NDCG@10": v, "test_NDCG@10": t, "test_HR@10": t * 2}
            for s, f, v, t in [(0, "ids", 0.1, 0.10), (0, "items", 0.2, 0.12),
                               (1, "ids", 0.3, 0.14), (1, "items", 0.2, 0.20)]]
    assert [(r["seed"], r["features"]) for r in chosen_by_validation(runs)] == [(0, "items"), (1, "ids")]
    summary = summarize(runs, ["ids", "items"])
    assert summary["auto"]["test_NDCG@10"] == pytest.approx(0.13) and summary["auto"]["chosen"] == ["items", "ids"]
    assert summary["items"]["test_NDCG@10"] == pytest.approx(0.16)
    assert summary["items"]["test_NDCG@10_std"] == pytest.approx(np.std([0.12, 0.20], ddof=1))


def test_cli_train_compares_the_families_and_records_the_choice(shop, tmp_path, capsys):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    out = tmp_path / "ckpt"
    assert main(["train", *args, "--out", str(out), "--epochs", "1", "--d-model", "16", "--quiet"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "metadata.json").read_text())
    selection = saved["feature_selection"]
    assert set(selection["candidates"]) == {"items+users", "items", "ids"}
    best = max(selection["candidates"], key=lambda name: selection["candidates"][name]["valid_NDCG@10"])
    assert selection["chosen"] == best and saved["valid_NDCG@10"] == selection["candidates"][best]["valid_NDCG@10"]
    assert "feature families by validation NDCG@10" in printed and f"keeping {best}" in printed
    config = json.loads((out / "config.json").read_text())
    assert bool(config["user_features"]) == ("users" in best) and bool(config["item_features"]) == (best != "ids")
    window, _ = history_window(prepare(load_tables(**shop)).split)
    assert config["max_len"] == window and f"history window {window}" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # neither candidates nor the refit left behind
    assert saved["refit"]["epochs"] == saved["best_epoch"] == 1


def test_cli_ablate_writes_every_run_and_the_table(shop, tmp_path, capsys):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    assert main(["ablate", *args, "--out", str(tmp_path), "--epochs", "1", "--d-model", "16", "--seeds", "0,1",
                 "--quiet"]) == 0
    result = json.loads((tmp_path / "ablation.json").read_text())
    assert [(r["seed"], r["features"]) for r in result["runs"]] == [
        (s, f) for s in (0, 1) for f in ("ids", "items", "items+users")]
    assert all(0 <= r["test_NDCG@10"] <= r["test_HR@10"] <= 1 for r in result["runs"])
    assert (tmp_path / "seed1" / "items" / "model.safetensors").exists()
    assert set(result["summary"]) == {"ids", "items", "items+users", "auto", "refit"}
    # each seed's choice, trained again on the validation items too, scored on the same test split
    assert [(r["seed"], r["features"]) for r in result["refits"]] == [
        (r["seed"], r["features"]) for r in chosen_by_validation(result["runs"])]
    assert (tmp_path / "seed0" / "refit" / "model.safetensors").exists()
    assert result["summary"]["refit"]["chosen"] == result["summary"]["auto"]["chosen"]
    printed = capsys.readouterr().out
    assert "| auto (chose " in printed and "| auto, then refit" in printed and "| popularity |" in printed
