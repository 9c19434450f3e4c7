"""Feedback calls checked event by event, retries recognised, answers turned into impressions."""

import pytest

from attnrec.serving.codec import InvalidArgument
from attnrec.serving.config import ServingConfig
from attnrec.serving.feedback import RecentIds, decode_feedback, impressions_table
from attnrec.v1 import recommender_pb2 as pb

CONFIG = ServingConfig(checkpoint="unused", max_feedback_events=5)
NOW = 1_764_720_000_000


def event(**kw):
    fields = dict(event_id="e1", user_id="u1", item_id="i1", event_type="click", timestamp_ms=NOW - 1000)
    return pb.FeedbackEvent(**{**fields, **kw})


def test_good_events_become_rows_and_bad_ones_errors_naming_index_and_field():
    request = pb.FeedbackRequest(events=[
        event(), event(event_id="e2", event_type="like"), event(event_id="e3", timestamp_ms=0),
        event(event_id=""), event(event_id="e5", timestamp_ms=NOW + 2 * 86_400_000)])
    decoded = decode_feedback(request, CONFIG, NOW)
    assert decoded.events.column("event_id").to_pylist() == ["e1", "e3"]
    assert decoded.events.column("timestamp_ms").to_pylist() == [NOW - 1000, NOW]  # 0 = when received
    assert decoded.events.column("received_ms").to_pylist() == [NOW, NOW]
    errors = [(e.index, e.code, e.message.split(":")[0]) for e in decoded.response.errors]
    assert errors == [(1, "INVALID_ARGUMENT", "events[1].event_type"), (3, "INVALID_ARGUMENT", "events[3].event_id"),
                      (4, "INVALID_ARGUMENT", "events[4].timestamp_ms")]


@pytest.mark.parametrize("bad, field", [
    (dict(user_id=""), "user_id"), (dict(item_id="x" * 300), "item_id"), (dict(timestamp_ms=-5), "timestamp_ms"),
    (dict(value=float("nan")), "value"), (dict(event_type=""), "event_type"),
    (dict(request_id="r" * 300), "request_id")])
def test_each_bad_field_is_named(bad, field):
    decoded = decode_feedback(pb.FeedbackRequest(events=[event(**bad)]), CONFIG, NOW)
    assert decoded.events.num_rows == 0 and decoded.response.errors[0].message.startswith(f"events[0].{field}:")


@pytest.mark.parametrize("n", [0, 6])
def test_an_empty_or_oversized_call_is_refused_whole(n):
    with pytest.raises(InvalidArgument) as e:
        decode_feedback(pb.FeedbackRequest(events=[event(event_id=str(i)) for i in range(n)]), CONFIG, NOW)
    assert e.value.field == "events"


def test_recent_ids_know_retries_and_repeats_within_a_call():
    recent = RecentIds(capacity=3)
    assert recent.fresh(["a", "b", "a"]).tolist() == [True, True, False]
    recent.add(["a", "b"])
    assert recent.fresh(["a", "c"]).tolist() == [False, True]
    recent.add(["c", "d"])  # capacity 3: "a", the oldest, is forgotten
    assert recent.fresh(["a", "b"]).tolist() == [True, False]


def test_impressions_of_answers():
    answer = pb.RecommendResponse(request_id="r1", model_version="m1",
                                  items=[pb.ScoredItem(item_id="x", score=2.0), pb.ScoredItem(item_id="y", score=1.0)])
    failed = pb.RecommendResponse(error=pb.RequestError(code="INVALID_ARGUMENT", message="k: ..."))
    table = impressions_table([("u1", answer, NOW), ("u2", failed, NOW)])
    assert table.to_pydict() == {"request_id": ["r1", "r1"], "user_id": ["u1", "u1"], "model_version": ["m1", "m1"],
                                 "item_id": ["x", "y"], "rank": [0, 1], "score": [2.0, 1.0],
                                 "timestamp_ms": [NOW, NOW]}
