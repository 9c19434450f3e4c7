import numpy as np
import pyarrow as pa

from attnrec.model.features import MISSING, OTHER, EncoderConfig, fit_encoders, kind_of


def test_kinds_come_from_the_arrow_schema():
    assert kind_of(pa.string()) == kind_of(pa.large_string()) == "categorical"
    assert kind_of(pa.dictionary(pa.int32(), pa.string())) == "categorical"
    assert kind_of(pa.list_(pa.string())) == "multi"
    assert kind_of(pa.int16()) == kind_of(pa.float32()) == "numeric"
    assert kind_of(pa.timestamp("s")) is None


def table():
    n = 200
    return pa.table({
        "item_id": [str(i) for i in range(n)],
        "title": [f"title {i}" for i in range(n)],  # near-unique text
        "brand": pa.array(["a", "b", None, "c"] * (n // 4)).dictionary_encode(),
        "genres": [["x", "y"], None, ["y"], []] * (n // 4),
        "price": [float(i) if i % 10 else None for i in range(n)],
    })


def test_near_unique_text_is_skipped_unless_named():
    names = [e.name for e in fit_encoders(table(), "item_id")]
    assert names == ["brand", "genres", "price"]
    forced = fit_encoders(table(), "item_id", ["title"], EncoderConfig(min_count=1, max_categories=10))
    assert forced[0].cardinality == 12  # capped: 10 values + missing + other


def test_codes_missing_other_and_buckets():
    brand, genres, price = fit_encoders(table(), "item_id")
    codes = brand.encode(pa.array(["a", None, "zzz"]))
    assert codes[1] == MISSING and codes[2] == OTHER and codes[0] >= 2
    g = genres.encode(pa.array([["x", "y"], None, [], ["y", "unseen"]], pa.list_(pa.string())))
    assert g.shape == (4, 2)
    assert (g[1] == 0).all() and (g[2] == 0).all() and g[3, 1] == OTHER
    p = price.encode(pa.array([None, -1.0, 1e9]))
    assert p[0] == MISSING and p[1] == 1 and p[2] == price.cardinality - 1
    assert price.cardinality <= EncoderConfig().n_buckets + 2
    assert np.all(np.diff(price.encode(pa.array(np.linspace(0, 200, 50)))) >= 0)  # monotone buckets
