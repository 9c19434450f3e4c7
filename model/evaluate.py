"""Offline evaluation: leave-one-out by time, full ranking over all items, seen items masked.

A target's rank is the number of items scored above it, plus items scored equal to it
with a smaller index (ties broken by index, the same for every method, so that a
constant-score baseline is not flattered). HR@K = rank < K; NDCG@K = 1/log2(rank + 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnrec.model.beyond import calibration_kl, catalogue_report, group_table, history_buckets, per_user_metrics
from attnrec.model.data import DataError
from attnrec.model.inputs import user_input
from attnrec.model.rerank import CANDIDATES, Mix, rerank_mixes, rerank_top
from attnrec.model.sequences import Split, left_pad

K = 10


@dataclass(frozen=True)
class EvalCase:
    """What is asked of a method for each evaluated user."""

    rows: np.ndarray  # rows of split.full
    histories: list[np.ndarray]  # model input (item indices, oldest first)
    targets: np.ndarray  # held-out item per user


def cases(split: Split, stage: str = "test") -> EvalCase:
    """`test`: history = all but the last item; `valid`: all but the last two."""
    drop = {"test": 1, "valid": 2}[stage]
    rows = split.eval_rows
    seqs = [split.full.get(r) for r in rows]
    return EvalCase(rows, [s[:-drop] for s in seqs], np.array([s[-drop] for s in seqs], dtype=np.int64))


def _mask_seen(scores: torch.Tensor, seen: Sequence[np.ndarray]) -> torch.Tensor:
    """A copy of scores (B, N+1) with padding and each user's seen items at -inf."""
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    rows = torch.as_tensor(np.repeat(np.arange(len(seen)), [len(s) for s in seen]), dtype=torch.long)
    cols = torch.as_tensor(np.concatenate(seen) if len(seen) else np.zeros(0, np.int64), dtype=torch.long)
    scores[rows, cols.to(scores.device)] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: Sequence[np.ndarray]) -> torch.Tensor:
    """Rank (0 = best) of each target among all items, seen items and padding excluded.

    scores (B, N+1), targets (B,), seen[b] = item indices of user b's history.
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1), before a repeated target is masked
    scores = _mask_seen(scores, seen)
    index = torch.arange(scores.shape[1], device=scores.device)[None, :]  # (1, N+1)
    above = (scores > target_scores) | ((scores == target_scores) & (index < targets[:, None]))
    return above.sum(1)


def ranking_metrics(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        f"HR@{k}": float((ranks < k).mean()) if len(ranks) else 0.0,
        f"NDCG@{k}": float(np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0).mean()) if len(ranks) else 0.0,
        "users": int(len(ranks)),
    }


Scorer = Callable[[list[np.ndarray], np.ndarray], torch.Tensor]  # (histories, rows) -> (B, N+1) scores


def ranks_and_top(scorer: Scorer, case: EvalCase, k: int = K,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's target rank (U,), top-k unseen items (U, k) best first (0 where fewer), and
    their scores (U, k)."""
    ranks, tops, top_scores = [], [], []
    for start in range(0, len(case.targets), batch_size):
        hist = case.histories[start : start + batch_size]
        scores = scorer(hist, case.rows[start : start + batch_size])
        targets = torch.as_tensor(case.targets[start : start + batch_size], device=scores.device)
        ranks.append(target_ranks(scores, targets, hist).cpu().numpy())
        best, items = _mask_seen(scores, hist).topk(min(k, scores.shape[1]), dim=1)  # (B, k)
        tops.append(torch.where(torch.isfinite(best), items, 0).cpu().numpy())
        top_scores.append(best.cpu().numpy())
    if not ranks:
        return np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(ranks), np.concatenate(tops), np.concatenate(top_scores)


def evaluate(scorer: Scorer, case: EvalCase, batch_size: int = 256) -> dict[str, float]:
    """Full-ranking HR@10 and NDCG@10 of a scorer on the held-out items."""
    return ranking_metrics(ranks_and_top(scorer, case, batch_size=batch_size)[0])


