"""The thin Ray Serve layer: one plain class per deployment, one method per RPC.

Each gRPC method decodes (codec), calls the pure core (ranking / explain), encodes.
Recommend takes one hop inside Ray: the ingress *is* the batched model replica.
Explain is forwarded to the separate Explainer deployment through a handle, so heavy
explanations never hold up Recommend's replicas.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import asdict

import grpc
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.train import resolve_device
from attnrec.serving.batching import BatchStats, BatchWait
from attnrec.serving.codec import Catalog, InvalidArgument, Query, Ranked, decode_recommend, encode_recommend
from attnrec.serving.config import BatchConfig, ServingConfig
from attnrec.serving.explain_codec import answer_explains
from attnrec.serving.ranking import answer_in_chunks, rank
from attnrec.serving.wire import Malformed
from attnrec.v1 import recommender_pb2 as pb

log = logging.getLogger("ray.serve")


def _invalid(grpc_context, error: Exception | str) -> None:
    grpc_context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    grpc_context.set_details(str(error))


def _logged(what: str, error: BaseException) -> str:
    """A server-side failure: the traceback goes to the log under a fresh error id (never to the
    client: it names hosts, pids and paths); returns the short message the client gets."""
    error_id = uuid.uuid4().hex[:12]
    log.error("%s failed, error id %s", what, error_id, exc_info=error)
    return f"{what} failed on the server (error id {error_id}); the server log has the details"


def _fail(grpc_context, code: grpc.StatusCode, what: str, error: BaseException) -> None:
    grpc_context.set_code(code)
    grpc_context.set_details(_logged(what, error))


def rpc(response_type):
    """The outcome every RPC method guarantees: a request that did not parse is INVALID_ARGUMENT,
    a fault of the server INTERNAL with an error id; the method itself only decodes, calls, encodes."""
    def wrap(method):
        @functools.wraps(method)
        async def answer(self, request, grpc_context):
            if isinstance(request, Malformed):
                _invalid(grpc_context, request.details())
                return response_type()
            try:
                return await method(self, request, grpc_context)
            except InvalidArgument as e:
                _invalid(grpc_context, e)
            except Exception as e:  # noqa: BLE001 (answered as INTERNAL; the traceback goes to the log)
                _fail(grpc_context, grpc.StatusCode.INTERNAL, method.__name__, e)
            return response_type()

        return answer

    return wrap


DEFAULT_BATCH = BatchConfig()  # batching defaults come from BatchConfig alone (serve.yaml and bench leave them out)


@serve.deployment(max_ongoing_requests=256, user_config=asdict(DEFAULT_BATCH))
class Recommender:
    def __init__(self, config: ServingConfig, explainer: DeploymentHandle | None = None):
        self.config = config
        ckpt = load_checkpoint(config.checkpoint, resolve_device(config.device))
        self.model = ckpt.model
        self.catalog = Catalog(ckpt)
        self.explainer = explainer
        self.stats = BatchStats()
        self.batch_config = DEFAULT_BATCH  # replaced by reconfigure() when Serve passes a user_config
        self.batch_wait = BatchWait(self.batch_config)
        self.in_flight = 0  # Recommend calls between decoding and answer: the batch and its queue
        log.info("Recommender loaded %s (%s, %d items) on %s", config.checkpoint, self.catalog.model_version,
                 len(self.catalog.item_index), self.model.item_emb.weight.device)

    def reconfigure(self, user_config: dict) -> None:
        batch = BatchConfig.from_user_config(user_config)
        self._rank_batched.set_max_batch_size(batch.max_batch_size)
        self._rank_batched.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        self.batch_config = batch
        self.batch_wait = BatchWait(batch)

    @serve.batch(max_batch_size=DEFAULT_BATCH.max_batch_size, batch_wait_timeout_s=DEFAULT_BATCH.batch_wait_timeout_s)
    async def _rank_batched(self, queries: list[Query]) -> list[Ranked]:
        self.stats.record(len(queries))
        self._rank_batched.set_batch_wait_timeout_s(self.batch_wait.after(self.in_flight))  # for the next batch
        return rank(self.model, queries)

    @rpc(pb.RecommendResponse)
    async def Recommend(self, request: pb.RecommendRequest, grpc_context) -> pb.RecommendResponse:
        query = decode_recommend(request, self.catalog, self.config)
        self.in_flight += 1
        try:
            ranked = await self._rank_batched(query)
        finally:
            self.in_flight -= 1
        return encode_recommend(query, ranked, self.catalog)

    @rpc(pb.RecommendBatchResponse)
    async def RecommendBatch(self, request: pb.RecommendBatchRequest, grpc_context) -> pb.RecommendBatchResponse:
        n = len(request.requests)
        if not 1 <= n <= self.config.max_batch_requests:
            raise InvalidArgument("requests", f"{n} entries, expected 1..{self.config.max_batch_requests}")
        response = pb.RecommendBatchResponse()
        for size in answer_in_chunks(request, self.model, self.catalog, self.config,
                                     self.batch_config.max_batch_size, response):
            self.stats.record(size)
            await asyncio.sleep(0)  # single Recommends waiting on this replica go between chunks
        return response

    @rpc(pb.ExplainResponse)
    async def Explain(self, request: pb.ExplainRequest, grpc_context) -> pb.ExplainResponse:
        if self.explainer is None:
            grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            grpc_context.set_details("Explain: this application was built without an Explainer deployment")
            return pb.ExplainResponse()
        try:
            answer: tuple[bytes, str, str] = await self.explainer.explain.remote(request.SerializeToString())
        except BackPressureError as e:  # the Explainer's max_queued_requests: shed load now, not after a long wait
            grpc_context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            grpc_context.set_details(f"Explain: every Explainer replica is busy and its queue is full ({e}); "
                                     "retry with backoff")
            return pb.ExplainResponse()
        except (RayActorError, DeploymentUnavailableError) as e:  # the Explainer replica died or none is up yet
            _fail(grpc_context, grpc.StatusCode.UNAVAILABLE, "Explain", e)
            return pb.ExplainResponse()
        payload, code, details = answer
        if code:
            grpc_context.set_code(getattr(grpc.StatusCode, code))
            grpc_context.set_details(details)
        return pb.ExplainResponse.FromString(payload)

    def stats_summary(self) -> dict:
        """Batch sizes formed so far (call through a DeploymentHandle)."""
        return {**self.stats.summary(), "batch_config": vars(self.batch_config), "batch_wait_s": self.batch_wait.wait_s,
                "batch_wait_switches": self.batch_wait.switches}


@serve.deployment(max_ongoing_requests=8, max_queued_requests=8)  # past these, Explain is RESOURCE_EXHAUSTED
class Explainer:
    """Explanations on their own replicas: heavy (integrated gradients runs n_steps forward
    and backward passes) and rarer than Recommend, so they scale separately and never queue
    in front of recommendations. Concurrent requests are batched into one attention pass
    and one IG call. Same checkpoint, same model_version as the Recommender."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.ckpt = load_checkpoint(config.checkpoint, resolve_device(config.device))
        self.catalog = Catalog(self.ckpt)
        self.stats = BatchStats()

    async def explain(self, payload: bytes) -> tuple[bytes, str, str]:
        """Serialized ExplainRequest -> (serialized ExplainResponse, status code name or "", details)."""
        return await self._explain_batched(payload)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)  # requests queue while one batch computes
    async def _explain_batched(self, payloads: list[bytes]) -> list[tuple[bytes, str, str]]:
        self.stats.record(len(payloads))
        requests = [pb.ExplainRequest.FromString(p) for p in payloads]
        return [_explain_wire(a) for a in answer_explains(requests, self.ckpt, self.catalog, self.config)]

    def stats_summary(self) -> dict:
        """Explanation batch sizes formed so far (call through a DeploymentHandle)."""
        return self.stats.summary()


def _explain_wire(answer: pb.ExplainResponse | Exception) -> tuple[bytes, str, str]:
    """(serialized response, status code name or "", details) for the Recommender to answer with.
    A server fault reaches the client as a short message and an error id; its traceback goes
    to the Explainer's log under that id."""
    if isinstance(answer, InvalidArgument):
        return b"", "INVALID_ARGUMENT", str(answer)
    if isinstance(answer, Exception):
        return b"", "INTERNAL", _logged("Explain", answer)
    return answer.SerializeToString(), "", ""
