"""`attnrec train --ray`: the same training under Ray Train on the test session's Ray, with
the data read by Ray Data; a worker killed mid-run is replaced and the run resumes."""

import threading
import time

import psutil
import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.train import prepare, train
from attnrec.serving.cli import main
from attnrec.serving.cluster_train import ClusterConfig, read_tables, train_on_ray

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ModelConfig(n_items=1, max_len=16, d_model=16, n_layers=1, n_heads=2, dropout=0.1)
EPOCHS = TrainConfig(epochs=3, batch_size=64)


@pytest.fixture(scope="module")
def prepared(shop, ray_session):
    return prepare(read_tables({k: str(v) for k, v in shop.items()}))


@pytest.fixture(scope="module")
def local(prepared, tmp_path_factory):
    return train(prepared, tmp_path_factory.mktemp("local"), TINY, EPOCHS, progress=False)


def test_ray_data_reads_what_the_local_reader_does(prepared, shop):
    here = prepare(load_tables(**shop))
    assert prepared.items == here.items and prepared.users == here.users
    assert (prepared.split.full.items == here.split.full.items).all()


def test_one_worker_trains_what_local_training_does(prepared, local, tmp_path):
    one = train_on_ray(prepared, tmp_path / "one", TINY, EPOCHS, ClusterConfig(num_workers=1, cpus_per_worker=0.5,
                                                                              storage_path=str(tmp_path / "runs")))
    assert one.metadata["valid_NDCG@10"] == pytest.approx(local.metadata["valid_NDCG@10"], rel=0.02)
    assert one.metadata["epochs_run"] == 3 and load_checkpoint(tmp_path / "one").model_version == one.model_version


def test_two_workers_reach_what_one_does(prepared, local, tmp_path):
    two = train_on_ray(prepared, tmp_path / "two", TINY, EPOCHS, ClusterConfig(num_workers=2, cpus_per_worker=0.5,
                                                                              storage_path=str(tmp_path / "runs")))
    assert two.metadata["valid_NDCG@10"] >= 0.97 * local.metadata["valid_NDCG@10"]


def train_workers() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any("RayTrainWorker" in part for part in p.info["cmdline"] or []):
            found.append(p)
    return found


def test_a_worker_killed_mid_run_is_replaced_and_the_run_resumes(prepared, tmp_path):
    storage = tmp_path / "runs"
    config = TrainConfig(epochs=40, batch_size=64, patience=100)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["ckpt"] = train_on_ray(prepared, tmp_path / "out", TINY, config,
                                           ClusterConfig(num_workers=2, cpus_per_worker=0.5, max_failures=2,
                                                         storage_path=str(storage), name="killed"))
        except Exception as e:  # noqa: BLE001 (the assertion below shows it)
            outcome["error"] = e

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 300  # catches a hang only
    # Ray Train writes this once its controller has registered a checkpoint to resume from
    registered = storage / "killed" / "checkpoint_manager_snapshot.json"
    while not registered.exists() and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    victims = train_workers()
    assert victims and runner.is_alive(), "no training worker to kill: the run ended first"
    victims[0].kill()  # as kill -9 would
    runner.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    ckpt = outcome["ckpt"]
    assert ckpt.metadata["resumed_after"], "the run should have gone on from a checkpoint"
    assert ckpt.metadata["epochs_run"] == 40 and [r["epoch"] for r in ckpt.metadata["history"]] == list(range(1, 41))
    assert load_checkpoint(tmp_path / "out").model_version == ckpt.model_version


def test_cli_trains_on_ray(shop, tmp_path, capsys, ray_session):
    args = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"]), "--users", str(shop["users"])]
    assert main(["train", *args, "--out", str(tmp_path / "ckpt"), "--epochs", "1", "--d-model", "16",
                 "--max-len", "16", "--quiet", "--ray", "--num-workers", "1", "--cpus-per-worker", "0.5",
                 "--storage", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "trained in" in printed and "feature families by validation NDCG@10" in printed
    saved = load_checkpoint(tmp_path / "ckpt").metadata
    assert saved["epochs_run"] == 1 and len(saved["feature_selection"]["candidates"]) == 3
    assert saved["refit"]["epochs"] == 1 and "refit on the validation items too" in printed
    assert len(list((tmp_path / "runs").iterdir())) == 4  # each candidate and the refit a run of its own
