"""Training on what came back: logged feedback events as interactions beside the base data.

Positive events (a click, an add to cart, a purchase, a rating) become interactions with a
`weight` (how much each counts as a training target, model/data.py); impressions are what
was shown, not what was wanted, and never become positives (`attnrec report` reads them).
Each event_id counts once (model/feedback_log.read_events).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from attnrec.model.data import DataError
from attnrec.model.feedback_log import EVENT_TYPES

log = logging.getLogger(__name__)

# A purchase says more about what a user wants than a click does; every rating counts, as
# in the embedded MovieLens, where each rating is an interaction.
DEFAULT_EVENT_WEIGHTS = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "rating": 1.0}
# Milliseconds per unit of the base data's timestamps, for each unit we recognise.
UNITS_MS = {"s": 1_000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
EPOCH_RANGE_MS = (631_152_000_000, 4_102_444_800_000)  # 1990-01-01 .. 2100-01-01


def parse_event_weights(text: str) -> dict[str, float]:
    """"purchase=3,click=1" -> {"purchase": 3.0, "click": 1.0}: exactly the event types that
    become interactions, each with its weight."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in EVENT_TYPES or name == "impression":
            raise DataError(f"--event-weights: unknown event type {name!r} "
                            f"(one of {', '.join(t for t in EVENT_TYPES if t != 'impression')})")
        try:
            weights[name] = float(value)
        except ValueError:
            raise DataError(f"--event-weights: {part!r} is not TYPE=NUMBER") from None
        if not weights[name] > 0:
            raise DataError(f"--event-weights: {name} must weigh more than 0 (leave it out instead)")
    if not weights:
        raise DataError("--event-weights: no event type given")
    return weights


def time_unit(timestamps: np.ndarray) -> str | None:
    """The unit ("s", "ms", "us", "ns") in which the newest timestamp reads as a date between
    1990 and 2100; None when none does (e.g. step numbers, as in the synthetic shop)."""
    if len(timestamps) == 0:
        return None
    newest = float(np.max(timestamps))
    for unit, ms in UNITS_MS.items():
        if EPOCH_RANGE_MS[0] <= newest * ms <= EPOCH_RANGE_MS[1]:
            return unit
    return None


@dataclass
class Merged:
    """Base interactions and feedback interactions in one table, and what went into it."""

    interactions: pa.Table  # user_id, item_id, timestamp, weight
    events_by_type: dict[str, int] = field(default_factory=dict)  # feedback interactions per event type
    time_note: str = ""  # how feedback timestamps were put on the base data's clock
    new_users: int = 0  # users with feedback but no base interaction
    new_items: int = 0  # items with feedback but no base interaction


def with_feedback(base: pa.Table, events: pa.Table, weights: dict[str, float]) -> Merged:
    """`base` (checked interactions) with every event of a type in `weights` appended as an
    interaction of that weight. Feedback timestamps (ms) are converted to the base data's unit
    when it reads as dates; otherwise the events follow the base data, in their own order."""
    positive = events.filter(pc.is_in(events.column("event_type"), value_set=pa.array(list(weights))))
    kinds = positive.column("event_type").to_numpy(zero_copy_only=False)
    ts_ms = positive.column("timestamp_ms").to_numpy()
    base_ts = base.column("timestamp").to_numpy()
    unit = time_unit(base_ts)
    if unit is not None:
        ts = np.round(ts_ms / UNITS_MS[unit]).astype(np.int64)
        note = f"feedback timestamps converted from ms to the base data's unit ({unit})"
    else:
        newest = int(base_ts.max()) if len(base_ts) else 0
        ts = newest + 1 + np.argsort(np.argsort(ts_ms, kind="stable"), kind="stable").astype(np.int64)
        note = ("the base data's timestamps do not read as dates: feedback events follow its newest "
                "interaction, in their own time order")
    feedback = pa.table({
        "user_id": positive.column("user_id"),
        "item_id": positive.column("item_id"),
        "timestamp": pa.array(ts, pa.int64()),
        "weight": pa.array([weights[k] for k in kinds], pa.float32()),
    })
    base_part = base.select(["user_id", "item_id", "timestamp"]).append_column(
        "weight", base.column("weight") if "weight" in base.column_names
        else pa.array(np.ones(base.num_rows, np.float32)))
    known_users = pc.unique(base.column("user_id"))
    known_items = pc.unique(base.column("item_id"))
    return Merged(
        interactions=pa.concat_tables([base_part, feedback]),
        events_by_type={k: int((kinds == k).sum()) for k in weights if (kinds == k).any()},
        time_note=note,
        new_users=len(pc.unique(pc.filter(feedback["user_id"], pc.invert(pc.is_in(feedback["user_id"], known_users))))),
        new_items=len(pc.unique(pc.filter(feedback["item_id"], pc.invert(pc.is_in(feedback["item_id"], known_items))))),
    )
