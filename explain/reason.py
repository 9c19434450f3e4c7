"""One sentence a person can read, built from templates (no language model) and saying only
what the measured explanation supports: the counterfactual set when one was found, else the
history items that drove the score most, and the side-feature values whose absence lowers the
item most (explain/feature_reasons.py)."""

from __future__ import annotations

from collections.abc import Sequence


def listed(names: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def reason(items: Sequence[str], features: Sequence[tuple[str, str]], counterfactual_k: int | None) -> str:
    """items: the history items the explanation names (the counterfactual set, else the top
    ones); features: (feature, value) pairs that counted most, positively; counterfactual_k:
    the rank the item leaves without `items` (None: no counterfactual was found)."""
    # "counting most": each named value lowers the item when neutralised alone
    if not items:
        return "Recommended from your history as a whole: no single item in it stands out."
    text = f"Recommended because of {listed(items)} in your history"
    if features:
        values: dict[str, list[str]] = {}
        for name, value in features:  # "year 1994–1997 and 1997–2000", not "year ... and year ..."
            values.setdefault(name, []).append(value)
        text += f", with {listed([f'{name} {listed(v)}' for name, v in values.items()])} counting most"
    if counterfactual_k is not None:
        them = "it" if len(items) == 1 else ("both" if len(items) == 2 else f"those {len(items)}")
        text += f"; without {them}, this item would not be in your top {counterfactual_k}"
    return text + "."
