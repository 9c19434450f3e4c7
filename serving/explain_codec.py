"""ExplainRequest -> explain jobs -> ExplainResponse: pure functions (no Ray, no server).

serving/ only decodes and encodes here; grouping, explaining and measuring are
explain.jobs'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from attnrec.explain.config import ExplainConfig
from attnrec.explain.counterfactual import Counterfactual, CounterfactualConfig
from attnrec.explain.jobs import Explained, ExplainJob, explain_jobs
from attnrec.explain.reason import reason
from attnrec.explain.render import html_page, png
from attnrec.model.checkpoint import Checkpoint
from attnrec.model.retrieval import Ranker
from attnrec.serving.codec import Catalog, InvalidArgument, decode_recommend, shorten
from attnrec.serving.config import ServingConfig
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

log = logging.getLogger(__name__)

USER_TOKEN = "<user>"
MAX_COUNTERFACTUAL_SIZE = 10  # the search grows with it; past 10 an answer says little to a person
METHODS = ("ig", "deletion", "combined")  # the costly ones; attention and rollout always come along


@dataclass(frozen=True)
class ExplainQuery:
    """A decoded ExplainRequest: the job for explain/, and what the answer should carry."""

    job: ExplainJob
    include_image: bool
    include_html: bool
    unknown_item_ids: tuple[str, ...]
    request: pb.ExplainRequest  # as sent: counterfactuals name its history entries
    known_at: tuple[int, ...]  # where each known history item sits in request.history


def decode_explain(req: pb.ExplainRequest, ranker: Ranker, catalog: Catalog, config: ServingConfig) -> ExplainQuery:
    """`ranker`: how the Recommend replicas rank, which the user's top items follow."""
    n_steps = req.n_steps or config.default_n_steps
    if not 4 <= n_steps <= config.max_n_steps:
        raise InvalidArgument("n_steps", f"must be 0 (default {config.default_n_steps}) or 4..{config.max_n_steps}, "
                                         f"got {req.n_steps}")
    unknown_methods = set(req.methods) - set(METHODS)
    if unknown_methods:
        raise InvalidArgument("methods", f"unknown {sorted(unknown_methods)}; choose from {list(METHODS)}")
    methods = set(req.methods or METHODS)
    top_k = req.top_k or 1
    if not 1 <= top_k <= config.max_explain_top_k:
        raise InvalidArgument("top_k", f"must be 0 (= 1) or 1..{config.max_explain_top_k}, got {req.top_k}")
    max_size = req.counterfactual_max_size or CounterfactualConfig.max_size
    if not 1 <= max_size <= MAX_COUNTERFACTUAL_SIZE:
        raise InvalidArgument("counterfactual_max_size", f"must be 0 (= {CounterfactualConfig.max_size}) "
                              f"or 1..{MAX_COUNTERFACTUAL_SIZE}, got {req.counterfactual_max_size}")
    leave = req.counterfactual_rank or CounterfactualConfig.k
    if not 1 <= leave <= config.max_k:
        raise InvalidArgument("counterfactual_rank", f"must be 0 (= {CounterfactualConfig.k}) "
                              f"or 1..{config.max_k}, got {req.counterfactual_rank}")
    if req.item_id and req.item_id not in catalog.item_index:
        raise InvalidArgument("item_id", f"unknown item {shorten(req.item_id)}")
    query = decode_recommend(pb.RecommendRequest(user_id=req.user_id, history=req.history, k=top_k,
                                                 user_features=req.user_features), catalog, config)
    if len(query.history) == 0:
        raise InvalidArgument("history", "no known item in the history: there is nothing to explain")
    if req.item_id:
        targets = (catalog.item_index[req.item_id],)
    else:  # the user's top_k recommendations, best first
        targets = tuple(int(i) for i in rank(ranker, [query])[0].items)
    integrated = "ig" in methods
    job = ExplainJob(query.history, query.user, targets, n_steps, integrated,
                     deletion=bool(methods & {"deletion", "combined"}) or req.include_faithfulness,
                     faithfulness=req.include_faithfulness, seen=query.seen,
                     counterfactual=CounterfactualConfig(max_size, leave) if req.counterfactual else None)
    known_at = tuple(i for i, h in enumerate(req.history) if h in catalog.item_index)
    return ExplainQuery(job, req.include_image, req.include_html, query.unknown_item_ids, req, known_at)


