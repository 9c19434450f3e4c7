"""Protobuf <-> model inputs: pure functions, no Ray, no gRPC server.

Decoding checks every field and raises `InvalidArgument` naming it; unknown ids are
collected and reported, never fatal.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from attnrec.model.checkpoint import Checkpoint, calibration_codes
from attnrec.model.rerank import Mix, rerank_mixes
from attnrec.serving.config import ServingConfig
from attnrec.v1 import recommender_pb2 as pb

MAX_DETAILS_BYTES = 1024  # an error message's bound: gRPC carries it in a metadata trailer


class InvalidArgument(ValueError):
    """A request field is out of its documented range; the message starts with the field name
    and is at most MAX_DETAILS_BYTES long (long values in it are shortened)."""

    def __init__(self, field: str, problem: str):
        message = f"{field}: {problem}"
        if len(message.encode()) > MAX_DETAILS_BYTES:
            message = message.encode()[: MAX_DETAILS_BYTES - 20].decode(errors="ignore") + " … (shortened)"
        super().__init__(message)
        self.field = field
        self.problem = problem

    def in_entry(self, index: int) -> InvalidArgument:
        """The same error for entry `index` of a RecommendBatch (its field prefixed `requests[i].`)."""
        return InvalidArgument(f"requests[{index}].{self.field}", self.problem)


def shorten(value: str, keep: int = 40) -> str:
    """A value to quote in an error message: its repr, cut after `keep` characters."""
    return repr(value) if len(value) <= keep else f"{value[:keep]!r}… ({len(value.encode())} bytes)"


def check_id_lengths(field: str, ids: Sequence[str], config: ServingConfig) -> None:
    """Ids longer than config.max_id_bytes are refused, naming the field (never echoed whole)."""
    for i in ids:
        if len(i) * 4 > config.max_id_bytes and len(i.encode()) > config.max_id_bytes:
            raise InvalidArgument(field, f"an id of {len(i.encode())} bytes ({shorten(i)}); "
                                         f"at most {config.max_id_bytes} accepted")


@dataclass(frozen=True)
class Query:
    """One decoded user context, in model indices."""

    history: np.ndarray  # known item indices, oldest first, at most the model's window
    seen: np.ndarray  # every known history index (masked unless include_history)
    user: list[np.ndarray] | None  # per user feature: code () or (L,); None when the model has no user token
    k: int
    candidates: np.ndarray | None  # known, eligible candidate indices; None = the whole catalogue
    include_history: bool
    unknown_item_ids: tuple[str, ...]
    unknown_user: bool
    rerank_weight: float = 0.0  # > 0: calibrated re-ranking with this weight
    rerank_mixes: tuple[Mix, ...] = ()  # what calibrated re-ranking balances (model/rerank.py)


@dataclass(frozen=True)
class Ranked:
    """Top items for one query, best first."""

    items: np.ndarray  # (n,) item indices
    scores: np.ndarray  # (n,) logits


class Catalog:
    """External ids <-> indices and user features of one checkpoint (built once per replica)."""

    def __init__(self, ckpt: Checkpoint):
        self.item_ids = np.asarray(("",) + ckpt.items.ids, dtype=object)  # index -> id; 0 = padding
        self.item_index = {item: i + 1 for i, item in enumerate(ckpt.items.ids)}
        self.titles = ("",) + (ckpt.titles or ("",) * len(ckpt.items.ids))  # index -> title, "" = none
        self.user_index = {user: i + 1 for i, user in enumerate(ckpt.users.ids)}
        self.user_codes = ckpt.user_codes if ckpt.config.has_user_token else None
        self.user_encoders = {e.name: e for e in ckpt.user_encoders}
        self.max_len = ckpt.config.max_len
        self.model_version = ckpt.model_version
        feature, codes = calibration_codes(ckpt)
        self.calibration_feature = feature  # the item feature calibrated re-ranking balances, None = none
        self.rerank_mixes = rerank_mixes(codes, ckpt.item_counts)  # () = nothing to calibrate on

    def name(self, index: int) -> str:
        """What people call an item: its title where the data has one, else its id."""
        return self.titles[index] or self.item_ids[index]

    def lookup(self, ids: Sequence[str], unknown: dict[str, None]) -> np.ndarray:
        """Indices of known ids (unknown ones are added to `unknown`, first seen first)."""
        out = []
        for item in ids:
            index = self.item_index.get(item)
            if index is None:
                unknown[item] = None
            else:
                out.append(index)
        return np.asarray(out, dtype=np.int64)

    def user_inputs(self, user_id: str, features: Mapping[str, str]) -> tuple[list[np.ndarray] | None, bool]:
        """The user's feature codes (stored, overridden by request features) and whether user_id was unknown."""
        row = self.user_index.get(user_id, 0) if user_id else 0
        unknown_user = bool(user_id) and row == 0
        if self.user_codes is None:
            return None, unknown_user
        codes = [c[row].copy() for c in self.user_codes]
        names = list(self.user_encoders)
        for name, value in features.items():
            if name not in self.user_encoders:
                raise InvalidArgument(f"user_features[{name}]",  # at most max_id_bytes: checked first
                                      f"not a user feature of this model (known: {names})")
            encoder = self.user_encoders[name]
            try:
                column = pa.array([float(value)]) if encoder.kind == "numeric" else pa.array([value])
                if encoder.kind == "multi":
                    column = pa.array([value.split("|")], pa.list_(pa.string()))
            except ValueError:
                raise InvalidArgument(f"user_features[{name}]", f"expected a number, got {shorten(value)}") from None
            codes[names.index(name)] = encoder.encode(column)[0]
        return codes, unknown_user


