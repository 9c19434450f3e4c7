import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.data import DataError, check_interactions
from attnrec.model.feedback_log import FeedbackWriter
from attnrec.model.retrain import parse_event_weights, time_unit, with_feedback
from attnrec.model.simulate import PlantedPreference, liked_share, model_lists, run_loop
from attnrec.serving.cli import main

NOW_MS = 1_764_000_000_000  # 2025-11-24


def events(rows: list[tuple[str, str, str, int]]) -> pa.Table:
    """(user, item, type, timestamp_ms) rows as a log's events."""
    return pa.table({"event_id": [f"e{i}" for i in range(len(rows))], "request_id": [""] * len(rows),
                     "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                     "event_type": [r[2] for r in rows], "timestamp_ms": pa.array([r[3] for r in rows], pa.int64()),
                     "value": [0.0] * len(rows), "received_ms": pa.array([r[3] for r in rows], pa.int64())})


def test_positive_events_become_weighted_interactions_on_the_base_clock():
    base = check_interactions(pa.table({"user_id": ["u1", "u1"], "item_id": ["a", "b"],
                                        "timestamp": [NOW_MS // 1000 - 10, NOW_MS // 1000 - 5]}))
    merged = with_feedback(base, events([("u1", "c", "click", NOW_MS), ("u1", "d", "impression", NOW_MS),
                                         ("u2", "e", "purchase", NOW_MS + 2000)]),
                           {"click": 1.0, "purchase": 3.0})
    t = merged.interactions.to_pydict()
    assert t["item_id"] == ["a", "b", "c", "e"]  # the impression is no positive
    assert t["weight"] == [1.0, 1.0, 1.0, 3.0]
    assert t["timestamp"][2:] == [NOW_MS // 1000, NOW_MS // 1000 + 2]  # seconds, like the base
    assert merged.events_by_type == {"click": 1, "purchase": 1} and merged.new_users == 1 and merged.new_items == 2


def test_feedback_follows_base_data_whose_timestamps_are_not_dates():
    base = check_interactions(pa.table({"user_id": ["u1"] * 3, "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3]}))
    assert time_unit(base.column("timestamp").to_numpy()) is None
    merged = with_feedback(base, events([("u1", "y", "click", NOW_MS + 5), ("u1", "x", "click", NOW_MS)]),
                           {"click": 1.0})
    rows = merged.interactions.to_pydict()
    assert dict(zip(rows["item_id"], rows["timestamp"])) == {"a": 1, "b": 2, "c": 3, "x": 4, "y": 5}


@pytest.mark.parametrize("text, error", [("click=0", "more than 0"), ("impression=1", "unknown event type"),
                                         ("buy=2", "unknown event type"), ("click=x", "TYPE=NUMBER"), ("", "no event")])
def test_event_weights_are_checked(text, error):
    with pytest.raises(DataError, match=error):
        parse_event_weights(text)
    assert parse_event_weights("purchase=3,click=1") == {"purchase": 3.0, "click": 1.0}


def test_interaction_weights_must_be_positive():
    table = pa.table({"user_id": ["u"] * 2, "item_id": ["a", "b"], "timestamp": [1, 2], "weight": [1.0, 0.0]})
    with pytest.raises(DataError, match="'weight' has 1 null, zero"):
        check_interactions(table)


def test_retraining_on_feedback_learns_a_preference_the_first_model_never_saw(shop, checkpoint, tmp_path, capsys):
    """Users who now like one category click it when shown and find it on their own; the model
    retrained on their feedback puts that category in their top 10 far more often than the
    model they were shown."""
    items = pq.read_table(shop["items"])
    ids, category = (np.asarray(items.column(c).to_pylist()) for c in ("item_id", "category"))
    pref = PlantedPreference(frozenset(ids[category == "cat7"]))
    seen = pq.read_table(shop["interactions"]).sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    histories: dict[str, list[str]] = {}
    for user, item in zip(seen.column("user_id").to_pylist(), seen.column("item_id").to_pylist()):
        histories.setdefault(user, []).append(item)
    users = list(histories)
    model_a, log, request_ids = load_checkpoint(checkpoint), FeedbackWriter(tmp_path / "log"), itertools.count()

    def recommend(us, hs):
        return model_lists(model_a, us, hs), [f"r{next(request_ids)}" for _ in us]

    def send(table: pa.Table) -> None:
        log.append("events", table.append_column("received_ms", table.column("timestamp_ms")))

    final, _ = run_loop(recommend, send, pref, users, list(histories.values()), rounds=3, start_ms=NOW_MS)
    out = tmp_path / "model_b"
    assert main(["train", "--interactions", str(shop["interactions"]), "--items", str(shop["items"]),
                 "--users", str(shop["users"]), "--out", str(out), "--epochs", "2", "--d-model", "16",
                 "--max-len", "20", "--features", "all", "--quiet", "--feedback", str(tmp_path / "log"),
                 "--event-weights", "click=1,purchase=3"]) == 0
    assert "interactions from" in capsys.readouterr().out
    model_b = load_checkpoint(out)
    share_a, share_b = (liked_share(model_lists(m, users, final), pref.liked) for m in (model_a, model_b))
    assert share_b > 2 * share_a
    assert model_b.metadata["feedback"]["event_weights"] == {"click": 1.0, "purchase": 3.0}
