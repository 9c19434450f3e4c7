"""Simulated users for the feedback loop: they react to what a model shows them according to a
planted preference the model was never trained on, so a retrained model can be checked against
the truth (did it learn the preference from the feedback alone?).

One round: every user is shown a top-k list for their history; each shown item is clicked with
`p_click_liked` when it is liked and `p_click_other` otherwise, and a click becomes a purchase
with `p_purchase`; with `p_organic`, a user also finds a liked item on their own (an organic
event, tied to no answer). Clicked and found items join the user's history for the next round.
Where the lists come from and where the events go are the caller's: the model in this process
(`model_lists`, tests) or the running service over gRPC (bench/feedback_loop.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from attnrec.model.checkpoint import Checkpoint
from attnrec.model.sequences import left_pad

# (user ids, histories) -> (top-k item ids per user, the answer's request_id per user)
Recommend = Callable[[Sequence[str], Sequence[Sequence[str]]], tuple[list[list[str]], list[str]]]
EVENT_COLUMNS = ("event_id", "request_id", "user_id", "item_id", "event_type", "timestamp_ms", "value")


@dataclass(frozen=True)
class PlantedPreference:
    liked: frozenset[str]  # the item ids users now like, whatever the training data said
    p_click_liked: float = 0.5
    p_click_other: float = 0.03  # a shown item that is not liked
    p_purchase: float = 0.3  # a click that goes on to a purchase
    p_organic: float = 0.3  # per round: the user finds a liked item without being shown it


def brand_preference(items: pa.Table, brand: str, **probabilities: float) -> PlantedPreference:
    """Users like every item of one brand (synthetic shop: about 2% of the catalogue)."""
    ids = np.asarray(items.column("item_id").to_pylist())
    return PlantedPreference(frozenset(ids[np.asarray(items.column("brand").to_pylist()) == brand]), **probabilities)


def liked_share(lists: Sequence[Sequence[str]], liked: frozenset[str]) -> float:
    """Share of all shown slots that hold a liked item."""
    slots = sum(len(items) for items in lists)
    return sum(i in liked for items in lists for i in items) / slots if slots else 0.0


def react(pref: PlantedPreference, users: Sequence[str], lists: Sequence[Sequence[str]], request_ids: Sequence[str],
          round_no: int, at_ms: int, rng: np.random.Generator) -> tuple[pa.Table, list[list[str]]]:
    """One round's events (FeedbackEvent columns) and each user's newly positive items, in order."""
    rows: dict[str, list] = {c: [] for c in EVENT_COLUMNS}
    found: list[list[str]] = []
    liked = sorted(pref.liked)

    def event(event_id: str, request_id: str, user: str, item: str, kind: str, ms: int) -> None:
        for column, value in zip(EVENT_COLUMNS, (event_id, request_id, user, item, kind, ms, 0.0)):
            rows[column].append(value)

    for u, (user, items, request_id) in enumerate(zip(users, lists, request_ids)):
        ms, new = at_ms + u, []
        for item in items:
            if rng.random() < (pref.p_click_liked if item in pref.liked else pref.p_click_other):
                event(f"{request_id}-{item}-click", request_id, user, item, "click", ms)
                new.append(item)
                if rng.random() < pref.p_purchase:
                    event(f"{request_id}-{item}-purchase", request_id, user, item, "purchase", ms)
        if liked and rng.random() < pref.p_organic:
            item = liked[rng.integers(len(liked))]
            event(f"organic-{round_no}-{user}", "", user, item, "click", ms)
            new.append(item)
        found.append(new)
    return pa.table({c: rows[c] for c in EVENT_COLUMNS}), found


def run_loop(recommend: Recommend, send: Callable[[pa.Table], None], pref: PlantedPreference,
             users: Sequence[str], histories: Sequence[Sequence[str]], rounds: int, start_ms: int,
             seed: int = 0) -> tuple[list[list[str]], list[float]]:
    """`rounds` rounds of showing and reacting; returns the histories after them and the liked
    share of the lists shown in each round."""
    rng = np.random.default_rng(seed)
    histories = [list(h) for h in histories]
    shares = []
    for r in range(rounds):
        lists, request_ids = recommend(users, histories)
        shares.append(liked_share(lists, pref.liked))
        events, found = react(pref, users, lists, request_ids, r, start_ms + r * 3_600_000, rng)
        send(events)
        for history, new in zip(histories, found):
            history.extend(new)
    return histories, shares


@torch.inference_mode()
def model_lists(ckpt: Checkpoint, users: Sequence[str], histories: Sequence[Sequence[str]], k: int = 10,
                batch_size: int = 256) -> list[list[str]]:
    """Each user's top-k item ids from the model in this process, history items excluded (as
    Recommend answers by default)."""
    out = []
    for s in range(0, len(users), batch_size):
        seqs = [ckpt.items.lookup(list(h)) for h in histories[s : s + batch_size]]
        seqs = [q[q > 0] for q in seqs]
        seq = torch.as_tensor(left_pad(seqs, ckpt.config.max_len))
        scores = ckpt.model.score_all(seq, ckpt.user_inputs(ckpt.users.lookup(list(users[s : s + batch_size]))))
        scores[:, 0] = float("-inf")  # (B, N+1)
        for row, q in enumerate(seqs):
            scores[row, torch.as_tensor(q, dtype=torch.long)] = float("-inf")
        top = scores.topk(k, dim=1).indices.numpy()  # (B, k)
        out += [ckpt.items.ids_of(row) for row in top]
    return out
