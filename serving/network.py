"""What attnrec listens on. By default (one machine) every server attnrec starts, Ray's own
included, binds loopback only; `attnrec serve --host 0.0.0.0` (or a cluster) opts out, and
docs/operations.md lists what then listens where. Imports nothing of Ray: the switch below
must be set before Ray is imported and decides the node address."""

from __future__ import annotations

import os
import sys
from pathlib import Path

WILDCARDS = ("0.0.0.0", "::", "[::]", "")
# Ray's single-machine mode (the one it uses by default on macOS and Windows): the node's
# address is 127.0.0.1, and gcs_server, raylet, workers, the dashboard and runtime-env agents
# and the metrics exporters then all bind it. Ray reads the variable when it is imported.
RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class PortInUse(RuntimeError):
    """A port attnrec was told to listen on is taken: said to the user as it is, no traceback."""


def is_wildcard(host: str | None) -> bool:
    """True for an address that means every interface."""
    return (host or "") in WILDCARDS


def keep_ray_on_loopback() -> None:
    """Put Ray, in this process and the ones it starts, in its single-machine mode."""
    os.environ[RAY_LOCAL_ONLY_ENV] = "0"
    if "ray" in sys.modules:  # imported already (a test session): the constant it read goes the same way
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def is_loopback_address(address: str) -> bool:
    """True for a Ray address on this machine only ("auto", 127.x, localhost, ::1)."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return address == "auto" or host in ("localhost", "::1") or host.startswith("127.")


def prepare_to_connect(address: str) -> None:
    """Before a process joins a running Ray (`attnrec rollout`, `attnrec train --ray --address`);
    call before Ray is imported. `attnrec serve` starts Ray with token authentication (Ray's
    default for a new cluster), its token in ~/.ray/auth_token, which Ray itself looks for only
    with --address auto; a loopback address is a single-machine Ray like attnrec's own."""
    token_given = {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ)
    if "RAY_AUTH_MODE" not in os.environ and (token_given or (Path.home() / ".ray" / "auth_token").exists()):
        os.environ["RAY_AUTH_MODE"] = "token"
    if is_loopback_address(address):
        keep_ray_on_loopback()
