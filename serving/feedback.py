"""Feedback below the Ray layer: checking a Feedback call's events one by one, remembering
which event_ids the log already holds, and turning Recommend answers into impression rows.
Pure Python and pyarrow; the log's files are model/feedback_log.py's."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from attnrec.model.feedback_log import DAY_MS, EVENT_SCHEMA, EVENT_TYPES, IMPRESSION_SCHEMA
from attnrec.serving.codec import InvalidArgument, shorten
from attnrec.serving.config import ServingConfig
from attnrec.v1 import recommender_pb2 as pb


@dataclass
class DecodedFeedback:
    """A Feedback call's good events as a table (EVENT_SCHEMA), and its answer so far: one
    error per bad event (accepted and duplicates are the log's to fill in)."""

    events: pa.Table
    response: pb.FeedbackResponse


def _check_event(event: pb.FeedbackEvent, config: ServingConfig, now_ms: int) -> None:
    """Raises InvalidArgument naming the first field at fault."""
    for field in ("event_id", "user_id", "item_id"):
        value = getattr(event, field)
        if not value:
            raise InvalidArgument(field, "required, got empty")
        if len(value.encode()) > config.max_id_bytes:
            raise InvalidArgument(field, f"{len(value.encode())} bytes ({shorten(value)}); "
                                         f"at most {config.max_id_bytes} accepted")
    if len(event.request_id.encode()) > config.max_id_bytes:
        raise InvalidArgument("request_id", f"{len(event.request_id.encode())} bytes; at most {config.max_id_bytes}")
    if event.event_type not in EVENT_TYPES:
        raise InvalidArgument("event_type", f"{shorten(event.event_type) or 'empty'}: expected one of "
                                            f"{list(EVENT_TYPES)}")
    if event.timestamp_ms < 0:
        raise InvalidArgument("timestamp_ms", f"must be >= 0 (0 = now), got {event.timestamp_ms}")
    if event.timestamp_ms > now_ms + DAY_MS:
        raise InvalidArgument("timestamp_ms", f"{event.timestamp_ms} is more than a day ahead of the server's "
                                              f"clock ({now_ms}); expected milliseconds since the epoch")
    if not math.isfinite(event.value):
        raise InvalidArgument("value", f"must be finite, got {event.value}")


def decode_feedback(request: pb.FeedbackRequest, config: ServingConfig, now_ms: int) -> DecodedFeedback:
    """The good events of a Feedback call (received now), and an error naming the index and
    field of each bad one. An empty or oversized call is refused whole (InvalidArgument)."""
    n = len(request.events)
    if not 1 <= n <= config.max_feedback_events:
        raise InvalidArgument("events", f"{n} events, expected 1..{config.max_feedback_events}")
    response = pb.FeedbackResponse()
    good: list[pb.FeedbackEvent] = []
    for i, event in enumerate(request.events):
        try:
            _check_event(event, config, now_ms)
        except InvalidArgument as e:
            response.errors.add(code="INVALID_ARGUMENT", message=f"events[{i}].{e}", index=i)
            continue
        good.append(event)
    columns = {name: [getattr(e, name) for e in good] for name in EVENT_SCHEMA.names if name != "received_ms"}
    columns["timestamp_ms"] = [t or now_ms for t in columns["timestamp_ms"]]
    columns["received_ms"] = [now_ms] * len(good)
    return DecodedFeedback(pa.table(columns, schema=EVENT_SCHEMA), response)


class RecentIds:
    """The event_ids a log replica has written, the most recent `capacity` of them: a retry
    within that window is answered as a duplicate without being written again. Older or
    other replicas' retries are written again and removed by readers (first of each id)."""

    def __init__(self, capacity: int = 1_000_000):
        self.capacity = capacity
        self.ids: OrderedDict[str, None] = OrderedDict()

    def fresh(self, ids: Iterable[str]) -> np.ndarray:
        """Per id, whether it is new: not held, and not an earlier id of the same sequence."""
        seen_now: set[str] = set()
        out = []
        for i in ids:
            out.append(i not in self.ids and i not in seen_now)
            seen_now.add(i)
        return np.asarray(out, dtype=bool)

    def add(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.ids[i] = None
            self.ids.move_to_end(i)
        while len(self.ids) > self.capacity:
            self.ids.popitem(last=False)


def impressions_table(answers: Sequence[tuple[str, pb.RecommendResponse, int]]) -> pa.Table:
    """Impression rows (IMPRESSION_SCHEMA) of Recommend answers: (user_id, response, time in ms)."""
    columns: dict[str, list] = {name: [] for name in IMPRESSION_SCHEMA.names}
    for user_id, response, at_ms in answers:
        n = len(response.items)
        if not n or not response.request_id:
            continue
        columns["request_id"] += [response.request_id] * n
        columns["user_id"] += [user_id] * n
        columns["model_version"] += [response.model_version] * n
        columns["item_id"] += [item.item_id for item in response.items]
        columns["rank"] += range(n)
        columns["score"] += [item.score for item in response.items]
        columns["timestamp_ms"] += [at_ms] * n
    return pa.table(columns, schema=IMPRESSION_SCHEMA)
