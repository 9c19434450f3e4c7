"""The feedback log: what users did (events) and what they were shown (impressions), as one
hive-partitioned Parquet dataset that any pyarrow reader can open.

    DIR/kind=events/date=2026-12-03/part-<writer>-<n>.parquet
    DIR/kind=impressions/date=2026-12-03/part-<writer>-<n>.parquet

`date` is the UTC day of the event's (or impression's) timestamp. DIR is a local directory or
any pyarrow filesystem URI (s3://bucket/prefix, gs://...).

Durability: a file is written whole under a hidden name, flushed to disk (fsync), then renamed
into place (and the directory synced), so a reader never sees part of one and a crash never
leaves one half-written; on an object store the upload itself becomes visible whole or not at
all. A writer acknowledges events only after that. A retry that was already written (its
acknowledgement lost) is written again: readers keep each event_id once (`read_events`), and
`compact` rewrites a day's files as one, de-duplicated.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase", "rating", "not_interested")
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()),  # the client's, unique per event: retries carry the same one
    ("request_id", pa.string()),  # the Recommend answer the event responds to ("" = organic)
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("event_type", pa.string()),  # one of EVENT_TYPES
    ("timestamp_ms", pa.int64()),  # when it happened, milliseconds since the epoch (UTC)
    ("value", pa.float64()),  # the rating for "rating", else the client's own weight (0 = none)
    ("received_ms", pa.int64()),  # when the service logged it
])
IMPRESSION_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("user_id", pa.string()),
    ("model_version", pa.string()),
    ("item_id", pa.string()),
    ("rank", pa.int32()),  # 0 = first
    ("score", pa.float32()),
    ("timestamp_ms", pa.int64()),
])
KINDS = {"events": EVENT_SCHEMA, "impressions": IMPRESSION_SCHEMA}
DAY_MS = 86_400_000


def _filesystem(root: str | Path) -> tuple[pafs.FileSystem, str, bool]:
    """(filesystem, path within it, whether it is the local disk)."""
    text = str(root)
    if "://" in text and not text.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path, False
    path = str(Path(text.removeprefix("file://")).resolve())
    return pafs.LocalFileSystem(), path, True


def _days(timestamps_ms: np.ndarray) -> np.ndarray:
    """UTC date (YYYY-MM-DD) of each timestamp."""
    return np.datetime_as_string(np.asarray(timestamps_ms, dtype="int64").astype("datetime64[ms]"), unit="D")


class FeedbackWriter:
    """Appends tables of one kind to the log, one file per day present in each table."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        self.fs, self.base, self.local = _filesystem(root)
        self.writer = uuid.uuid4().hex[:12]  # several writers (replicas) never pick the same name
        self.written = 0

    def append(self, kind: str, table: pa.Table) -> list[str]:
        """Write `table` (KINDS[kind]'s schema) durably; returns the files written. Returns only
        once every row is on disk (or in the object store)."""
        table = table.cast(KINDS[kind])
        if table.num_rows == 0:
            return []
        days = _days(table.column("timestamp_ms").to_numpy())
        files = []
        for day in np.unique(days):
            part = table.filter(pa.array(days == day))
            self.written += 1
            directory = f"{self.base}/kind={kind}/date={day}"
            name = f"part-{int(time.time() * 1000)}-{self.writer}-{self.written}.parquet"
            files.append(self._write(part, directory, name))
        return files

    def _write(self, table: pa.Table, directory: str, name: str) -> str:
        final = f"{directory}/{name}"
        if not self.local:  # an object store shows an upload whole, once it completes
            self.fs.create_dir(directory, recursive=True)
            pq.write_table(table, final, filesystem=self.fs)
            return final
        os.makedirs(directory, exist_ok=True)
        hidden = f"{directory}/.{name}.tmp"  # readers skip names that start with "."
        with open(hidden, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(hidden, final)
        _sync_directory(directory)
        return final


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dataset(root: str | Path, kind: str) -> ds.Dataset | None:
    fs, base, _ = _filesystem(root)
    directory = f"{base}/kind={kind}"
    if fs.get_file_info(directory).type != pafs.FileType.Directory:
        return None
    return ds.dataset(directory, schema=KINDS[kind], format="parquet", filesystem=fs,
                      partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
                      exclude_invalid_files=False)


def _day_of(path: str) -> str:
    """The date partition a file of the log lies in."""
    return path.rsplit("date=", 1)[1].split("/", 1)[0]


def read_log(root: str | Path, kind: str) -> pa.Table:
    """Every row of one kind as written (retries included), oldest file first; empty when none."""
    dataset = _dataset(root, kind)
    if dataset is None:
        return KINDS[kind].empty_table()
    return dataset.to_table(columns=KINDS[kind].names)


def first_of_each(table: pa.Table, key: str = "event_id") -> pa.Table:
    """Rows with the first occurrence of each `key` (by received_ms, then position)."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[("received_ms", "ascending")]) if "received_ms" in \
        table.column_names else pa.array(np.arange(table.num_rows))
    table = table.take(order)
    _, first = np.unique(table.column(key).to_numpy(zero_copy_only=False), return_index=True)
    return table.take(pa.array(np.sort(first)))


def read_events(root: str | Path) -> pa.Table:
    """Every logged event once (the first of each event_id), in time order."""
    events = first_of_each(read_log(root, "events"))
    return events.take(pc.sort_indices(events, sort_keys=[("timestamp_ms", "ascending"), ("received_ms", "ascending")]))


def read_impressions(root: str | Path) -> pa.Table:
    return read_log(root, "impressions")


def compact(root: str | Path, kind: str = "events") -> dict[str, int]:
    """Rewrite each day of one kind that has more than one file as a single file (events:
    de-duplicated by event_id). The new file is durable before the old ones go, so a crash
    in between leaves rows twice, never missing (readers de-duplicate events). Returns
    {day: files replaced}. Meant for days no longer written to (a writer's new file in a day
    being compacted is kept as it is)."""
    dataset = _dataset(root, kind)
    if dataset is None:
        return {}
    by_day: dict[str, list[str]] = {}
    for path in dataset.files:
        day = _day_of(path)
        by_day.setdefault(day, []).append(path)
    writer = FeedbackWriter(root)
    done = {}
    for day, files in sorted(by_day.items()):
        if len(files) < 2:
            continue
        table = pa.concat_tables([pq.read_table(f, filesystem=writer.fs, schema=KINDS[kind]) for f in files])
        if kind == "events":
            table = first_of_each(table)
        writer._write(table, f"{writer.base}/kind={kind}/date={day}", f"part-compacted-{writer.writer}.parquet")
        for f in files:
            writer.fs.delete_file(f)
        done[day] = len(files)
    return done


def summary(root: str | Path) -> dict:
    """What the log holds: events by type (each event_id once), rows written twice by retries,
    impressions and the answers they came from, days and files per kind."""
    out: dict = {}
    for kind in KINDS:
        dataset = _dataset(root, kind)
        files = [] if dataset is None else dataset.files
        days = sorted({_day_of(f) for f in files})
        out[kind] = {"files": len(files), "days": days}
    written = read_log(root, "events")
    events = first_of_each(written)
    types = events.column("event_type").value_counts().to_pylist() if events.num_rows else []
    out["events"].update(rows=events.num_rows, retried_rows=written.num_rows - events.num_rows,
                         by_type={t["values"]: t["counts"] for t in sorted(types, key=lambda t: t["values"])})
    impressions = read_impressions(root)
    out["impressions"].update(rows=impressions.num_rows,
                              answers=len(pc.unique(impressions.column("request_id"))) if impressions.num_rows else 0)
    return out
