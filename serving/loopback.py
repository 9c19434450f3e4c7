"""Make Serve's gRPC proxy listen on the host attnrec was asked to bind, not on every interface.

Ray 2.60 hard-codes `[::]:PORT` for the gRPC proxy (HTTP honours http_options.host). This
hook runs in every Ray worker process of the job (Ray's documented
`runtime_env["worker_process_setup_hook"]`), the proxy actor included, and wraps the one
function that adds the listening address so that it uses ATTNREC_GRPC_HOST instead.
`attnrec serve --host 0.0.0.0` (or `::`) restores Ray's behaviour. If a Ray upgrade moves
that function, the hook logs a warning and the proxy keeps Ray's default: `attnrec serve`
then says so, and a test fails, rather than silently exposing the port.
"""

from __future__ import annotations

import logging
import os

HOST_ENV = "ATTNREC_GRPC_HOST"
log = logging.getLogger("ray.serve")


def bind_grpc_proxy_to_host() -> None:
    host = os.environ.get(HOST_ENV)
    if not host or host in ("0.0.0.0", "::", "[::]"):
        return
    try:
        from ray.serve._private import default_impl
    except ImportError:
        log.warning("attnrec: cannot restrict the gRPC proxy to %s: Ray's layout changed", host)
        return
    original = default_impl.add_grpc_address

    def add_grpc_address(server, address: str) -> None:
        port = address.rsplit(":", 1)[-1]
        original(server, f"{host}:{port}")

    default_impl.add_grpc_address = add_grpc_address
