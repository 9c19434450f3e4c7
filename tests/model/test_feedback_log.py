"""The feedback log's files: durable appends, partitions, de-duplicating reads, compaction."""

import os

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from attnrec.model.feedback_log import (
    EVENT_SCHEMA,
    IMPRESSION_SCHEMA,
    FeedbackWriter,
    compact,
    read_events,
    read_impressions,
    read_log,
)

DAY = 86_400_000
T0 = 1_764_720_000_000  # 2025-12-03T00:00:00Z


def events(ids, t=T0, received=0, user="u1"):
    n = len(ids)
    return pa.table({"event_id": ids, "request_id": [""] * n, "user_id": [user] * n, "item_id": ["i1"] * n,
                     "event_type": ["click"] * n, "timestamp_ms": [t + i for i in range(n)], "value": [0.0] * n,
                     "received_ms": [received] * n}, schema=EVENT_SCHEMA)


def test_append_partitions_by_kind_and_day_and_reads_back(tmp_path):
    writer = FeedbackWriter(tmp_path)
    files = writer.append("events", pa.concat_tables([events(["a", "b"]), events(["c"], t=T0 + DAY)]))
    assert sorted(os.path.relpath(f, tmp_path).rsplit("/", 1)[0] for f in files) == [
        "kind=events/date=2025-12-03", "kind=events/date=2025-12-04"]
    assert sorted(read_events(tmp_path).column("event_id").to_pylist()) == ["a", "b", "c"]
    # any pyarrow reader opens it as a hive-partitioned dataset
    dataset = ds.dataset(tmp_path / "kind=events", format="parquet", partitioning="hive")
    assert sorted(dataset.to_table().column("date").to_pylist()) == ["2025-12-03", "2025-12-03", "2025-12-04"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary left behind


def test_a_retry_written_twice_is_read_once_the_first_kept(tmp_path):
    writer = FeedbackWriter(tmp_path)
    writer.append("events", events(["a", "b"], received=1))
    writer.append("events", events(["b", "c"], received=2, user="again"))
    assert read_log(tmp_path, "events").num_rows == 4
    got = read_events(tmp_path)
    assert sorted(got.column("event_id").to_pylist()) == ["a", "b", "c"]
    b = got.filter(pa.compute.equal(got.column("event_id"), "b"))
    assert b.column("user_id").to_pylist() == ["u1"]  # the first written


def test_a_half_written_file_is_never_read(tmp_path):
    FeedbackWriter(tmp_path).append("events", events(["a"]))
    day = next((tmp_path / "kind=events").iterdir())
    (day / ".part-x.parquet.tmp").write_bytes(b"PAR1 torn")  # a writer killed mid-file
    assert read_events(tmp_path).column("event_id").to_pylist() == ["a"]


def test_compaction_leaves_one_deduplicated_file_per_day(tmp_path):
    writer = FeedbackWriter(tmp_path)
    for ids in (["a"], ["b", "a"], ["c"]):
        writer.append("events", events(ids))
    before = sorted(read_events(tmp_path).column("event_id").to_pylist())
    assert compact(tmp_path) == {"2025-12-03": 3}
    day = next((tmp_path / "kind=events").iterdir())
    assert len(list(day.glob("*.parquet"))) == 1
    assert read_log(tmp_path, "events").num_rows == 3
    assert sorted(read_events(tmp_path).column("event_id").to_pylist()) == before
    assert compact(tmp_path) == {}  # nothing left to do


def test_impressions_and_an_empty_log(tmp_path):
    assert read_events(tmp_path).num_rows == 0 and read_impressions(tmp_path).num_rows == 0
    rows = pa.table({"request_id": ["r"] * 2, "user_id": ["u"] * 2, "model_version": ["m"] * 2, "item_id": ["x", "y"],
                     "rank": [0, 1], "score": [2.0, 1.0], "timestamp_ms": [T0] * 2}, schema=IMPRESSION_SCHEMA)
    FeedbackWriter(tmp_path).append("impressions", rows)
    assert read_impressions(tmp_path).column("item_id").to_pylist() == ["x", "y"]
    with pytest.raises(KeyError):
        FeedbackWriter(tmp_path).append("clicks", rows)


def test_the_cli_summarises_and_compacts(tmp_path, capsys):
    from attnrec.serving.cli import main

    writer = FeedbackWriter(tmp_path)
    writer.append("events", events(["a", "b"]))
    writer.append("events", events(["b"]))
    assert main(["feedback", "--feedback-dir", str(tmp_path), "--compact"]) == 0
    out = capsys.readouterr().out
    assert "events 2025-12-03: 2 files -> 1" in out and "events: 2 (click 2); 0 rows written twice" in out
