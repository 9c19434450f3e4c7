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
from starlette.requests import Request
from starlette.responses import Response

from attnrec.model.checkpoint import resolve_checkpoint
from attnrec.model.feedback_log import FeedbackWriter
from attnrec.serving.batching import BatchStats, BatchWait
from attnrec.serving.codec import (
    InvalidArgument,
    Query,
    Ranked,
    decode_recommend,
    encode_error,
    encode_recommend,
)
from attnrec.serving.config import BatchConfig, ServingConfig, checkpoint_of
from attnrec.serving.explain_codec import answer_explains
from attnrec.serving.feedback import RecentIds, decode_feedback, impressions_table
from attnrec.serving.loaded import Loaded, load
from attnrec.serving.metrics import ExplainMetrics, FeedbackMetrics, RecommendMetrics
from attnrec.serving.page import Service, Shelf, respond
from attnrec.serving.ranking import answer_in_chunks, rank_each
from attnrec.serving.variants import Split
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
    calls in flight and arriving keep being answered by the old until one reference changes.
    The checkpoint's item index comes with it where config.retrieval says to use one."""
    path = resolve_checkpoint(checkpoint or config.checkpoint)
    if path == current.path:
        return current
    new = await asyncio.to_thread(load, path, config.device, config)
    log.info("%s now serves %s (%s, was %s)", who, new.path, new.model_version, current.model_version)
    return new


# A downstream replica could not take the call (it died, none is up yet, or its queue is full):
# the caller may retry it unchanged (UNAVAILABLE).
UNREACHABLE = (RayActorError, DeploymentUnavailableError, BackPressureError)
DEFAULT_BATCH = BatchConfig()  # batching defaults come from BatchConfig alone (serve.yaml and bench leave them out)


