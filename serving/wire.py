"""How the service's RPCs are registered on Serve's gRPC servers (the proxy's, and each
replica's direct-ingress port): the handlers of the generated code, with request parsing
that never raises.

Serve parses each request with the servicer's own request deserializer, in the proxy, and
hands the parsed message to the replica. The generated `FromString` raises `DecodeError` on
bytes that are not the message (or carry invalid UTF-8 in a string field), which gRPC turns
into `UNKNOWN: Unexpected DecodeError`. Here a request that does not parse becomes a
`Malformed` value instead, and the deployment answers it `INVALID_ARGUMENT`: the client's
fault, said as such. The handlers are built from the proto's service descriptor, so every
RPC of the contract is covered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from attnrec.v1 import recommender_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Recommender"]


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of its RPC's request type."""

    message_type: str  # e.g. "attnrec.v1.RecommendRequest"
    problem: str

    def details(self) -> str:
        return f"request: not a valid {self.message_type} ({self.problem})"


def parse_or_malformed(message_class) -> Callable[[bytes], object]:
    name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as e:
            return Malformed(name, str(e)[:200] or "could not be parsed")

    return parse


def add_RecommenderServicer_to_server(servicer, server) -> None:
    """Register every RPC of attnrec.v1.Recommender, as the generated function does."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=parse_or_malformed(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
