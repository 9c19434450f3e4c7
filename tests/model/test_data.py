import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnrec.model.data import DataError, load_tables


def write(tmp_path, name, table):
    path = tmp_path / name
    pq.write_table(table, path)
    return path


GOOD = {"user_id": ["a", "a", "b"], "item_id": [1, 2, 1], "timestamp": [3, 4, 5]}


def test_ids_become_strings_and_timestamps_int64(tmp_path):
    t = load_tables(write(tmp_path, "i.parquet", pa.table(GOOD))).interactions
    assert t.column("item_id").to_pylist() == ["1", "2", "1"]
    assert t.column("timestamp").type == pa.int64()


@pytest.mark.parametrize(
    "table, words",
    [
        (pa.table({k: v for k, v in GOOD.items() if k != "timestamp"}), ["missing column 'timestamp'"]),
        (pa.table({**GOOD, "item_id": [1.5, 2.0, 3.0]}), ["'item_id'", "double"]),
        (pa.table({**GOOD, "user_id": ["a", None, "b"]}), ["'user_id'", "1 null"]),
        (pa.table({**GOOD, "timestamp": ["x", "y", "z"]}), ["'timestamp'", "string"]),
        (pa.table(GOOD).slice(0, 0), ["empty"]),
    ],
)
def test_bad_interactions_name_file_column_and_problem(tmp_path, table, words):
    path = write(tmp_path, "bad.parquet", table)
    with pytest.raises(DataError) as e:
        load_tables(path)
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_missing_file_and_non_parquet(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tables(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(DataError, match="cannot read interactions"):
        load_tables(junk)


def test_duplicate_item_rows_rejected(tmp_path):
    inter = write(tmp_path, "i.parquet", pa.table(GOOD))
    items = write(tmp_path, "items.parquet", pa.table({"item_id": [1, 1], "category": ["x", "y"]}))
    with pytest.raises(DataError, match="1 duplicate ids"):
        load_tables(inter, items=items)