@serve.deployment(max_ongoing_requests=256, user_config=asdict(DEFAULT_BATCH))
class Recommender:
    def __init__(self, config: ServingConfig, explainer: DeploymentHandle | None = None,
                 feedback: DeploymentHandle | None = None,
                 others: dict[str, tuple[DeploymentHandle, DeploymentHandle]] | None = None):
        self.config = config
        self.loaded = load(config.checkpoint, config.device, config)  # replaced whole by a rollout (reconfigure)
        self.feedback = feedback  # the FeedbackLog; None = no log
        # Several models: this replica answers the first itself and hands the others' requests
        # to their own Recommender (and Explain to their own Explainer), by name.
        self.split = Split(config.models)
        self.name = config.models[0].name if config.models else ""
        self.models = {name: recommender for name, (recommender, _) in (others or {}).items()}
        self.explainers = {self.name: explainer, **{name: e for name, (_, e) in (others or {}).items()}}
        self.shown: list[tuple[str, pb.RecommendResponse, int]] = []  # answers not yet logged as impressions
        self.impressions_lost = 0
        self.flusher: asyncio.Task | None = None
        self.stats = BatchStats()
        self.metrics = RecommendMetrics()
        self.batch_config = DEFAULT_BATCH  # replaced by reconfigure() when Serve passes a user_config
        self.batch_wait = BatchWait(self.batch_config)
        self.in_flight = 0  # Recommend calls between decoding and answer: the batch and its queue
        self.page = Service(self.Recommend, self.Explain, self.Feedback, self._shelf, self._page_info)
        self.shelf: tuple[Loaded, Shelf] | None = None  # the page's view of self.loaded's items, made on first use
        log.info("Recommender loaded %s (%s, %d items) on %s, ranking with %s%s", self.loaded.path,
                 self.loaded.model_version, len(self.loaded.catalog.item_index),
                 self.loaded.ckpt.model.item_emb.weight.device,
                 "torch" if self.loaded.encode is None else "ONNX Runtime",
                 f"; models {', '.join(f'{v.name} {v.share:.0%}' for v in config.models)}" if config.models else "")

    async def reconfigure(self, user_config: dict) -> None:
        checkpoint, rest = checkpoint_of(user_config)
        batch = BatchConfig.from_user_config(rest)
        self._rank_batched.set_max_batch_size(batch.max_batch_size)
        self._rank_batched.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        self.batch_config = batch
        self.batch_wait = BatchWait(batch)
        self.loaded = await swap(self.loaded, checkpoint, self.config, "Recommender")

    @serve.batch(max_batch_size=DEFAULT_BATCH.max_batch_size, batch_wait_timeout_s=DEFAULT_BATCH.batch_wait_timeout_s)
    async def _rank_batched(self, jobs: list[tuple[Loaded, Query]]) -> list[Ranked]:
        self.stats.record(len(jobs))
        self.metrics.batch(len(jobs))
        self._rank_batched.set_batch_wait_timeout_s(self.batch_wait.after(self.in_flight))  # for the next batch
        return rank_each(jobs)

    @rpc(pb.RecommendResponse)
    async def Recommend(self, request: pb.RecommendRequest, grpc_context) -> pb.RecommendResponse:
        name = self.split.pick(request.user_id, request.model_name)
        if name == self.name:
            response = await self._recommend(request)
        else:
            data = await self._forward(name, request.SerializeToString(), grpc_context)
            response = pb.RecommendResponse() if data is None else pb.RecommendResponse.FromString(data)
        self.metrics.answered([request], [response])
        if response.request_id:
            self._show([(request.user_id, response)])
        return response

    async def _recommend(self, request: pb.RecommendRequest) -> pb.RecommendResponse:
        loaded = self.loaded  # this call's model, start to end
        query = decode_recommend(request, loaded.catalog, self.config)
        self.in_flight += 1
        try:
            ranked = await self._rank_batched((loaded, query))
        finally:
            self.in_flight -= 1
        return encode_recommend(query, ranked, loaded.catalog)

    async def answer(self, payload: bytes) -> tuple[bytes, str, str]:
        """A Recommend handed over by the ingress (this is another model's Recommender)."""
        return _wire(await _outcome(self._recommend(pb.RecommendRequest.FromString(payload))), "Recommend")

    async def answer_batch(self, payload: bytes, at: list[int]) -> bytes:
        """The entries of a RecommendBatch that the ingress handed over to this model (`at`: their
        indices in the whole call, which errors name)."""
        response = pb.RecommendBatchResponse()
        await self._rank_batch(pb.RecommendBatchRequest.FromString(payload), response, at)
        return response.SerializeToString()

    async def _forward(self, name: str, payload: bytes, grpc_context) -> bytes | None:
        """Another model's Recommend answer through its Recommender; None (status set) when there is none."""
        try:
            data, code, details = await self.models[name].answer.remote(payload)
        except UNREACHABLE as e:
            _fail(grpc_context, grpc.StatusCode.UNAVAILABLE, f"Recommend (model {name})", e)
            return None
        if code:
            grpc_context.set_code(getattr(grpc.StatusCode, code))
            grpc_context.set_details(details)
            return None
        return data

    @rpc(pb.RecommendBatchResponse)
    async def RecommendBatch(self, request: pb.RecommendBatchRequest, grpc_context) -> pb.RecommendBatchResponse:
        n = len(request.requests)
        if not 1 <= n <= self.config.max_batch_requests:
            raise InvalidArgument("requests", f"{n} entries, expected 1..{self.config.max_batch_requests}")
        response = pb.RecommendBatchResponse()
        groups, refused = self._groups(request)
        if not refused and list(groups) == [self.name]:  # every entry is this replica's: no copies
            await self._rank_batch(request, response)
        else:
            entries = [response.responses.add() for _ in range(n)]
            for i, error in refused:
                encode_error(error, entries[i], i)
            await asyncio.gather(*(self._batch_part(name, request, rows, entries) for name, rows in groups.items()))
        self.metrics.answered(request.requests, response.responses)
        self._show([(r.user_id, a) for r, a in zip(request.requests, response.responses) if a.request_id])
        return response

    def _groups(self, request: pb.RecommendBatchRequest) -> tuple[dict[str, list[int]], list]:
        """Entry indices by the model that answers them; and (index, error) of bad model names."""
        groups: dict[str, list[int]] = {}
        refused = []
        for i, r in enumerate(request.requests):
            try:
                groups.setdefault(self.split.pick(r.user_id, r.model_name), []).append(i)
            except InvalidArgument as e:
                refused.append((i, e.in_entry(i)))
        return groups, refused

    async def _batch_part(self, name: str, request: pb.RecommendBatchRequest, rows: list[int],
                          entries: list[pb.RecommendResponse]) -> None:
        """Answer the entries `rows` of a RecommendBatch with model `name` into `entries`."""
        part, answered = pb.RecommendBatchRequest(requests=[request.requests[i] for i in rows]), \
            pb.RecommendBatchResponse()
        if name == self.name:
            await self._rank_batch(part, answered, rows)
        else:
            try:
                answered = pb.RecommendBatchResponse.FromString(
                    await self.models[name].answer_batch.remote(part.SerializeToString(), rows))
            except Exception as e:  # noqa: BLE001 (these entries fail; the rest of the batch is answered)
                message = _logged(f"RecommendBatch (model {name})", e)
                code = "UNAVAILABLE" if isinstance(e, UNREACHABLE) else "INTERNAL"
                for i in rows:
                    entries[i].error.CopyFrom(pb.RequestError(code=code, message=message, index=i))
                return
        for i, answer in zip(rows, answered.responses):
            entries[i].CopyFrom(answer)

    async def _rank_batch(self, request: pb.RecommendBatchRequest, response: pb.RecommendBatchResponse,
                          at: list[int] | None = None) -> None:
        loaded = self.loaded
        chunks = answer_in_chunks(request, loaded.ranker, loaded.catalog, self.config,
                                  self.batch_config.max_batch_size, response, at)
        # Off the event loop: a heavy batch (1,024 users x 1,000 ids) takes about a second of
        # Python and torch, and single Recommends on this replica need the loop several times
        # each. Chunk by chunk in a worker thread, they go on being answered beside it.
        while (size := await asyncio.to_thread(next, chunks, None)) is not None:
            self.stats.record(size)
            self.metrics.batch(size)

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
            except UNREACHABLE as e:  # nothing acknowledged
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
        explainer = self.explainers[self.split.pick(request.user_id, request.model_name)]
        if explainer is None:
            grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            grpc_context.set_details("Explain: this application was built without an Explainer deployment")
            return pb.ExplainResponse()
        try:
            answer: tuple[bytes, str, str] = await explainer.explain.remote(request.SerializeToString())
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

    async def __call__(self, request: Request) -> Response:
        """HTTP: the page for people (serving/page.py), through the same RPC methods."""
        try:
            return await respond(request, self.page)
        except Exception as e:  # noqa: BLE001 (answered as 500 with an error id; the traceback goes to the log)
            return Response(_logged("page", e), status_code=500, media_type="text/plain")

    async def _shelf(self) -> Shelf:
        loaded = self.loaded
        if self.shelf is None or self.shelf[0] is not loaded:  # off the loop: a million titles take a second
            self.shelf = (loaded, await asyncio.to_thread(Shelf.of, loaded.ckpt, loaded.catalog))
        return self.shelf[1]

    def _page_info(self) -> dict:
        return {"model_version": self.loaded.model_version, "models": [v.name for v in self.config.models],
                "feedback": self.feedback is not None, "max_k": self.config.max_k}

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
        # with the Recommender's item index, if it uses one: explanations rank as Recommend does
        self.loaded = load(config.checkpoint, config.device, config)  # replaced whole by a rollout (reconfigure)
        self.stats = BatchStats()
        self.metrics = ExplainMetrics()

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
        answers = answer_explains(requests, loaded.ckpt, loaded.catalog, self.config, ranker=loaded.ranker)
        self.metrics.explained(answers)
        return [_wire(a, "Explain") for a in answers]

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
        self.metrics = FeedbackMetrics()
        log.info("FeedbackLog writes to %s", self.writer.root)

    async def record(self, events: pa.Table) -> tuple[int, int]:
        """Log a call's good events; (written now, duplicates not written again)."""
        return await self._record_batched(events)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _record_batched(self, calls: list[pa.Table]) -> list[tuple[int, int]]:
        self.stats.record(len(calls))
        ids = [e for table in calls for e in table.column("event_id").to_pylist()]
        fresh = self.recent.fresh(ids)
        written = pa.concat_tables(calls).filter(pa.array(fresh))
        await self._write("events", written)
        self.recent.add(ids)
        self.metrics.written(written.column("event_type").to_pylist(), len(ids) - written.num_rows)
        out, start = [], 0
        for table in calls:
            new = int(fresh[start : start + table.num_rows].sum())
            out.append((new, table.num_rows - new))
            start += table.num_rows
        return out

    async def log_impressions(self, answers: list[tuple[str, bytes, int]]) -> None:
        """Recommend answers (user_id, serialized RecommendResponse, time in ms) as impression rows."""
        table = impressions_table([(user, pb.RecommendResponse.FromString(data), at) for user, data, at in answers])
        await self._write("impressions", table)

    async def _write(self, kind: str, table: pa.Table) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self.writer.append, kind, table)
        self.metrics.write_took(kind, 1000 * (time.perf_counter() - started))

    def stats_summary(self) -> dict:
        return {**self.stats.summary(), "files_written": self.writer.written, "directory": self.writer.root}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _outcome(call):
    """What an awaitable returned, or the exception it raised."""
    try:
        return await call
    except Exception as e:  # noqa: BLE001 (handed back to be answered: _wire)
        return e


def _wire(answer, what: str) -> tuple[bytes, str, str]:
    """(serialized response, status code name or "", details) for the ingress to answer with.
    A server fault reaches the client as a short message and an error id; its traceback goes
    to this replica's log under that id."""
    if isinstance(answer, InvalidArgument):
        return b"", "INVALID_ARGUMENT", str(answer)
    if isinstance(answer, Exception):
        return b"", "INTERNAL", _logged(what, answer)
    return answer.SerializeToString(), "", ""
