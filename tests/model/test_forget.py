"""`attnrec forget`: a user's rows leave a file and a partitioned dataset, all or nothing
across a crash, with an audit line that does not hold the id."""

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from attnrec.model import forget as forgetting
from attnrec.model.forget import AUDIT, JOURNAL, forget, user_hash
from attnrec.serving.cli import main


def logged(root):
    """A hive-partitioned log (date, kind) of two days: u1 in three of four files."""
    for date in ("2026-12-01", "2026-12-02"):
        for kind in ("impression", "click"):
            users = ["u1", "u2", "u3"] if (date, kind) != ("2026-12-02", "click") else ["u2"]
            part = root / f"date={date}" / f"kind={kind}"
            part.mkdir(parents=True)
            pq.write_table(pa.table({"user_id": users, "item_id": [f"{kind}-{u}" for u in users]}), part / "0.parquet")
    return root


def rows(root):
    return ds.dataset(root, format="parquet", partitioning="hive").to_table().column("user_id").to_pylist()


def test_a_user_leaves_a_partitioned_log_and_only_their_files_are_rewritten(tmp_path):
    root = logged(tmp_path / "log")
    untouched = root / "date=2026-12-02" / "kind=click" / "0.parquet"
    before = untouched.read_bytes()
    done = forget(root, "u1")
    assert done.total == 3 and len(done.removed) == 3 and str(untouched) not in done.removed
    assert "u1" not in rows(root) and sorted(rows(root)) == ["u2"] * 4 + ["u3"] * 3
    assert untouched.read_bytes() == before
    audit = [json.loads(line) for line in (root / AUDIT).read_text().splitlines()]
    assert audit[-1]["user_sha256"] == user_hash("u1") and "u1" not in json.dumps(audit)
    assert sum(audit[-1]["rows_removed"].values()) == 3
    assert forget(root, "u1").total == 0  # a rerun finds nothing more


def test_an_interactions_file_loses_the_user_and_keeps_its_types(tmp_path):
    path = tmp_path / "interactions.parquet"
    pq.write_table(pa.table({"user_id": pa.array([7, 8, 7], pa.int64()), "item_id": ["a", "b", "c"],
                             "timestamp": [1, 2, 3]}), path)
    assert forget(path, "7").total == 2
    table = pq.read_table(path)
    assert table.column("user_id").to_pylist() == [8] and table.schema.field("user_id").type == pa.int64()
    assert forget(path, "someone-else").total == 0


def test_a_crash_while_writing_leaves_the_data_as_it_was_and_a_rerun_completes(tmp_path, monkeypatch):
    root = logged(tmp_path / "log")
    real, written = pq.write_table, []

    def crash_on_the_second(table, where, *args, **kwargs):
        if written:
            raise OSError("disk gone")
        written.append(where)
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(forgetting.pq, "write_table", crash_on_the_second)
    with pytest.raises(OSError):
        forget(root, "u1")
    monkeypatch.setattr(forgetting.pq, "write_table", real)
    assert rows(root).count("u1") == 3  # nothing deleted yet
    assert forget(root, "u1").total == 3 and "u1" not in rows(root)
    assert not list(root.rglob("*.forget-tmp"))


def test_a_crash_while_replacing_is_completed_by_the_next_run(tmp_path, monkeypatch):
    root = logged(tmp_path / "log")
    real, replaced = forgetting.os.replace, []

    def crash_after_the_first(tmp, target):
        if replaced:
            raise OSError("power cut")
        replaced.append(target)
        return real(tmp, target)

    monkeypatch.setattr(forgetting.os, "replace", crash_after_the_first)
    with pytest.raises(OSError):
        forget(root, "u1")
    monkeypatch.setattr(forgetting.os, "replace", real)
    assert (root / JOURNAL).exists()
    forget(root, "u1")  # finishes the journal first, then finds nothing more
    assert "u1" not in rows(root) and sorted(rows(root)) == ["u2"] * 4 + ["u3"] * 3
    assert not (root / JOURNAL).exists() and not list(root.rglob("*.forget-tmp"))


def test_cli_forget(tmp_path, capsys):
    root = logged(tmp_path / "log")
    assert main(["forget", "--user-id", "u3", "--feedback-dir", str(root)]) == 0
    assert "3 rows of the user removed" in capsys.readouterr().out and "u3" not in rows(root)
    assert main(["forget", "--user-id", "u3"]) == 2
    assert main(["forget", "--user-id", "u3", "--interactions", str(tmp_path / "none.parquet")]) == 2
