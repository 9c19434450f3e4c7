"""The Ray layer's own logic, without starting Ray."""

import asyncio
import logging
import threading

from attnrec.serving import deployments
from attnrec.serving.codec import InvalidArgument
from attnrec.serving.config import ServingConfig
from attnrec.serving.deployments import _wire
from attnrec.v1 import recommender_pb2 as pb


class Context:
    """What a replica's gRPC method is given to set a status on."""

    code = details = None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def test_a_recommend_batch_is_ranked_off_the_event_loop_that_answers_single_recommends(checkpoint, monkeypatch):
    """A heavy RecommendBatch takes a second or more; single Recommends on the same replica
    need its event loop several times each, so the batch's chunks run in a worker thread."""
    ranked_on, real = [], deployments.answer_in_chunks

    def spy(*args, **kwargs):
        for size in real(*args, **kwargs):
            ranked_on.append(threading.get_ident())
            yield size

    monkeypatch.setattr(deployments, "answer_in_chunks", spy)
    replica = deployments.Recommender.func_or_class(ServingConfig(checkpoint=str(checkpoint), device="cpu"))
    replica.batch_config = deployments.BatchConfig(max_batch_size=8)
    request = pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=[f"i{u + 1}", "i2"], k=3)
                                                 for u in range(20)])

    async def call():
        return threading.get_ident(), await replica.RecommendBatch(request, Context())

    loop_thread, response = asyncio.run(call())
    assert [len(r.items) for r in response.responses] == [3] * 20
    assert len(ranked_on) == 3 and loop_thread not in ranked_on  # three chunks of at most 8


def test_explain_answers_travel_as_status_and_details():
    answer = pb.ExplainResponse(item_id="7")
    assert _wire(answer, "Explain") == (answer.SerializeToString(), "", "")
    assert _wire(InvalidArgument("top_k", "too many"), "Explain") == (b"", "INVALID_ARGUMENT", "top_k: too many")


def test_a_server_fault_reaches_the_client_as_an_error_id_and_the_log_as_a_traceback(caplog):
    try:
        raise RuntimeError("secret internals at /srv/attnrec/explain.py")
    except RuntimeError as e:
        fault = e
    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        payload, code, details = _wire(fault, "Explain")
    assert payload == b"" and code == "INTERNAL"
    assert "secret" not in details and "Traceback" not in details and len(details) < 200
    error_id = details.split("error id ")[1].split(")")[0]
    record = next(r for r in caplog.records if error_id in r.getMessage())
    assert record.exc_info and "secret internals" in str(record.exc_info[1])


def test_feedback_without_a_log_is_unimplemented_and_says_how_to_turn_it_on(checkpoint):
    replica = deployments.Recommender.func_or_class(ServingConfig(checkpoint=str(checkpoint), device="cpu"))
    context = Context()
    request = pb.FeedbackRequest(events=[pb.FeedbackEvent(event_id="e", user_id="u", item_id="i1", event_type="click")])
    answer = asyncio.run(replica.Feedback(request, context))
    assert context.code.name == "UNIMPLEMENTED" and "--feedback-dir" in context.details
    assert answer == pb.FeedbackResponse()
    # and Recommend keeps no answers for a log that is not there
    asyncio.run(replica.Recommend(pb.RecommendRequest(history=["i1"], k=2), Context()))
    assert replica.shown == []
