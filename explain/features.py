"""Attribution per feature value ("genres=Comedy", "brand=acme", "age=34–41"): the
article's promise that a person sees which category or brand drove a recommendation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnrec.model.features import FeatureEncoder


def feature_attributions(
    part_attribution: Sequence[np.ndarray],
    item_labels: Sequence[str],
    item_codes: Sequence[np.ndarray],
    user_codes: Sequence[np.ndarray] | None,
    item_encoders: Sequence[FeatureEncoder],
    user_encoders: Sequence[FeatureEncoder],
) -> list[tuple[str, str, float]]:
    """(feature, value, attribution) summed over every position carrying the value, largest |attribution| first.

    part_attribution follows SASRec.embed_parts: item id (T,), item features (T,) / (T, L),
    user features () / (L,). item_codes[f] are the history's codes for item feature f."""
    totals: dict[tuple[str, str], float] = {}

    def add(feature: str, value: str, a: float) -> None:
        totals[(feature, value)] = totals.get((feature, value), 0.0) + float(a)

    for label, a in zip(item_labels, part_attribution[0]):
        add("item_id", label, a)
    n_item = 1 + len(item_encoders)
    for enc, attr, codes in zip(item_encoders, part_attribution[1:n_item], item_codes):
        for a, c in zip(np.ravel(attr), np.ravel(codes)):
            if enc.kind != "multi" or c != 0:  # a multi row's padding slots carry nothing
                add(enc.name, enc.describe(int(c)), a)
    for enc, attr, codes in zip(user_encoders, part_attribution[n_item:], user_codes or []):
        for a, c in zip(np.ravel(attr), np.ravel(codes)):
            if enc.kind != "multi" or c != 0:
                add(enc.name, enc.describe(int(c)), a)
    return sorted(((f, v, a) for (f, v), a in totals.items()), key=lambda t: -abs(t[2]))