def model_scorer(model: torch.nn.Module, user_inputs: Callable[[np.ndarray], list | None]) -> Scorer:
    """Score every item with a SASRec; user_inputs maps rows of the split to the model's user input."""
    device = next(model.parameters()).device

    @torch.inference_mode()
    def score(histories: list[np.ndarray], rows: np.ndarray) -> torch.Tensor:
        seq = torch.as_tensor(left_pad(histories, model.config.max_len), device=device)
        return model.score_all(seq, user_inputs(rows)).float()

    return score


def two_stage_scorer(model: torch.nn.Module, user_inputs: Callable[[np.ndarray], list | None], retriever,
                     candidates: int) -> Scorer:
    """Scores as two-stage serving ranks (model/retrieval.py): the index's candidates get their
    exact scores, every other item -inf. Room is left for each user's seen items, as serving does."""
    from attnrec.model.retrieval import scored_candidates

    device = next(model.parameters()).device

    @torch.inference_mode()
    def score(histories: list[np.ndarray], rows: np.ndarray) -> torch.Tensor:
        seq = torch.as_tensor(left_pad(histories, model.config.max_len), device=device)
        state = model.encode(seq, user_inputs(rows))
        proposed = retriever.search(state, candidates + max(len(h) for h in histories))
        columns, exact = scored_candidates(model, state, proposed)  # -inf where none was proposed (column 0)
        scores = torch.full((len(histories), model.config.n_items + 1), float("-inf"), device=device)
        return scores.scatter_(1, columns, exact).float()

    return score


def popularity_counts(split: Split, n_items: int, stage: str = "test") -> np.ndarray:
    """Interactions per item index over everything a model evaluated at this stage may see."""
    counts = np.bincount(split.train.items, minlength=n_items + 1).astype(np.float32)
    if stage == "test":  # the validation items are part of the test-time history
        counts += np.bincount(cases(split, "valid").targets, minlength=n_items + 1)
    return counts


def popularity_scorer(split: Split, n_items: int, stage: str = "test") -> Scorer:
    """Interaction counts over everything a model trained for this stage may see."""
    table = torch.as_tensor(popularity_counts(split, n_items, stage))

    def score(histories: list[np.ndarray], rows: np.ndarray) -> torch.Tensor:
        return table.expand(len(histories), -1)

    return score