def checked_counterfactual(q: ExplainQuery, found: Counterfactual, target: int, ranker: Ranker, catalog: Catalog,
                           config: ServingConfig) -> pb.Counterfactual:
    """The search's answer in the request's terms, after the check a caller would make: Recommend
    with those history entries left out and k = the rank must not return the item. A set that
    fails it (possible only when the server re-ranks by default) is not returned."""
    positions = [q.known_at[p] for p in found.positions]
    out = pb.Counterfactual(found=found.found, positions=positions,
                            item_ids=[q.request.history[p] for p in positions],
                            new_top_item_id=catalog.item_ids[found.new_top], new_rank=found.new_rank,
                            sets_scored=found.sets_scored)
    if not found.found:
        return out
    drop = set(positions)
    without = pb.RecommendRequest(user_id=q.request.user_id, user_features=q.request.user_features,
                                  history=[h for i, h in enumerate(q.request.history) if i not in drop],
                                  k=q.job.counterfactual.k)
    try:
        still = target in rank(ranker, [decode_recommend(without, catalog, config)])[0].items
    except InvalidArgument:  # a request Recommend would refuse: nothing to check the set against
        still = True
    if still:
        log.warning("a counterfactual set did not survive the check through Recommend; answered as not found")
        return pb.Counterfactual(found=False, new_top_item_id=out.new_top_item_id, sets_scored=found.sets_scored)
    return out


def _marked(q: ExplainQuery, cf: pb.Counterfactual | None, user_token: bool,
            catalog: Catalog) -> tuple[frozenset[int], str]:
    """The picture's columns of a found counterfactual set, and the line that says what they mean."""
    if cf is None or not cf.found:
        return frozenset(), ""
    first = len(q.known_at) - len(q.job.history)  # where the explained window starts among known items
    columns = {q.known_at.index(p) - first + user_token for p in cf.positions}
    outside = len(cf.positions) - len({c for c in columns if c >= user_token})
    note = (f"without the {len(cf.positions)} marked item{'s' * (len(cf.positions) > 1)}"
            f"{f' ({outside} older than the window shown)' if outside else ''} it would rank {cf.new_rank}, "
            f"not in the top {q.job.counterfactual.k}; first would be "
            f"{_short(catalog.name(catalog.item_index[cf.new_top_item_id]), 60)}")
    return frozenset(c for c in columns if c >= user_token), note


REASON_ITEMS = 2  # history items a reason names when no counterfactual was found
PICTURE_LABEL_CHARS = 36  # a history item's label under the picture's columns
REASON_FEATURES = 2


def _short(text: str, keep: int) -> str:
    return text if len(text) <= keep else text[: keep - 1] + "…"


def _reason(e, labels: list[str], reasons: list, cf: pb.Counterfactual | None, leave: int | None,
            catalog: Catalog) -> str:
    """The sentence of `explain.reason` from what this explanation measured, naming history
    items by `labels` (`leave`: the rank a counterfactual was asked to take the item out of)."""
    if cf is not None and cf.found:
        items, k = [catalog.name(catalog.item_index[i]) for i in cf.item_ids], leave
    else:
        scores = e.combined if e.deletion.any() else e.attribution if e.convergence_delta is not None else None
        if scores is None:
            return ""
        s = e.item_slice
        history = np.asarray(labels[s.start :])
        best = [i for i in np.argsort(-scores[s], kind="stable")[:REASON_ITEMS] if scores[s][i] > 0]
        items, k = history[sorted(best)].tolist(), None
    named = [(r.feature, r.value) for r in reasons if r.score_drop > 0]  # values whose absence lowers the item
    return reason(items, named[:REASON_FEATURES], k)


