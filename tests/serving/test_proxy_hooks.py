"""What the hooks change in Serve's own gRPC servers, checked without starting Ray."""

import grpc

from attnrec.serving import proxy_hooks
from attnrec.serving.network import is_loopback_address
from attnrec.serving.proxy_hooks import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, brief_status, on_host


def test_wildcard_listening_addresses_move_to_the_host_and_others_stay():
    assert on_host("[::]:9000", "127.0.0.1") == "127.0.0.1:9000"
    assert on_host("[::]:0", "127.0.0.1") == "127.0.0.1:0"
    assert on_host("0.0.0.0:40001", "127.0.0.1") == "127.0.0.1:40001"
    assert on_host("10.0.0.5:9000", "127.0.0.1") == "10.0.0.5:9000"


def test_loopback_ray_addresses():
    assert all(map(is_loopback_address, ["auto", "127.0.0.1:6379", "localhost:6379", "[::1]:6379"]))
    assert not any(map(is_loopback_address, ["10.0.0.5:6379", "ray://head:10001", "192.0.2.2:44415"]))


def test_a_dead_replica_is_unavailable_and_a_fault_is_internal_both_without_ray_internals():
    from ray.serve._private.proxy_request_response import ResponseStatus

    ray_says = ResponseStatus(code=grpc.StatusCode.INTERNAL, is_error=True,
                              message="ray.exceptions.ActorDiedError: pid=123, ip=10.0.0.5, Traceback ...")
    died = brief_status(ray_says, RuntimeError(), "req-1", actor_died=True)
    assert died.code == grpc.StatusCode.UNAVAILABLE and "req-1" in died.message and "pid" not in died.message
    fault = brief_status(ray_says, RuntimeError(), "req-2", actor_died=False)
    assert fault.code == grpc.StatusCode.INTERNAL and "req-2" in fault.message and "Traceback" not in fault.message
    ok_as_is = ResponseStatus(code=grpc.StatusCode.RESOURCE_EXHAUSTED, is_error=True, message="busy")
    assert brief_status(ok_as_is, RuntimeError(), "req-3", actor_died=False) is ok_as_is


def test_message_limits_rewrite_the_options_every_serve_grpc_server_is_built_with(monkeypatch):
    from ray.serve._private import constants, grpc_util

    before = list(constants.DEFAULT_GRPC_SERVER_OPTIONS)
    try:
        proxy_hooks.limit_grpc_message_sizes()
        options = dict(grpc_util.DEFAULT_GRPC_SERVER_OPTIONS)  # the same list object, rewritten in place
        assert options["grpc.max_receive_message_length"] == MAX_REQUEST_BYTES
        assert options["grpc.max_send_message_length"] == MAX_RESPONSE_BYTES
    finally:
        constants.DEFAULT_GRPC_SERVER_OPTIONS[:] = before


def test_failure_answers_are_wrapped_once_in_the_proxy_and_the_replicas():
    from ray.serve._private import proxy, replica

    originals = proxy.get_grpc_response_status, replica.get_grpc_response_status
    try:
        proxy_hooks.answer_failures_briefly()
        proxy_hooks.answer_failures_briefly()
        for module in (proxy, replica):
            assert module.get_grpc_response_status.attnrec_brief
            assert not getattr(module.get_grpc_response_status.__defaults__[0], "attnrec_brief", False)
    finally:
        proxy.get_grpc_response_status, replica.get_grpc_response_status = originals