def evaluate_checkpoint(directory, tables, device: str = "auto", history_limit: int | None = None,
                        calibration_feature: str | None = None, rerank_weights: Sequence[float] = (),
                        retrieval_candidates: int = 0) -> dict:
    """Test-stage metrics of a saved model and of popularity on the same split.

    Items the checkpoint does not know are dropped from the histories (and counted); a user
    whose newest interaction is with such an item is not scored (and counted), rather than
    scored on an older item.
    `history_limit` keeps only each user's most recent items (a short-history / cold-user test).
    User features come from `tables.users` when given (encoded with the checkpoint's
    encoders), otherwise from the checkpoint's own users table.
    `retrieval_candidates` > 0 ranks through the checkpoint's item index, as two-stage serving
    does with that many candidates (a checkpoint without an index for its weights is an error)."""
    from attnrec.model.checkpoint import calibration_codes, feature_codes, load_checkpoint
    from attnrec.model.sequences import Vocab, build_sequences, leave_one_out, newest_item_known
    from attnrec.model.train import resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(directory, dev)
    version = ckpt.model_version  # of the weights as saved, before item codes are re-encoded below
    users = Vocab.from_columns(tables.interactions.column("user_id"))
    seqs, dropped = build_sequences(tables.interactions, ckpt.items, users)
    split = leave_one_out(seqs)
    if tables.items is not None and ckpt.item_encoders:
        codes = feature_codes(tables.items, "item_id", ckpt.items, ckpt.item_encoders)
        ckpt.model.set_item_codes([torch.as_tensor(c, device=dev) for c in codes])
    if tables.users is not None:
        user_codes = feature_codes(tables.users, "user_id", users, ckpt.user_encoders)
    else:  # rows of the checkpoint's own user table, 0 (unknown) for users it has not seen
        known = ckpt.users.lookup(users.ids)
        user_codes = [c[np.r_[0, known]] for c in ckpt.user_codes]

    def user_inputs(rows: np.ndarray) -> list | None:
        if not ckpt.config.has_user_token:
            return None
        return user_input(user_codes, split.full.users[rows], dev)

    test = cases(split, "test")
    scorable = newest_item_known(tables.interactions, ckpt.items, users)[split.full.users[test.rows]]
    test = EvalCase(test.rows[scorable], [h for h, s in zip(test.histories, scorable) if s], test.targets[scorable])
    if history_limit:  # short-history users: only the most recent items are given (and masked)
        test = EvalCase(test.rows, [h[-history_limit:] for h in test.histories], test.targets)
    scorer = model_scorer(ckpt.model, user_inputs)
    if retrieval_candidates:
        from attnrec.model.retrieval import load_retriever

        retriever = load_retriever(directory, version, len(ckpt.items))
        if retriever is None:
            raise DataError(f"{directory}: no item index for these weights; build one with `attnrec index`")
        scorer = two_stage_scorer(ckpt.model, user_inputs, retriever, retrieval_candidates)
    model_ranks, candidates, candidate_scores = ranks_and_top(scorer, test, k=CANDIDATES if rerank_weights else K)
    model_top = candidates[:, :K]
    popularity_ranks, _, _ = ranks_and_top(popularity_scorer(split, len(ckpt.items), "test"), test)
    counts = popularity_counts(split, len(ckpt.items), "test")
    ndcg, hr = per_user_metrics(model_ranks)
    tables = {"history_length": group_table(ndcg, hr, history_buckets([len(h) for h in test.histories]))}
    if ckpt.config.has_user_token:
        users_of = split.full.users[test.rows]
        for e, codes in zip(ckpt.user_encoders, user_codes):
            if e.kind != "multi":
                order = [e.describe(c) for c in range(e.cardinality)]
                tables[e.name] = group_table(ndcg, hr, [e.describe(int(c)) for c in codes[users_of]], order)
    feature, item_codes = calibration_codes(ckpt, calibration_feature)
    mixes = rerank_mixes(item_codes, counts)  # the same for every weight of the curve
    return {
        "checkpoint": str(directory),
        "model_version": version,
        "n_items": len(ckpt.items),
        "dropped_unknown_interactions": dropped,
        "history_limit": history_limit,
        "retrieval_candidates": retrieval_candidates,  # 0 = exact scoring of the whole catalogue
        # users that could not be scored as asked, and why (none of them is in the figures)
        "not_scored": {"fewer_than_3_known_interactions": int(len(split.full) - len(split.eval_rows)),
                       "newest_item_unknown_to_the_model": int((~scorable).sum())},
        "model": ranking_metrics(model_ranks),
        "popularity": ranking_metrics(popularity_ranks),
        "groups": {feature: table for feature, (table, _) in tables.items()},
        "group_gaps": {feature: gap for feature, (_, gap) in tables.items()},
        "beyond_accuracy": {
            **catalogue_report(model_top, test.targets, counts),
            "calibration_feature": feature,
            "calibration_kl": None if item_codes is None else calibration_kl(test.histories, model_top, item_codes),
        },
        "rerank_curve": [] if item_codes is None else [
            rerank_point(w, candidates, candidate_scores, test, item_codes, counts, mixes) for w in rerank_weights],
    }


def rerank_point(weight: float, candidates: np.ndarray, scores: np.ndarray, test: EvalCase, codes: np.ndarray,
                 counts: np.ndarray, mixes: Sequence[Mix]) -> dict:
    """Accuracy, calibration and catalogue figures of the calibrated top 10 at one weight (mixes
    from `rerank_mixes`, the popularity mix from the same counts the long-tail share is measured on)."""
    top = rerank_top(candidates, scores, test.histories, mixes, K, weight)
    hit = top == test.targets[:, None]  # (U, K)
    ranks = np.where(hit.any(axis=1), hit.argmax(axis=1), K)
    catalogue = catalogue_report(top, test.targets, counts)
    return {"weight": weight, **{k: v for k, v in ranking_metrics(ranks).items() if k != "users"},
            "calibration_kl": calibration_kl(test.histories, top, codes),
            "long_tail_share_at_10": catalogue["long_tail_share_at_10"], "coverage_at_10": catalogue["coverage_at_10"]}