def encode_explain(q: ExplainQuery, x: Explained, catalog: Catalog,
                   counterfactual: pb.Counterfactual | None = None) -> pb.ExplainResponse:
    """The answer for one explained item; `counterfactual` (checked) is carried and drawn."""
    e = x.explanation
    items = catalog.item_ids[q.job.history].tolist()
    labels = ([USER_TOKEN] if e.has_user_token else []) + items
    positions = ([-1] if e.has_user_token else []) + list(range(len(items)))
    removed, note = _marked(q, counterfactual, e.has_user_token, catalog)
    mattering = [f"{r.feature} {r.value} (rank {r.rank_without} without it)" for r in x.reasons
                 if r.score_drop > 0][:3]
    if mattering:  # the picture names the side features whose absence lowers the item most
        note = "\n".join(filter(None, [note, "features that matter most: " + ", ".join(mattering)]))
    contributions = [
        pb.Contribution(item_id=label, position=pos, attention=e.attention[i], attention_heads=e.attention_heads[:, i],
                        rollout=e.rollout[i], attribution=e.attribution[i], combined=e.combined[i],
                        deletion=e.deletion[i])
        for i, (label, pos) in enumerate(zip(labels, positions))
    ]
    # people read titles where the data has them; the answer's fields keep the ids
    names = ([USER_TOKEN] if e.has_user_token else []) + [catalog.name(i) for i in q.job.history]
    title = f"why {_short(catalog.name(e.target), 60)} (score {e.score:.2f})"
    sentence = _reason(e, names, x.reasons, counterfactual, q.job.counterfactual.k if q.job.counterfactual else None,
                       catalog)
    shown = [_short(n, PICTURE_LABEL_CHARS) for n in names]
    picture = png(e, shown, title, removed, note) if (q.include_image or q.include_html) else b""
    response = pb.ExplainResponse(
        item_id=catalog.item_ids[e.target], score=e.score, contributions=contributions,
        feature_attributions=[pb.FeatureAttribution(feature=f, value=v, attribution=a) for f, v, a in x.features],
        n_steps=e.n_steps, image_png=picture if q.include_image else b"",
        html=html_page(e, names, title, x.features, picture, removed, note, sentence) if q.include_html else "",
        unknown_item_ids=q.unknown_item_ids, model_version=catalog.model_version,
    )
    response.reason = sentence
    response.feature_reasons.extend(
        pb.FeatureReason(feature=r.feature, value=r.value, score_drop=r.score_drop, rank_without=r.rank_without,
                         rank_now=r.rank_now,
                         attribution=r.attribution, item_ids=r.items) for r in x.reasons)
    if counterfactual is not None:
        response.counterfactual.CopyFrom(counterfactual)
    if e.convergence_delta is not None:  # unset when IG did not run
        response.convergence_delta = e.convergence_delta
        response.baseline_score = e.baseline_score
    if (f := x.faithfulness) is not None:
        response.faithfulness.CopyFrom(pb.Faithfulness(k=f.k, combined_drop=f.combined_drop,
                                                       recent_drop=f.recent_drop, random_drop=f.random_drop))
    return response


def answer_explains(requests: list[pb.ExplainRequest], ckpt: Checkpoint, catalog: Catalog, config: ServingConfig,
                    explain_config: ExplainConfig = ExplainConfig(),
                    ranker: Ranker | None = None) -> list[pb.ExplainResponse | Exception]:
    """Several Explain RPCs below the Ray layer: each answer, or the exception it alone earned
    (InvalidArgument for bad input). The top-k of one request are explained in the same batch.
    `ranker`: how the Recommend replicas rank (None = exact scoring by `ckpt.model`)."""
    ranker = ranker or Ranker(ckpt.model)
    answers: list[pb.ExplainResponse | Exception | None] = [None] * len(requests)
    queries: dict[int, ExplainQuery] = {}
    for i, req in enumerate(requests):
        try:
            queries[i] = decode_explain(req, ranker, catalog, config)
        except Exception as e:  # noqa: BLE001 (InvalidArgument, or a fault of this request only)
            answers[i] = e
    explained = explain_jobs(ckpt, [q.job for q in queries.values()], explain_config, ranker.retrieval)
    for (i, q), result in zip(queries.items(), explained):
        if isinstance(result, Exception):
            answers[i] = result
            continue
        try:
            checked = [None if x.counterfactual is None else checked_counterfactual(
                q, x.counterfactual, x.explanation.target, ranker, catalog, config)
                for x in result]
            first, *more = (encode_explain(q, x, catalog, c) for x, c in zip(result, checked))
            first.more.extend(more)
            answers[i] = first
        except Exception as e:  # noqa: BLE001 (drawing or encoding failed for this request only)
            answers[i] = e
    return answers  # type: ignore[return-value]


def answer_explain(req: pb.ExplainRequest, ckpt: Checkpoint, catalog: Catalog, config: ServingConfig,
                   explain_config: ExplainConfig = ExplainConfig()) -> pb.ExplainResponse:
    """One Explain RPC below the Ray layer; raises what it earned (InvalidArgument for bad input)."""
    answer = answer_explains([req], ckpt, catalog, config, explain_config)[0]
    if isinstance(answer, Exception):
        raise answer
    return answer
