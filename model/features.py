"""Side features: their kind comes from the Arrow schema, each becomes integer codes.

| Arrow type                          | kind          | codes                                     |
|-------------------------------------|---------------|-------------------------------------------|
| string, large_string, dictionary, bool | categorical | 0 missing, 1 other (rare/unseen), 2.. values |
| list<string> (e.g. genres)          | multi         | a row of categorical codes, 0 pads the row  |
| integer, float                      | numeric       | 0 missing, 1..n quantile buckets           |

Numbers are bucketised into (at most) `n_buckets` quantile buckets rather than
normalised: price or year then behave like any other categorical embedding, outliers
cannot blow up an input, and a missing value has its own bucket.

Near-unique text columns (titles, URLs: more than half the rows distinct) are skipped
by default, with a log line saying so: they would become one embedding row per item and
learn nothing the item id does not. Naming such a column explicitly keeps it, capped at
`max_categories` most frequent values, the rest coded as "other".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from attnrec.model.data import DataError

log = logging.getLogger(__name__)

MISSING = 0
OTHER = 1  # categorical code of a value outside the vocabulary
FIRST_VALUE = 2


@dataclass(frozen=True)
class FeatureEncoder:
    """How one column turns into integer codes; saved in the checkpoint."""

    name: str
    kind: str  # "categorical" | "multi" | "numeric"
    values: tuple[str, ...] = ()  # categorical/multi vocabulary, code = FIRST_VALUE + index
    edges: tuple[float, ...] = ()  # numeric bucket edges, code = 1 + bucket
    max_values: int = 1  # multi: values kept per row

    @property
    def cardinality(self) -> int:
        """Number of distinct codes, missing included (the embedding table's size)."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.values) + FIRST_VALUE

    def describe(self, code: int) -> str:
        """A person-readable value for a code, e.g. 'Comedy' or '1990–1995'."""
        if code == MISSING:
            return "missing"
        if self.kind == "numeric":
            lo = self.edges[code - 2] if code >= 2 else None
            hi = self.edges[code - 1] if code - 1 < len(self.edges) else None
            if lo is None:
                return f"< {hi:g}" if hi is not None else "any"
            return f"≥ {lo:g}" if hi is None else f"{lo:g}–{hi:g}"
        if code == OTHER:
            return "other"
        return self.values[code - FIRST_VALUE]

    def encode(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Codes for a column: shape (rows,), or (rows, max_values) for a multi feature."""
        if self.kind == "numeric":
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            codes = np.searchsorted(np.asarray(self.edges), values, side="right") + 1
            return np.where(np.isnan(values), MISSING, codes).astype(np.int64)
        if self.kind == "categorical":
            return _codes(_as_strings(column), self.values)
        return self._encode_multi(column)

    def _encode_multi(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        flat = _codes(_as_strings(pc.list_flatten(column)), self.values)
        out = np.zeros((len(column), self.max_values), dtype=np.int64)
        rows = np.repeat(np.arange(len(column)), lengths)
        slots = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = slots < self.max_values
        out[rows[keep], slots[keep]] = flat[keep]
        return out


def _as_strings(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return array.cast(pa.string())


def _codes(strings: pa.ChunkedArray | pa.Array, values: Sequence[str]) -> np.ndarray:
    index = pc.index_in(strings, value_set=pa.array(list(values), pa.string()))
    codes = pc.fill_null(pc.add(index, FIRST_VALUE), OTHER).to_numpy(zero_copy_only=False)
    return np.where(pc.is_null(strings).to_numpy(zero_copy_only=False), MISSING, codes).astype(np.int64)


def kind_of(t: pa.DataType) -> str | None:
    """The feature kind an Arrow type maps to, or None when it cannot be a feature."""
    if pa.types.is_dictionary(t):
        return kind_of(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t):
        return "categorical"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and kind_of(t.value_type) == "categorical":
        return "multi"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "numeric"
    return None


@dataclass(frozen=True)
class EncoderConfig:
    """How feature columns are chosen and coded."""

    n_buckets: int = 10  # quantile buckets per numeric column; 10 keeps ~equal mass per bucket
    max_categories: int = 10_000  # most frequent values kept per column; bounds embedding size
    min_count: int = 2  # values seen fewer times are "other": one-off values cannot be learned
    max_values: int = 16  # values kept per row of a multi column (genres rarely exceed 10)
    near_unique: float = 0.5  # a text column with more distinct values than this share of rows is skipped


def fit_encoders(
    table: pa.Table,
    id_column: str,
    columns: Sequence[str] | None = None,
    config: EncoderConfig = EncoderConfig(),
    path: str = "<features>",
) -> tuple[FeatureEncoder, ...]:
    """Choose and fit one encoder per usable feature column of an items or users table."""
    explicit = columns is not None
    names = list(columns) if explicit else [c for c in table.column_names if c != id_column]
    encoders = []
    for name in names:
        if name not in table.column_names:
            raise DataError(f"{path}: feature column '{name}' not found (columns are {table.column_names})")
        column = table.column(name)
        kind = kind_of(column.type)
        if kind is None:
            if explicit:
                raise DataError(f"{path}: column '{name}' has type {column.type}, which cannot be a feature")
            log.info("%s: column '%s' (%s) skipped: not a feature type", path, name, column.type)
            continue
        if kind == "numeric":
            encoders.append(_fit_numeric(name, column, config))
            continue
        flat = pc.list_flatten(column) if kind == "multi" else column
        counts = pc.value_counts(pc.drop_null(_as_strings(flat)))
        n_distinct = len(counts)
        if kind == "categorical" and n_distinct > max(50, config.near_unique * table.num_rows):
            if not explicit:
                log.warning(
                    "%s: column '%s' skipped: %d distinct values in %d rows looks like free text or an id; "
                    "name it explicitly to use it anyway", path, name, n_distinct, table.num_rows,
                )
                continue
        values = counts.field("values").to_pylist()
        freq = counts.field("counts").to_numpy()
        order = np.argsort(-freq, kind="stable")
        kept = [values[i] for i in order if freq[i] >= config.min_count][: config.max_categories]
        if not kept:
            log.warning("%s: column '%s' skipped: no value occurs %d times", path, name, config.min_count)
            continue
        max_values = 1
        if kind == "multi":
            lengths = pc.drop_null(pc.list_value_length(column))
            longest = int(pc.max(lengths).as_py() or 1) if len(lengths) else 1
            max_values = max(1, min(config.max_values, longest))
        encoders.append(FeatureEncoder(name, kind, values=tuple(sorted(kept)), max_values=max_values))
    return tuple(encoders)


def _fit_numeric(name: str, column: pa.ChunkedArray, config: EncoderConfig) -> FeatureEncoder:
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return FeatureEncoder(name, "numeric", edges=())
    qs = np.quantile(values, np.linspace(0, 1, config.n_buckets + 1)[1:-1])
    return FeatureEncoder(name, "numeric", edges=tuple(float(q) for q in np.unique(qs)))


def encode_table(
    table: pa.Table | None, id_column: str, vocab: Sequence[str], encoders: Sequence[FeatureEncoder]
) -> dict[str, np.ndarray]:
    """Codes for every vocabulary entry (row i = vocab[i]); ids absent from the table get MISSING."""
    out = {}
    if table is None or not encoders:
        return {e.name: np.zeros((len(vocab), e.max_values) if e.kind == "multi" else len(vocab), np.int64)
                for e in encoders}
    rows = pc.index_in(pa.array(list(vocab), pa.string()), value_set=table.column(id_column).combine_chunks())
    present = pc.is_valid(rows).to_numpy(zero_copy_only=False)
    taken = table.take(pc.fill_null(rows, 0))
    for e in encoders:
        codes = e.encode(taken.column(e.name))
        codes[~present] = MISSING
        out[e.name] = codes
    return out


def encoders_to_json(encoders: Sequence[FeatureEncoder]) -> list[dict]:
    return [asdict(e) for e in encoders]


def encoders_from_json(items: list[dict]) -> tuple[FeatureEncoder, ...]:
    return tuple(
        FeatureEncoder(d["name"], d["kind"], tuple(d["values"]), tuple(d["edges"]), d["max_values"]) for d in items
    )