def decode_recommend(req: pb.RecommendRequest, catalog: Catalog, config: ServingConfig) -> Query:
    """Check and translate one RecommendRequest; raises InvalidArgument naming the field."""
    if not 1 <= req.k <= config.max_k:
        raise InvalidArgument("k", f"must be between 1 and {config.max_k}, got {req.k}")
    if not req.history and not req.user_id:
        raise InvalidArgument("history", "empty history and no user_id: give at least one")
    if len(req.history) > config.max_history:
        raise InvalidArgument("history", f"{len(req.history)} items, at most {config.max_history} accepted "
                                         f"(the model uses the most recent {catalog.max_len})")
    candidate_ids = req.candidate_item_ids
    if candidate_ids:
        if len(candidate_ids) > config.max_candidates:
            raise InvalidArgument("candidate_item_ids", f"{len(candidate_ids)} ids, at most "
                                                        f"{config.max_candidates} accepted")
        if len(set(candidate_ids)) != len(candidate_ids):
            raise InvalidArgument("candidate_item_ids", "contains duplicate ids")
        if any(not c for c in candidate_ids):
            raise InvalidArgument("candidate_item_ids", "contains an empty id")
    check_id_lengths("user_id", [req.user_id], config)
    for name, value in req.user_features.items():
        check_id_lengths("user_features", [name, value], config)
    unknown: dict[str, None] = {}
    seen = catalog.lookup(req.history, unknown)
    check_id_lengths("history", list(unknown), config)  # known ids are the catalogue's own
    checked = len(unknown)
    candidates = catalog.lookup(candidate_ids, unknown) if candidate_ids else None
    if candidates is not None:
        check_id_lengths("candidate_item_ids", list(unknown)[checked:], config)
    if candidates is not None and not req.include_history:
        candidates = candidates[~np.isin(candidates, seen)]
    user, unknown_user = catalog.user_inputs(req.user_id, req.user_features)
    knows_user = user is not None and ((bool(req.user_id) and not unknown_user) or bool(req.user_features))
    if len(seen) == 0 and not knows_user:
        raise InvalidArgument("history", "no known item in the history and no user features for this user: "
                                         f"nothing to recommend from (unknown ids: "
                                         f"{', '.join(shorten(u) for u in list(unknown)[:10])})")
    rerank_weight = decode_rerank(req, catalog, config)
    return Query(
        history=seen[-catalog.max_len :],
        seen=seen,
        user=user,
        k=req.k,
        candidates=candidates,
        include_history=req.include_history,
        unknown_item_ids=tuple(unknown),
        unknown_user=unknown_user,
        rerank_weight=rerank_weight,
        rerank_mixes=catalog.rerank_mixes if rerank_weight else (),
    )


RERANKS = ("none", "calibrated")


def decode_rerank(req: pb.RecommendRequest, catalog: Catalog, config: ServingConfig) -> float:
    """The calibration weight a request asks for (0 = no re-ranking), server defaults applied."""
    method = req.rerank or config.rerank
    if method not in RERANKS:
        raise InvalidArgument("rerank", f"{shorten(req.rerank)}: expected one of {list(RERANKS)} or empty")
    if not 0 <= req.rerank_weight <= 1:
        raise InvalidArgument("rerank_weight", f"must be within 0..1 (0 = the server's default), got "
                                               f"{req.rerank_weight:g}")
    if method == "none":
        return 0.0
    if not catalog.rerank_mixes:
        raise InvalidArgument("rerank", "this model has no categorical item feature and no item popularity "
                                        "to calibrate on")
    return float(req.rerank_weight or config.rerank_weight)


class RequestIds:
    """Unique answer ids, 32 hex digits: a random prefix per process and a counter (a UUID per
    answer costs a system call for randomness on the Recommend path)."""

    def __init__(self):
        self.pid = -1

    def next(self) -> str:
        if os.getpid() != self.pid:  # a new process (or a fork) draws a new prefix
            self.pid, self.prefix, self.counter = os.getpid(), secrets.token_hex(8), itertools.count()
        return f"{self.prefix}{next(self.counter):016x}"


REQUEST_IDS = RequestIds()


def encode_recommend(query: Query, ranked: Ranked, catalog: Catalog,
                     into: pb.RecommendResponse | None = None) -> pb.RecommendResponse:
    """The response for one query, written into `into` when given (an entry of a
    RecommendBatchResponse: protobuf would copy a finished message added to it)."""
    out = pb.RecommendResponse() if into is None else into
    add = out.items.add
    for item, score in zip(catalog.item_ids[ranked.items].tolist(), ranked.scores.tolist()):
        add(item_id=item, score=score)
    out.unknown_item_ids.extend(query.unknown_item_ids)
    out.model_version = catalog.model_version
    out.history_used = len(query.history)
    out.unknown_user = query.unknown_user
    out.request_id = REQUEST_IDS.next()
    return out


def encode_error(error: InvalidArgument, into: pb.RecommendResponse, index: int) -> None:
    """A failed RecommendBatch entry."""
    into.error.code = "INVALID_ARGUMENT"
    into.error.message = str(error)
    into.error.index = index
