"""The Ray layer's own logic, without starting Ray."""

import logging

from attnrec.serving.codec import InvalidArgument
from attnrec.serving.deployments import _explain_wire
from attnrec.v1 import recommender_pb2 as pb


def test_explain_answers_travel_as_status_and_details():
    answer = pb.ExplainResponse(item_id="7")
    assert _explain_wire(answer) == (answer.SerializeToString(), "", "")
    assert _explain_wire(InvalidArgument("top_k", "too many")) == (b"", "INVALID_ARGUMENT", "top_k: too many")


def test_a_server_fault_reaches_the_client_as_an_error_id_and_the_log_as_a_traceback(caplog):
    try:
        raise RuntimeError("secret internals at /srv/attnrec/explain.py")
    except RuntimeError as e:
        fault = e
    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        payload, code, details = _explain_wire(fault)
    assert payload == b"" and code == "INTERNAL"
    assert "secret" not in details and "Traceback" not in details and len(details) < 200
    error_id = details.split("error id ")[1].split(")")[0]
    record = next(r for r in caplog.records if error_id in r.getMessage())
    assert record.exc_info and "secret internals" in str(record.exc_info[1])
