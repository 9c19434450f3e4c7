"""The page for people, served over Serve's HTTP proxy by the ingress replica: static files at
`/ui/` and a small JSON API under `/ui/api/` that goes through the very RPC methods gRPC
callers reach (same codecs, limits, model split, impressions and errors).

    GET  /ui/                      the page (ui/index.html, page.js, page.css: no CDN, no build step)
    GET  /ui/api/info              the model served, whether feedback is logged, an example history
    GET  /ui/api/recommend         ?history=ID,ID&user_id=U&k=10&model_name=  -> Recommend
    GET  /ui/api/explain           ?history=...&item_id=I                     -> Explain (picture,
                                   counterfactual, feature reasons, sentence)
    GET  /ui/api/items             ?q=TEXT&limit=20: items whose title or id contains TEXT
    POST /ui/api/feedback          a FeedbackRequest as JSON (proto field names) -> Feedback

Everything here but `respond` is plain functions and values: no Ray, no network.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from attnrec.model.checkpoint import Checkpoint
from attnrec.model.features import MISSING
from attnrec.serving.codec import Catalog, InvalidArgument, shorten
from attnrec.v1 import recommender_pb2 as pb

PAGE = "/ui/"
STATIC = Path(__file__).with_name("ui")
FILES = {"": ("index.html", "text/html; charset=utf-8"), "index.html": ("index.html", "text/html; charset=utf-8"),
         "page.js": ("page.js", "text/javascript; charset=utf-8"), "page.css": ("page.css", "text/css; charset=utf-8")}
# Only the page's own files and inline PNG pictures; nothing from elsewhere, nothing inline to run.
HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                      "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501,
               "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}  # any other code: 500
MAX_BODY_BYTES = 256 * 1024  # a Feedback call of the largest allowed size fits many times over
MAX_SEARCH_RESULTS = 50
EXAMPLE_LENGTH = 5


class Outcome:
    """Stands in for the gRPC context an RPC method sets its status on."""

    def __init__(self):
        self.code = grpc.StatusCode.OK
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


# --- requests from query parameters -------------------------------------------------------------

def id_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def integer(params: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31 - 1) -> int:
    value = params.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(name, f"expected a whole number, got {shorten(value)}") from None
    if not low <= number <= high:
        raise InvalidArgument(name, f"must be between {low} and {high}, got {number}")
    return number


def recommend_request(params: Mapping[str, str]) -> pb.RecommendRequest:
    return pb.RecommendRequest(user_id=params.get("user_id", "").strip(), history=id_list(params.get("history", "")),
                               k=integer(params, "k", 10), model_name=params.get("model_name", "").strip())


def explain_request(params: Mapping[str, str]) -> pb.ExplainRequest:
    """An explanation with everything a person reads: the picture, the counterfactual set, the
    feature reasons and the sentence."""
    item = params.get("item_id", "").strip()
    if not item:
        raise InvalidArgument("item_id", "required: the recommended item to explain")
    return pb.ExplainRequest(user_id=params.get("user_id", "").strip(), history=id_list(params.get("history", "")),
                             item_id=item, model_name=params.get("model_name", "").strip(), include_image=True,
                             counterfactual=True, counterfactual_rank=integer(params, "k", 10))


def feedback_request(body: bytes) -> pb.FeedbackRequest:
    try:
        return json_format.Parse(body.decode("utf-8", errors="strict") or "{}", pb.FeedbackRequest())
    except (json_format.ParseError, UnicodeDecodeError) as e:
        raise InvalidArgument("body", f"not a FeedbackRequest as JSON: {shorten(str(e), 200)}") from None


def as_json(message: Message) -> dict:
    """A response as JSON with the proto's field names, empty fields included (bytes as base64)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


# --- what the page shows of items ---------------------------------------------------------------

@dataclass(frozen=True)
class Shelf:
    """A checkpoint's items as people see them: title, feature values, a search by title or id.
    Ids, indices and titles are the replica's Catalog's."""

    catalog: Catalog
    features: tuple[tuple[str, object, np.ndarray], ...]  # (name, encoder, codes (N + 1,) or (N + 1, L))
    haystack: tuple[str, ...]  # lower-cased "title id" per item index - 1, what a search looks in
    popular: tuple[str, ...]  # the most interacted-with items in training, most first

    @staticmethod
    def of(ckpt: Checkpoint, catalog: Catalog) -> Shelf:
        ids = ckpt.items.ids
        features = tuple((e.name, e, getattr(ckpt.model, f"item_codes_{i}").cpu().numpy())
                         for i, e in enumerate(ckpt.item_encoders))
        counts = ckpt.item_counts[1:] if ckpt.item_counts is not None else np.zeros(len(ids))
        popular = tuple(ids[i] for i in np.argsort(-counts, kind="stable")[:EXAMPLE_LENGTH])
        return Shelf(catalog, features, tuple(f"{t} {i}".lower() for t, i in zip(catalog.titles[1:], ids)), popular)

    def card(self, item_id: str) -> dict:
        """{title, features: {name: value}} of an item; {} for an id this model does not know."""
        index = self.catalog.item_index.get(item_id)
        if index is None:
            return {}
        values = {}
        for name, encoder, codes in self.features:
            row = np.atleast_1d(codes[index])
            described = [encoder.describe(int(c)) for c in row if c != MISSING]
            if described:
                values[name] = ", ".join(described)
        return {"title": self.catalog.titles[index], "features": values}

    def cards(self, item_ids) -> dict[str, dict]:
        return {i: c for i in dict.fromkeys(item_ids) if (c := self.card(i))}

    def search(self, text: str, limit: int) -> list[dict]:
        """Items whose title or id contains every word of `text` (an exact id first)."""
        words = text.lower().split()
        if not words:
            return []
        exact = self.catalog.item_index.get(text.strip())
        found = [exact] if exact else []
        for i, hay in enumerate(self.haystack):
            if len(found) >= limit:
                break
            if i + 1 != exact and all(w in hay for w in words):
                found.append(i + 1)
        ids = self.catalog.item_ids
        return [{"item_id": ids[i], **self.card(ids[i])} for i in found[:limit]]


