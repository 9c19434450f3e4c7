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
import time
import uuid
from dataclasses import asdict

import grpc
import pyarrow as pa
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.model.feedback_log import FeedbackWriter
from attnrec.model.sasrec import SASRec
from attnrec.serving.batching import BatchStats, BatchWait
from attnrec.serving.codec import InvalidArgument, Query, Ranked, decode_recommend, encode_recommend
from attnrec.serving.config import BatchConfig, ServingConfig, checkpoint_of
from attnrec.serving.explain_codec import answer_explains
from attnrec.serving.feedback import RecentIds, decode_feedback, impressions_table
from attnrec.serving.loaded import Loaded, load
from attnrec.serving.ranking import answer_in_chunks, rank_each
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


async def swap(current: Loaded, checkpoint: str | None, config: ServingConfig, who: str) -> Loaded:
    """What a replica serves after a reconfigure: user_config's checkpoint, else the one the
    application was started with. A new one loads beside the current, off the event loop, so
    calls in flight and arriving keep being answered by the old until one reference changes."""
    path = resolve_checkpoint(checkpoint or config.checkpoint)
    if path == current.path:
        return current
    new = await asyncio.to_thread(load, path, config.device)
    log.info("%s now serves %s (%s, was %s)", who, new.path, new.model_version, current.model_version)
    return new


DEFAULT_BATCH = BatchConfig()  # batching defaults come from BatchConfig alone (serve.yaml and bench leave them out)


@serve.deployment(max_ongoing_requests=256, user_config=asdict(DEFAULT_BATCH))
class Recommender:
    def __init__(self, config: ServingConfig, explainer: DeploymentHandle | None = None,
                 feedback: DeploymentHandle | None = None):
        self.config = config
        self.loaded = load(config.checkpoint, config.device)  # replaced whole by a rollout (reconfigure)
        self.explainer = explainer
        self.feedback = feedback  # the FeedbackLog; None = no log
        self.shown: list[tuple[str, pb.RecommendResponse, int]] = []  # answers not yet logged as impressions
        self.impressions_lost = 0
        self.flusher: asyncio.Task | None = None
        self.stats = BatchStats()
        self.batch_config = DEFAULT_BATCH  # replaced by reconfigure() when Serve passes a user_config
        self.batch_wait = BatchWait(self.batch_config)
        self.in_flight = 0  # Recommend calls between decoding and answer: the batch and its queue
        log.info("Recommender loaded %s (%s, %d items) on %s", self.loaded.path, self.loaded.model_version,
                 len(self.loaded.catalog.item_index), self.loaded.ckpt.model.item_emb.weight.device)

    async def reconfigure(self, user_config: dict) -> None:
        checkpoint, rest = checkpoint_of(user_config)
        batch = BatchConfig.from_user_config(rest)
        self._rank_batched.set_max_batch_size(batch.max_batch_size)
        self._rank_batched.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        self.batch_config = batch
        self.batch_wait = BatchWait(batch)
        self.loaded = await swap(self.loaded, checkpoint, self.config, "Recommender")

    @serve.batch(max_batch_size=DEFAULT_BATCH.max_batch_size, batch_wait_timeout_s=DEFAULT_BATCH.batch_wait_timeout_s)
    async def _rank_batched(self, jobs: list[tuple[SASRec, Query]]) -> list[Ranked]:
        self.stats.record(len(jobs))
        self._rank_batched.set_batch_wait_timeout_s(self.batch_wait.after(self.in_flight))  # for the next batch
        return rank_each(jobs)

    @rpc(pb.RecommendResponse)
    async def Recommend(self, request: pb.RecommendRequest, grpc_context) -> pb.RecommendResponse:
        loaded = self.loaded  # this call's model, start to end
        query = decode_recommend(request, loaded.catalog, self.config)
        self.in_flight += 1
        try:
            ranked = await self._rank_batched((loaded.ckpt.model, query))
        finally:
            self.in_flight -= 1
        response = encode_recommend(query, ranked, loaded.catalog)
        self._show([(request.user_id, response)])
        return response

    @rpc(pb.RecommendBatchResponse)
    async def RecommendBatch(self, request: pb.RecommendBatchRequest, grpc_context) -> pb.RecommendBatchResponse:
        n = len(request.requests)
        if not 1 <= n <= self.config.max_batch_requests:
            raise InvalidArgument("requests", f"{n} entries, expected 1..{self.config.max_batch_requests}")
        loaded, response = self.loaded, pb.RecommendBatchResponse()
        chunks = answer_in_chunks(request, loaded.ckpt.model, loaded.catalog, self.config,
                                  self.batch_config.max_batch_size, response)
        # Off the event loop: a heavy batch (1,024 users x 1,000 ids) takes about a second of
        # Python and torch, and single Recommends on this replica need the loop several times
        # each. Chunk by chunk in a worker thread, they go on being answered beside it.
        while (size := await asyncio.to_thread(next, chunks, None)) is not None:
            self.stats.record(size)
        self._show(list(zip((r.user_id for r in request.requests), response.responses)))
        return response

    @rpc(pb.FeedbackResponse)
    async def Feedback(self, request: pb.FeedbackRequest, grpc_context) -> pb.FeedbackResponse:
        if self.feedback is None:
            grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            grpc_context.set_details("Feedback: this service runs without a feedback log "
                                     "(start it with --feedback-dir, or args.feedback_dir in the Serve config)")
            return pb.FeedbackResponse()
        decoded = decode_feedback(request, self.config, now_ms())
        response = decoded.response
        if decoded.events.num_rows:
            try:
                response.accepted, response.duplicates = await self.feedback.record.remote(decoded.events)
            except (RayActorError, DeploymentUnavailableError, BackPressureError) as e:  # nothing acknowledged
                _fail(grpc_context, grpc.StatusCode.UNAVAILABLE, "Feedback (no event of this call was "
                      "acknowledged; retry it with the same event_ids)", e)
                return pb.FeedbackResponse()
        return response

    def _show(self, answers: list[tuple[str, pb.RecommendResponse]]) -> None:
        """Queue answers to be logged as impressions by the background flusher (with a log)."""
        if self.feedback is None:
            return
        at = now_ms()
        self.shown.extend((user, response, at) for user, response in answers)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush_impressions())

    async def _flush_impressions(self) -> None:
        """Every impression_flush_s, hand the queued answers to the log, serialized: the log's
        replica turns them into rows, so this replica's CPU stays with Recommend."""
        while self.shown:
            await asyncio.sleep(self.config.impression_flush_s)
            answers, self.shown = self.shown, []
            try:
                await self.feedback.log_impressions.remote(
                    [(user, response.SerializeToString(), at) for user, response, at in answers])
            except Exception as e:  # noqa: BLE001 (impressions are best effort; never fail Recommend)
                self.impressions_lost += len(answers)
                log.warning("%d answers not logged as impressions (%d so far): %s", len(answers),
                            self.impressions_lost, str(e).splitlines()[0][:200])

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
        """Batch sizes formed so far, and the model served (call through a DeploymentHandle)."""
        return {**self.stats.summary(), "batch_config": vars(self.batch_config), "batch_wait_s": self.batch_wait.wait_s,
                "batch_wait_switches": self.batch_wait.switches, "model_version": self.loaded.model_version}


