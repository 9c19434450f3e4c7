"""Forgetting a user (`attnrec forget`): every row of theirs leaves an interactions file and a
directory of Parquet files (a hive-partitioned dataset such as logged feedback), so the next
model trained on them never sees the user.

Only files that hold the user are rewritten. A rewrite is all or nothing across files:

1. each affected file is rewritten without the user's rows into a temporary sibling, synced;
2. a journal listing (temporary, target) pairs is written and synced;
3. each temporary file replaces its target (`os.replace`, atomic per file); the journal goes.

A crash in 1 leaves the data as it was (the temporaries are removed by the next run); a crash
in 3 leaves a journal that the next run completes first. Either way the rerun ends with the
user gone and every other row kept. An audit line (a SHA-256 of the user id, the time, the
rows removed per file; never the rows) is appended to `_forget-audit.jsonl` beside the data
(pyarrow's dataset readers skip files starting with "_").
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TMP_SUFFIX = ".forget-tmp"
JOURNAL = "_forget-journal.json"
AUDIT = "_forget-audit.jsonl"


@dataclass
class Forgotten:
    """What one `forget` removed: rows per file (files without the user are not listed)."""

    user_hash: str
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def _sync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _without(table: pa.Table, user_id: str) -> pa.Table:
    column = table.column("user_id")
    try:
        user = pa.scalar(user_id).cast(column.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. "u7" against integer ids: not there
        return table
    return table.filter(pc.invert(pc.fill_null(pc.equal(column, user), False)))


def _parquet_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in
                                                                  p.relative_to(root).parts))


def finish_pending(root: Path) -> None:
    """Complete a rewrite that a crash interrupted (journal present), else drop stray temporaries."""
    home = root if root.is_dir() else root.parent
    journal = home / JOURNAL
    if journal.exists():
        for tmp, target in json.loads(journal.read_text()):
            if Path(tmp).exists():
                os.replace(tmp, target)
        journal.unlink()
    for stray in home.rglob(f"*{TMP_SUFFIX}"):
        stray.unlink()


def forget(root: str | Path, user_id: str) -> Forgotten:
    """Remove every row whose user_id is `user_id` from a Parquet file or every Parquet file under a
    directory; returns what was removed (and appends the audit line)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    finish_pending(root)
    home = root if root.is_dir() else root.parent
    done = Forgotten(user_hash(user_id))
    pairs: list[tuple[str, str]] = []
    for path in _parquet_files(root):
        if "user_id" not in pq.read_schema(path).names:
            continue
        users = pq.read_table(path, columns=["user_id"]).column("user_id")
        kept = _without(pa.table({"user_id": users}), user_id).num_rows
        if kept == len(users):
            continue
        table = pq.read_table(path)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        pq.write_table(_without(table, user_id), tmp)
        _sync(tmp)
        pairs.append((str(tmp), str(path)))
        done.removed[str(path)] = len(users) - kept
    if pairs:
        journal = home / JOURNAL
        journal.write_text(json.dumps(pairs))
        _sync(journal)
        for tmp, target in pairs:
            os.replace(tmp, target)
        journal.unlink()
    with open(home / AUDIT, "a") as audit:
        audit.write(json.dumps({"user_sha256": done.user_hash, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
                                "rows_removed": {str(Path(p).relative_to(home)): n
                                                 for p, n in done.removed.items()}}) + "\n")
    return done