# --- the HTTP layer -------------------------------------------------------------------------------

Rpc = Callable[[Message, Outcome], Awaitable[Message]]


@dataclass(frozen=True)
class Service:
    """What the page reaches of the replica serving it."""

    recommend: Rpc
    explain: Rpc
    feedback: Rpc
    shelf: Callable[[], Awaitable[Shelf]]  # of the model this replica serves now
    info: Callable[[], dict]  # model_version, models, feedback (bool)


def error(status: int, message: str, code: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=HEADERS)


def answered(outcome: Outcome, message: Message, extra: dict | None = None) -> JSONResponse:
    if outcome.code != grpc.StatusCode.OK:
        return error(HTTP_STATUS.get(outcome.code.name, 500), outcome.details, outcome.code.name)
    return JSONResponse({**as_json(message), **(extra or {})}, headers={**HEADERS, "Cache-Control": "no-store"})


def page_path(request: Request) -> str:
    """The request's path below the application's route prefix."""
    path, root = request.url.path, request.scope.get("root_path", "").rstrip("/")
    return path[len(root):] if root and path.startswith(root) else path


async def respond(request: Request, service: Service) -> Response:
    """Answer one HTTP request to the application."""
    path = page_path(request)
    if path in ("", "/", PAGE.rstrip("/")):
        return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}{PAGE}", status_code=307)
    if not path.startswith(PAGE):
        return error(404, f"nothing at {shorten(path, 80)}: the page is at {PAGE}")
    name = path[len(PAGE):]
    params = request.query_params
    try:
        if name.startswith("api/"):
            return await _api(name[4:], request, params, service)
        if request.method != "GET":
            return error(405, f"{request.method} {shorten(path, 80)}: only GET")
        if name not in FILES:
            return error(404, f"nothing at {shorten(path, 80)}")
        file, kind = FILES[name]
        return Response((STATIC / file).read_bytes(), media_type=kind, headers={**HEADERS, "Cache-Control": "no-cache"})
    except InvalidArgument as e:
        return error(400, str(e), "INVALID_ARGUMENT")


async def _api(name: str, request: Request, params: Mapping[str, str], service: Service) -> Response:
    if (request.method == "POST") != (name == "feedback"):
        return error(405, f"{request.method} api/{shorten(name, 40)}: {'POST' if name == 'feedback' else 'GET'} only")
    if name == "info":
        shelf = await service.shelf()
        return JSONResponse({**service.info(), "example_history": list(shelf.popular),
                             "cards": shelf.cards(shelf.popular)}, headers=HEADERS)
    if name == "items":
        limit = integer(params, "limit", 20, 1, MAX_SEARCH_RESULTS)
        shelf = await service.shelf()  # a search reads every title: off the replica's event loop
        found = await asyncio.to_thread(shelf.search, params.get("q", "")[:200], limit)
        return JSONResponse({"items": found}, headers=HEADERS)
    if name == "recommend":
        outcome, request_pb = Outcome(), recommend_request(params)
        response = await service.recommend(request_pb, outcome)
        ids = [i.item_id for i in response.items] + list(request_pb.history)
        return answered(outcome, response, {"cards": (await service.shelf()).cards(ids)})
    if name == "explain":
        outcome, request_pb = Outcome(), explain_request(params)
        response = await service.explain(request_pb, outcome)
        ids = [c.item_id for c in response.contributions] + [response.counterfactual.new_top_item_id, response.item_id]
        return answered(outcome, response, {"cards": (await service.shelf()).cards(i for i in ids if i)})
    if name == "feedback":
        body = await _body(request)
        outcome = Outcome()
        response = await service.feedback(feedback_request(body), outcome)
        return answered(outcome, response)
    return error(404, f"no API call {shorten(name, 40)} (info, recommend, explain, items, feedback)")


async def _body(request: Request) -> bytes:
    size = request.headers.get("content-length", "")
    if size and re.fullmatch(r"\d+", size) and int(size) > MAX_BODY_BYTES:
        raise InvalidArgument("body", f"{size} bytes, at most {MAX_BODY_BYTES} accepted")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidArgument("body", f"more than {MAX_BODY_BYTES} bytes")
    return body

