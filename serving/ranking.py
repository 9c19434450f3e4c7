"""Scoring a batch of decoded queries in one forward pass: pure torch, no Ray.

One `encode` for the whole batch; whole-catalogue queries share one matmul and one
top-k, candidate queries one padded gather. Seen items are masked with a scatter, so
no Python loop runs over catalogue items.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from attnrec.model.inputs import stack_users
from attnrec.model.rerank import CANDIDATES, calibrated
from attnrec.model.retrieval import Ranker, scored_candidates
from attnrec.model.sasrec import PAD
from attnrec.model.sequences import left_pad
from attnrec.serving.codec import (
    Catalog,
    InvalidArgument,
    Query,
    Ranked,
    decode_recommend,
    encode_error,
    encode_recommend,
)
from attnrec.serving.config import ServingConfig
from attnrec.serving.loaded import Loaded
from attnrec.v1 import recommender_pb2 as pb


def _pad(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Right-pad index arrays with 0 into (B, longest)."""
    out = np.zeros((len(rows), max((len(r) for r in rows), default=0) or 1), dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def _mask_seen(scores: torch.Tensor, queries: Sequence[Query]) -> None:
    """Set -inf at padding and, unless include_history, at every seen item. Column = item index."""
    masked = [q.seen if not q.include_history else np.zeros(0, np.int64) for q in queries]
    scores.scatter_(1, torch.as_tensor(_pad(masked), device=scores.device), float("-inf"))
    scores[:, PAD] = float("-inf")


@torch.inference_mode()
def rank(ranker: Ranker, queries: Sequence[Query]) -> list[Ranked]:
    """Top-k per query, best first; fewer than k when fewer items are eligible. A whole-
    catalogue query is answered from the index's candidates where `ranker` has retrieval."""
    if not queries:
        return []
    model, retrieval = ranker.model, ranker.retrieval
    device = model.item_emb.weight.device
    seq = torch.as_tensor(left_pad([q.history for q in queries], model.config.max_len), device=device)
    user = stack_users([q.user for q in queries], model.config.user_features, device)
    state = ranker.states(seq, user)  # (B, D)
    out: list[Ranked | None] = [None] * len(queries)
    full = [i for i, q in enumerate(queries) if q.candidates is None]
    if full and retrieval is None:
        scores = state[full] @ model.all_item_vectors().T  # (F, N+1)
        _mask_seen(scores, [queries[i] for i in full])
        k = min(max(_pool(queries[i]) for i in full), scores.shape[1])
        top_scores, top_items = scores.topk(k, dim=1)  # (F, k)
        _collect(out, full, queries, top_items, top_scores)
    elif full:
        wanted = max(_pool(queries[i]) + len(queries[i].seen) for i in full)
        proposed = retrieval.retriever.search(state[full], max(retrieval.candidates, wanted))  # (F, C), 0 = none
        columns, scores = scored_candidates(model, state[full], proposed)  # exact, as score_all; -inf at none
        seen = np.stack([np.isin(proposed[r], queries[i].seen) & (not queries[i].include_history)
                         for r, i in enumerate(full)])  # what each query has seen
        scores.masked_fill_(torch.as_tensor(seen, device=device), float("-inf"))
        k = min(max(_pool(queries[i]) for i in full), scores.shape[1])
        top_scores, top_pos = scores.topk(k, dim=1)
        _collect(out, full, queries, columns.gather(1, top_pos), top_scores)
    picked = [i for i, q in enumerate(queries) if q.candidates is not None]
    if picked:
        columns = torch.as_tensor(_pad([queries[i].candidates for i in picked]), device=device)  # (P, C)
        scores = torch.einsum("pd,pcd->pc", state[picked], model.item_vectors(columns))  # (P, C)
        scores.masked_fill_(columns == PAD, float("-inf"))  # seen candidates were dropped by the codec
        k = min(max(_pool(queries[i]) for i in picked), scores.shape[1])
        top_scores, top_pos = scores.topk(k, dim=1)  # (P, k)
        _collect(out, picked, queries, columns.gather(1, top_pos), top_scores)
    return out  # type: ignore[return-value]


def rank_each(jobs: Sequence[tuple[Loaded, Query]]) -> list[Ranked]:
    """Rank (loaded checkpoint, query) jobs, one forward pass per checkpoint: a batch formed
    while a replica swaps checkpoints holds queries decoded against either, each ranked by its own."""
    out: list[Ranked | None] = [None] * len(jobs)
    groups: dict[int, list[int]] = {}
    for i, (loaded, _) in enumerate(jobs):
        groups.setdefault(id(loaded), []).append(i)
    for rows in groups.values():
        loaded = jobs[rows[0]][0]
        for i, ranked in zip(rows, rank(loaded.ranker, [jobs[i][1] for i in rows])):
            out[i] = ranked
    return out  # type: ignore[return-value]


def _pool(query: Query) -> int:
    """How many of the best items a query's answer is chosen from."""
    return max(query.k, CANDIDATES) if query.rerank_weight else query.k


def _collect(out: list, rows: list[int], queries: Sequence[Query], items: torch.Tensor, scores: torch.Tensor) -> None:
    items, scores = items.cpu().numpy(), scores.float().cpu().numpy()
    for r, i in enumerate(rows):
        q = queries[i]
        pool = _pool(q)
        keep = np.isfinite(scores[r, :pool])
        best, best_scores = items[r, :pool][keep], scores[r, :pool][keep]
        if q.rerank_weight:
            chosen = calibrated(best, best_scores, q.seen, q.rerank_mixes, q.k, q.rerank_weight)
            best, best_scores = best[chosen], best_scores[chosen]
        out[i] = Ranked(items=best[: q.k], scores=best_scores[: q.k])


def answer_batch(request: pb.RecommendBatchRequest, ranker: Ranker, catalog: Catalog, config: ServingConfig,
                 chunk_size: int) -> tuple[pb.RecommendBatchResponse, list[int]]:
    """RecommendBatch below the server, in one go: the response and the chunk sizes ranked."""
    response = pb.RecommendBatchResponse()
    return response, list(answer_in_chunks(request, ranker, catalog, config, chunk_size, response))


def answer_in_chunks(request: pb.RecommendBatchRequest, ranker: Ranker, catalog: Catalog, config: ServingConfig,
                     chunk_size: int, response: pb.RecommendBatchResponse,
                     at: Sequence[int] | None = None) -> Iterator[int]:
    """RecommendBatch, `chunk_size` entries at a time: each step decodes, ranks and encodes
    one chunk into `response` and yields how many it ranked, so that a server can answer
    other calls between steps. A bad entry gets its own error (its field prefixed with
    `requests[i].`) and never fails the others. The batch's own size is checked by the caller.
    `at`: each entry's index in the call it came from, when `request` is a part of one."""
    entries = [response.responses.add() for _ in request.requests]  # filled in place, never copied
    for start in range(0, len(entries), chunk_size):
        valid: list[tuple[int, Query]] = []
        for i in range(start, min(start + chunk_size, len(entries))):
            try:
                valid.append((i, decode_recommend(request.requests[i], catalog, config)))
            except InvalidArgument as e:
                index = i if at is None else at[i]
                encode_error(e.in_entry(index), entries[i], index)
        if valid:
            for (i, query), ranked in zip(valid, rank(ranker, [q for _, q in valid])):
                encode_recommend(query, ranked, catalog, into=entries[i])
            yield len(valid)
