"""What attnrec changes in Ray Serve's own gRPC servers (the proxy, and each replica's
direct-ingress port), from a hook that runs in every Ray worker process of the job (Ray's
documented `runtime_env["worker_process_setup_hook"]`) before those servers start.

1. Listen on the host attnrec was asked to bind, not on every interface. Ray 2.60
   hard-codes `[::]:PORT` for the gRPC proxy (HTTP honours http_options.host) and `[::]:0`
   for each replica's inter-deployment gRPC server; the hook wraps the two functions that
   add those listening addresses so that they use ATTNREC_GRPC_HOST. `attnrec serve --host
   0.0.0.0` (or `::`) keeps Ray's behaviour.
2. Bound message sizes: Ray's servers accept 2 GiB messages. Requests above
   MAX_REQUEST_BYTES are refused by gRPC itself with RESOURCE_EXHAUSTED before any of
   them is parsed; answers may reach MAX_RESPONSE_BYTES (a full RecommendBatch).
3. Keep Ray's internals from clients. When a replica dies under a call, or Serve itself
   fails, Ray answers INTERNAL with the whole Ray traceback (pids, the machine's address,
   actor ids, paths). A replica that stopped becomes UNAVAILABLE (which clients may retry:
   the RPCs are idempotent), anything else INTERNAL; both with a short message and Serve's
   request id, under which Ray's log keeps the traceback.

If a Ray upgrade moves what the hook changes, it logs a warning and Ray's defaults stay:
a test then fails, rather than the service silently exposing a port or taking 2 GiB calls.
"""

from __future__ import annotations

import logging
import os

from attnrec.serving.network import is_wildcard

HOST_ENV = "ATTNREC_GRPC_HOST"
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # the largest request accepted; docs/operations.md
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # 1,024 users x k = 1,000 fit with room
log = logging.getLogger("ray.serve")


# Serve runs a replica's outgoing handle calls (Recommender -> Explainer, -> FeedbackLog) on
# an event loop in a thread of its own, by default. Once a replica has made one such call,
# that thread competes for the GIL with the loop that answers Recommend: saturated Recommend
# fell from 1,364-1,405 to 1,107-1,130 calls/s after a single Explain here (direct ingress,
# 32 in flight). On the replica's own loop (as Serve's throughput-optimized mode does) it
# costs nothing measurable (docs/performance.md).
ROUTER_ON_THE_REPLICAS_LOOP = {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}


def worker_runtime_env(host: str) -> dict:
    """The runtime_env that applies this hook to every worker of attnrec's Ray job and application."""
    return {"env_vars": {HOST_ENV: host, **ROUTER_ON_THE_REPLICAS_LOOP},
            "worker_process_setup_hook": f"{__name__}.harden_grpc_servers"}


def harden_grpc_servers() -> None:
    """The worker-process setup hook: the changes above."""
    bind_grpc_proxy_to_host()
    limit_grpc_message_sizes()
    answer_failures_briefly()


def on_host(address: str, host: str) -> str:
    """A listening address `[::]:PORT` / `0.0.0.0:PORT` moved to `host`; any other kept."""
    wildcard, _, port = address.rpartition(":")
    return f"{host}:{port}" if is_wildcard(wildcard) else address


def bind_grpc_proxy_to_host() -> None:
    host = os.environ.get(HOST_ENV)
    if is_wildcard(host):
        return
    try:
        from ray.serve._private import default_impl, replica
    except ImportError:
        log.warning("attnrec: cannot restrict Serve's gRPC servers to %s: Ray's layout changed", host)
        return
    add_grpc_address, add_port = default_impl.add_grpc_address, getattr(replica, "add_port_to_grpc_server", None)
    if getattr(add_grpc_address, "attnrec_host", False):
        return
    default_impl.add_grpc_address = lambda server, address: add_grpc_address(server, on_host(address, host))
    default_impl.add_grpc_address.attnrec_host = True
    if add_port is None:
        log.warning("attnrec: cannot restrict replicas' inter-deployment gRPC servers to %s: Ray's layout changed",
                    host)
        return
    replica.add_port_to_grpc_server = lambda server, address: add_port(server, on_host(address, host))


def limit_grpc_message_sizes() -> None:
    """Rewrite, in place, the option list every Serve gRPC server is built with."""
    try:
        from ray.serve._private.constants import DEFAULT_GRPC_SERVER_OPTIONS as options
    except ImportError:
        log.warning("attnrec: cannot bound gRPC message sizes: Ray's layout changed")
        return
    limits = {"grpc.max_receive_message_length": MAX_REQUEST_BYTES, "grpc.max_send_message_length": MAX_RESPONSE_BYTES}
    options[:] = [(k, v) for k, v in options if k not in limits] + list(limits.items())


def brief_status(status, exc: BaseException, request_id: str, actor_died: bool):
    """What a client is told instead of Ray's own failure answer (`status`, a ResponseStatus)."""
    import grpc

    if actor_died:
        return type(status)(code=grpc.StatusCode.UNAVAILABLE, is_error=True,
                            message=f"the replica serving this call stopped (request id {request_id}); retry")
    if status.code == grpc.StatusCode.INTERNAL:
        return type(status)(code=grpc.StatusCode.INTERNAL, is_error=True,
                            message=f"internal error (request id {request_id}); the server log has the details")
    return status


def answer_failures_briefly() -> None:
    """Wrap the function Serve's proxy and replicas map an exception to a gRPC status with."""
    try:
        from ray.exceptions import RayActorError
        from ray.serve._private import proxy, replica
    except ImportError:
        log.warning("attnrec: cannot shorten Serve's failure answers: Ray's layout changed")
        return
    for module in (proxy, replica):
        original = getattr(module, "get_grpc_response_status", None)
        if original is None or getattr(original, "attnrec_brief", False):
            continue

        def status(exc, request_timeout_s, request_id, _original=original):
            return brief_status(_original(exc, request_timeout_s, request_id), exc, request_id,
                                isinstance(exc, RayActorError))

        status.attnrec_brief = True
        module.get_grpc_response_status = status
