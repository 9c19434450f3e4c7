"""Reading and checking the Parquet tables a user brings.

Three tables, all Parquet:
- interactions: `user_id, item_id, timestamp` (+ optional `weight`: how much the
  interaction counts as a training target, 1 when absent; other columns are ignored);
  ids are strings or integers, the timestamp any integer, float or Arrow timestamp type.
- items (optional): `item_id` + feature columns.
- users (optional): `user_id` + feature columns.

Ids are kept as the caller's external ids, always as strings from here on, so that a
checkpoint's vocabulary answers the same ids a gRPC client sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class DataError(ValueError):
    """A table the user gave cannot be used; the message names the file, column and problem."""


@dataclass(frozen=True)
class Tables:
    """The three tables after checking, ids cast to strings."""

    interactions: pa.Table
    items: pa.Table | None = None
    users: pa.Table | None = None


def _is_id_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and _is_id_type(t.value_type)
    )


def _is_time_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)


def _read(path: str | Path, what: str) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} file does not exist")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: cannot read {what} as Parquet: {e}") from e


def _check_id_column(table: pa.Table, column: str, path: str | Path) -> pa.Table:
    if column not in table.column_names:
        raise DataError(f"{path}: missing column '{column}' (columns are {table.column_names})")
    col = table.column(column)
    if not _is_id_type(col.type):
        raise DataError(f"{path}: column '{column}' has type {col.type}; ids must be strings or integers")
    if col.null_count:
        raise DataError(f"{path}: column '{column}' has {col.null_count} null ids")
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return table.set_column(table.column_names.index(column), column, col.cast(pa.string()))


def _check_not_empty(table: pa.Table, path: str | Path) -> None:
    if table.num_rows == 0:
        raise DataError(f"{path}: table is empty")


def check_interactions(table: pa.Table, path: str | Path = "<interactions>") -> pa.Table:
    """Validate an interactions table; returns it with ids as strings and timestamps as int64."""
    _check_not_empty(table, path)
    for column in ("user_id", "item_id"):
        table = _check_id_column(table, column, path)
    if "timestamp" not in table.column_names:
        raise DataError(f"{path}: missing column 'timestamp' (columns are {table.column_names})")
    ts = table.column("timestamp")
    if not _is_time_type(ts.type):
        raise DataError(f"{path}: column 'timestamp' has type {ts.type}; expected integer, float or timestamp")
    if ts.null_count:
        raise DataError(f"{path}: column 'timestamp' has {ts.null_count} nulls")
    if pa.types.is_timestamp(ts.type) or pa.types.is_date(ts.type):
        ts = ts.cast(pa.timestamp("us")).cast(pa.int64())
    elif pa.types.is_floating(ts.type):
        ts = pc.round(ts).cast(pa.int64())
    else:
        ts = ts.cast(pa.int64())
    table = table.set_column(table.column_names.index("timestamp"), "timestamp", ts)
    if "weight" in table.column_names:
        table = _check_weight(table, path)
    return table


def _check_weight(table: pa.Table, path: str | Path) -> pa.Table:
    weight = table.column("weight")
    if not (pa.types.is_integer(weight.type) or pa.types.is_floating(weight.type)):
        raise DataError(f"{path}: column 'weight' has type {weight.type}; expected a number")
    weight = weight.cast(pa.float32())
    bad = weight.null_count or pc.sum(pc.invert(pc.greater(weight, 0.0))).as_py()
    if bad:
        raise DataError(f"{path}: column 'weight' has {bad} null, zero, negative or NaN values; "
                        "weights must be > 0 (leave a row out instead of weighting it 0)")
    return table.set_column(table.column_names.index("weight"), "weight", weight)


def check_features(table: pa.Table, id_column: str, path: str | Path = "<features>") -> pa.Table:
    """Validate an items or users table: its id column present, ids unique."""
    _check_not_empty(table, path)
    table = _check_id_column(table, id_column, path)
    n_unique = len(pc.unique(table.column(id_column)))
    if n_unique != table.num_rows:
        raise DataError(f"{path}: column '{id_column}' has {table.num_rows - n_unique} duplicate ids")
    return table


def load_tables(
    interactions: str | Path, items: str | Path | None = None, users: str | Path | None = None,
    read: Callable[[str | Path, str], pa.Table] = _read,
) -> Tables:
    """Read and check the Parquet files; every problem raises DataError naming the file.
    `read(path, what)` reads one file (local files by default; Ray Data on a cluster)."""
    return Tables(
        interactions=check_interactions(read(interactions, "interactions"), interactions),
        items=None if items is None else check_features(read(items, "items"), "item_id", items),
        users=None if users is None else check_features(read(users, "users"), "user_id", users),
    )
