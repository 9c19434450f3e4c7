"""Hostile and malformed requests over real gRPC, seeded: every answer is OK,
INVALID_ARGUMENT naming what was wrong, or RESOURCE_EXHAUSTED for an oversized request;
never UNKNOWN or INTERNAL, never a traceback, and the service keeps answering."""

from __future__ import annotations

import random

import grpc
import pytest

from attnrec.serving.proxy_hooks import MAX_REQUEST_BYTES
from attnrec.v1 import recommender_pb2 as pb
from tests.serving.live import direct_target

pytestmark = pytest.mark.integration

CASES_PER_RPC = 300
FIELDS = {"request", "k", "history", "candidate_item_ids", "user_id", "user_features", "requests", "item_id",
          "n_steps", "methods", "top_k", "model_name", "counterfactual_max_size", "counterfactual_rank",
          "rerank", "rerank_weight"}
ITEMS = [f"i{i}" for i in range(1, 40)]


def valid(rng: random.Random, rpc: str) -> pb.RecommendRequest | pb.RecommendBatchRequest | pb.ExplainRequest:
    history = rng.sample(ITEMS, rng.randint(1, 6))
    if rpc == "Recommend":
        return pb.RecommendRequest(history=history, k=rng.randint(1, 20))
    if rpc == "RecommendBatch":
        return pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=history, k=3)] * rng.randint(1, 4))
    return pb.ExplainRequest(history=history, n_steps=rng.choice([0, 4, 8]), methods=rng.choice([[], ["deletion"]]),
                             counterfactual=rng.random() < 0.3, counterfactual_max_size=rng.choice([0, 1, 3]))


def hostile_values(rng: random.Random, rpc: str):
    """Well-formed messages with values outside every limit."""
    long_id = rng.choice(["x" * 300, "é" * 5000, "\u0000" * 257, "y" * 70_000])
    if rpc == "Recommend":
        return rng.choice([pb.RecommendRequest(history=["i1"], k=rng.choice([0, -5, 2**31 - 1])),
                           pb.RecommendRequest(history=[long_id], k=3),
                           pb.RecommendRequest(history=["i1"], k=3, user_id=long_id),
                           pb.RecommendRequest(history=["i1"], k=3, user_features={long_id: "1"}),
                           pb.RecommendRequest(history=["i1"], k=3, candidate_item_ids=["i2", "i2", ""]),
                           pb.RecommendRequest(history=["i1"], k=3, model_name=long_id),
                           pb.RecommendRequest()])
    if rpc == "RecommendBatch":
        return rng.choice([pb.RecommendBatchRequest(),
                           pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=[long_id], k=0)] * 3)])
    return rng.choice([pb.ExplainRequest(history=["i1"], n_steps=rng.choice([1, 3, 513, -1, 2**31 - 1])),
                       pb.ExplainRequest(history=["i1"], item_id=long_id),
                       pb.ExplainRequest(history=["i1"], top_k=rng.choice([-1, 11, 2**31 - 1])),
                       pb.ExplainRequest(history=["i1"], methods=["shap", long_id]),
                       pb.ExplainRequest(history=["i1"], counterfactual=True,
                                         counterfactual_max_size=rng.choice([-1, 11, 2**31 - 1])),
                       pb.ExplainRequest(history=["i1"], counterfactual_rank=rng.choice([-3, 1001, 2**31 - 1])),
                       pb.ExplainRequest(history=["i1"], model_name=long_id),
                       pb.ExplainRequest(history=[long_id])])


def mangled(rng: random.Random, data: bytes) -> bytes:
    """Bytes near a valid message: flipped, cut, padded with garbage, or invalid UTF-8 in a string."""
    kind = rng.randrange(5)
    if kind == 0 and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1 and len(data) > 1:
        return data[: rng.randrange(1, len(data))]
    if kind == 2:
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    if kind == 3:  # field 1 (a string in every request) with bytes that are not UTF-8
        bad = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])
        return bytes([0x0A, len(bad)]) + bad + data
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 48)))


def cases(rpc: str, seed: int, n: int) -> list[bytes]:
    rng = random.Random(f"{rpc}-{seed}")
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(hostile_values(rng, rpc).SerializeToString())
        else:
            out.append(mangled(rng, valid(rng, rpc).SerializeToString()))
    out.append(b"\xff\xff")
    out.append(b"\x0a" + b"\xff\xff\xff\xff\x0f" + b"z" * 10)  # a length prefix far past the end
    return out


def call_raw(channel: grpc.Channel, rpc: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    method = channel.unary_unary(f"/attnrec.v1.Recommender/{rpc}")  # bytes in, bytes out
    try:
        method(body, timeout=60)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


@pytest.mark.parametrize("rpc", ["Recommend", "RecommendBatch", "Explain"])
def test_malformed_and_hostile_requests_get_defined_answers(service, rpc):
    port = service["port"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for i, body in enumerate(cases(rpc, seed=0, n=CASES_PER_RPC)):
            code, details = call_raw(channel, rpc, body)
            case = f"{rpc} case {i}: {body[:40]!r}... -> {code.name}: {details[:200]}"
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), case
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert details.split(":")[0].split("[")[0].split(".")[-1] in FIELDS, case
                assert len(details.encode()) <= 1024 and "Traceback" not in details, case
        code, details = call_raw(channel, rpc, b"\x0a\x02i1" * (MAX_REQUEST_BYTES // 4 + 1))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert call_raw(channel, "Recommend", pb.RecommendRequest(history=["i1"], k=3).SerializeToString())[0] \
            == grpc.StatusCode.OK  # still serving


def test_malformed_bytes_are_invalid_argument_at_a_replica_port_too(service):
    with grpc.insecure_channel(direct_target()) as channel:
        for rpc in ("Recommend", "RecommendBatch", "Explain"):
            code, details = call_raw(channel, rpc, b"\xff\xff")
            assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request"), (rpc, code, details)
