"""ExplainRequest -> explanation -> ExplainResponse: pure functions (no Ray, no server)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnrec.explain.config import ExplainConfig
from attnrec.explain.evaluate import top_k
from attnrec.explain.explain import Explanation, explain_batch
from attnrec.explain.faithfulness import scores_without
from attnrec.explain.features import feature_attributions
from attnrec.explain.render import html_page, png
from attnrec.model.checkpoint import Checkpoint
from attnrec.serving.codec import Catalog, InvalidArgument, decode_recommend
from attnrec.serving.config import ServingConfig
from attnrec.serving.ranking import rank
from attnrec.v1 import recommender_pb2 as pb

USER_TOKEN = "<user>"
FAITHFULNESS_K = 3
RANDOM_DRAWS = 5


METHODS = ("ig", "deletion", "combined")  # the costly ones; attention and rollout always come along


@dataclass(frozen=True)
class ExplainQuery:
    history: np.ndarray  # known item indices within the window, oldest first
    user: list[np.ndarray] | None
    targets: tuple[int, ...]  # item indices to explain: the requested item, or the top-k recommendations
    n_steps: int
    integrated: bool  # run IG
    deletion: bool  # run deletion (also needed by combined and faithfulness)
    include_image: bool
    include_html: bool
    include_faithfulness: bool
    unknown_item_ids: tuple[str, ...]


def decode_explain(req: pb.ExplainRequest, model, catalog: Catalog, config: ServingConfig) -> ExplainQuery:
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
    if req.item_id and req.item_id not in catalog.item_index:
        raise InvalidArgument("item_id", f"unknown item {req.item_id!r}")
    query = decode_recommend(pb.RecommendRequest(user_id=req.user_id, history=req.history, k=top_k,
                                                 user_features=req.user_features), catalog, config)
    if len(query.history) == 0:
        raise InvalidArgument("history", "no known item in the history: there is nothing to explain")
    targets = (catalog.item_index[req.item_id],) if req.item_id else tuple(int(i) for i in rank(model, [query])[0].items)
    return ExplainQuery(query.history, query.user, targets, n_steps, "ig" in methods,
                        bool(methods & {"deletion", "combined"}) or req.include_faithfulness, req.include_image,
                        req.include_html, req.include_faithfulness, query.unknown_item_ids)


def faithfulness(model, q: ExplainQuery, e: Explanation, seed: int = 0) -> pb.Faithfulness:
    """Logit drop when the top-k positions by combined score, the k most recent, or k random are removed."""
    T = len(q.history)
    k = min(FAITHFULNESS_K, T)
    rng = np.random.default_rng(seed)
    removals = [top_k(e.combined[e.item_slice], k), np.arange(T - k, T)]
    removals += [rng.choice(T, size=k, replace=False) for _ in range(RANDOM_DRAWS)]
    logits, _, full, _ = scores_without(model, q.history, q.user, e.target, removals)
    drops = full - logits
    return pb.Faithfulness(k=k, combined_drop=drops[0], recent_drop=drops[1], random_drop=float(drops[2:].mean()))


def encode_explain(q: ExplainQuery, e: Explanation, ckpt: Checkpoint, catalog: Catalog) -> pb.ExplainResponse:
    items = catalog.item_ids[q.history].tolist()
    labels = ([USER_TOKEN] if e.has_user_token else []) + items
    positions = ([-1] if e.has_user_token else []) + list(range(len(items)))
    contributions = [
        pb.Contribution(item_id=label, position=pos, attention=e.attention[i], attention_heads=e.attention_heads[:, i],
                        rollout=e.rollout[i], attribution=e.attribution[i], combined=e.combined[i],
                        deletion=e.deletion[i])
        for i, (label, pos) in enumerate(zip(labels, positions))
    ]
    features = []
    if q.integrated:
        with torch.no_grad():
            item_codes = [c.cpu().numpy() for c in ckpt.model.item_codes(torch.as_tensor(q.history))]
        features = feature_attributions(e.part_attribution, items, item_codes, q.user, ckpt.item_encoders,
                                        ckpt.user_encoders)
    title = f"why item {catalog.item_ids[e.target]} (score {e.score:.2f})"
    picture = png(e, labels, title) if (q.include_image or q.include_html) else b""
    response = pb.ExplainResponse(
        item_id=catalog.item_ids[e.target], score=e.score, contributions=contributions,
        feature_attributions=[pb.FeatureAttribution(feature=f, value=v, attribution=a) for f, v, a in features],
        n_steps=e.n_steps, image_png=picture if q.include_image else b"",
        html=html_page(e, labels, title, features, picture) if q.include_html else "",
        unknown_item_ids=q.unknown_item_ids, model_version=catalog.model_version,
    )
    if e.convergence_delta is not None:  # unset when IG did not run
        response.convergence_delta = e.convergence_delta
        response.baseline_score = e.baseline_score
    return response


def answer_explains(requests: list[pb.ExplainRequest], ckpt: Checkpoint, catalog: Catalog, config: ServingConfig,
                    explain_config: ExplainConfig = ExplainConfig()) -> list[pb.ExplainResponse | InvalidArgument]:
    """Several Explain RPCs below the Ray layer: each answer, or the InvalidArgument it earned.
    Requests with the same n_steps are explained together (one attention pass, one IG call)."""
    model = ckpt.model
    answers: list[pb.ExplainResponse | InvalidArgument | None] = [None] * len(requests)
    jobs: dict[tuple[int, bool, bool], list[tuple[int, ExplainQuery, int]]] = {}
    for i, req in enumerate(requests):
        try:
            q = decode_explain(req, model, catalog, config)
        except InvalidArgument as e:
            answers[i] = e
            continue
        for target in q.targets:  # the top-k of one request are explained in the same batch
            jobs.setdefault((q.n_steps, q.integrated, q.deletion), []).append((i, q, target))
    for (n_steps, integrated, deletion), group in jobs.items():
        explanations = explain_batch(model, [q.history for _, q, _ in group], [q.user for _, q, _ in group],
                                     [t for _, _, t in group], explain_config, n_steps, integrated, deletion)
        for (i, q, _), e in zip(group, explanations):
            response = encode_explain(q, e, ckpt, catalog)
            if q.include_faithfulness:
                response.faithfulness.CopyFrom(faithfulness(model, q, e))
            if answers[i] is None:
                answers[i] = response
            else:
                answers[i].more.append(response)
    return answers  # type: ignore[return-value]


def answer_explain(req: pb.ExplainRequest, ckpt: Checkpoint, catalog: Catalog, config: ServingConfig,
                   explain_config: ExplainConfig = ExplainConfig()) -> pb.ExplainResponse:
    """One Explain RPC below the Ray layer; raises InvalidArgument for bad input."""
    answer = answer_explains([req], ckpt, catalog, config, explain_config)[0]
    if isinstance(answer, InvalidArgument):
        raise answer
    return answer