@serve.deployment(max_ongoing_requests=8, max_queued_requests=8)  # past these, Explain is RESOURCE_EXHAUSTED
class Explainer:
    """Explanations on their own replicas: heavy (integrated gradients runs n_steps forward
    and backward passes) and rarer than Recommend, so they scale separately and never queue
    in front of recommendations. Concurrent requests are batched into one attention pass
    and one IG call. Same checkpoint, same model_version as the Recommender."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.loaded = load(config.checkpoint, config.device)  # replaced whole by a rollout (reconfigure)
        self.stats = BatchStats()

    async def reconfigure(self, user_config: dict) -> None:
        checkpoint, rest = checkpoint_of(user_config)
        if rest:
            raise ValueError(f"user_config: unknown keys {sorted(rest)} (the Explainer takes only checkpoint)")
        self.loaded = await swap(self.loaded, checkpoint, self.config, "Explainer")

    async def explain(self, payload: bytes) -> tuple[bytes, str, str]:
        """Serialized ExplainRequest -> (serialized ExplainResponse, status code name or "", details)."""
        return await self._explain_batched(payload)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)  # requests queue while one batch computes
    async def _explain_batched(self, payloads: list[bytes]) -> list[tuple[bytes, str, str]]:
        self.stats.record(len(payloads))
        loaded = self.loaded
        requests = [pb.ExplainRequest.FromString(p) for p in payloads]
        return [_explain_wire(a) for a in answer_explains(requests, loaded.ckpt, loaded.catalog, self.config)]

    def stats_summary(self) -> dict:
        """Explanation batch sizes formed so far, and the model served (call through a DeploymentHandle)."""
        return {**self.stats.summary(), "model_version": self.loaded.model_version}


@serve.deployment(max_ongoing_requests=256)
class FeedbackLog:
    """Writes feedback events and impressions to the log (model/feedback_log.py). Concurrent
    Feedback calls are batched into one durable file write; a call is answered only after
    its events are on disk, so an acknowledged event survives a kill -9 of any replica."""

    def __init__(self, config: ServingConfig):
        self.writer = FeedbackWriter(config.feedback_dir)
        self.recent = RecentIds()
        self.stats = BatchStats()
        log.info("FeedbackLog writes to %s", self.writer.root)

    async def record(self, events: pa.Table) -> tuple[int, int]:
        """Log a call's good events; (written now, duplicates not written again)."""
        return await self._record_batched(events)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _record_batched(self, calls: list[pa.Table]) -> list[tuple[int, int]]:
        self.stats.record(len(calls))
        ids = [e for table in calls for e in table.column("event_id").to_pylist()]
        fresh = self.recent.fresh(ids)
        everything = pa.concat_tables(calls)
        await asyncio.to_thread(self.writer.append, "events", everything.filter(pa.array(fresh)))
        self.recent.add(ids)
        out, start = [], 0
        for table in calls:
            new = int(fresh[start : start + table.num_rows].sum())
            out.append((new, table.num_rows - new))
            start += table.num_rows
        return out

    async def log_impressions(self, answers: list[tuple[str, bytes, int]]) -> None:
        """Recommend answers (user_id, serialized RecommendResponse, time in ms) as impression rows."""
        table = impressions_table([(user, pb.RecommendResponse.FromString(data), at) for user, data, at in answers])
        await asyncio.to_thread(self.writer.append, "impressions", table)

    def stats_summary(self) -> dict:
        return {**self.stats.summary(), "files_written": self.writer.written, "directory": self.writer.root}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _explain_wire(answer: pb.ExplainResponse | Exception) -> tuple[bytes, str, str]:
    """(serialized response, status code name or "", details) for the Recommender to answer with.
    A server fault reaches the client as a short message and an error id; its traceback goes
    to the Explainer's log under that id."""
    if isinstance(answer, InvalidArgument):
        return b"", "INVALID_ARGUMENT", str(answer)
    if isinstance(answer, Exception):
        return b"", "INTERNAL", _logged("Explain", answer)
    return answer.SerializeToString(), "", ""
