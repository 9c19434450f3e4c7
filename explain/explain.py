"""One explanation: raw attention, rollout, integrated gradients and deletion effects for
one (history, target) pair, joined into a combined score per history position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnrec.explain.ablation import deletion_attribution
from attnrec.explain.attention import final_query_attention, rollout
from attnrec.explain.attribution import Attribution, integrated_gradients
from attnrec.explain.config import ExplainConfig
from attnrec.model.inputs import stack_users
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad


@dataclass
class Explanation:
    """Scores per position of the transformer input: the user token first (when the model
    has one), then the history oldest first. Arrays are float64 numpy."""

    target: int
    history: np.ndarray  # (T,) item indices used, oldest first
    has_user_token: bool
    attention_layers: np.ndarray  # (layers, H, T') every layer's attention from the final position
    attention_heads: np.ndarray  # (H, T') last layer, from the final position
    attention: np.ndarray  # (T',) head mean
    rollout: np.ndarray  # (T',)
    attribution: np.ndarray  # (T',) IG summed over every content embedding at the position
    deletion: np.ndarray  # (T',) logit drop when the position alone is removed (0 for the user token)
    combined: np.ndarray  # (T',) see `combine`
    part_attribution: list[np.ndarray]  # per content part (see SASRec.embed_parts), summed over D
    score: float
    baseline_score: float  # nan when IG was not run
    convergence_delta: float | None  # None when IG was not run
    n_steps: int  # 0 when IG was not run

    @property
    def item_slice(self) -> slice:
        """Where the history positions sit in the (T',) arrays."""
        return slice(1 if self.has_user_token else 0, None)


ATTENTION_WEIGHT = 0.25  # chosen on users drawn with seed 0, reported on seed 1 (README)


def combine(deletion: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """combined_i = deletion_i + 0.25 * attention_i * sum_j |deletion_j|, in logits.

    The logit drop when position i alone is removed (Captum FeatureAblation), plus a
    quarter of the history's total deletion effect shared out by the final position's raw
    attention. Single deletions miss what items do together (removing one of two similar
    items changes little); attention says which positions the prediction draws on, so it
    lifts such items. Chosen by measured faithfulness (README, `attnrec explain-eval`)."""
    return deletion + ATTENTION_WEIGHT * attention * np.abs(deletion).sum()


def explain(
    model: SASRec,
    history: np.ndarray,
    user: list[np.ndarray] | None,
    target: int,
    config: ExplainConfig = ExplainConfig(),
    n_steps: int | None = None,
) -> Explanation:
    """Explain `target`'s score for a history (item indices, oldest first, within the window)."""
    return explain_batch(model, [history], [user], [target], config, n_steps)[0]


def explain_batch(
    model: SASRec,
    histories: Sequence[np.ndarray],
    users: Sequence[list[np.ndarray] | None],
    targets: Sequence[int],
    config: ExplainConfig = ExplainConfig(),
    n_steps: int | None = None,
    integrated: bool = True,
    deletion: bool = True,
) -> list[Explanation]:
    """Explain several (history, target) pairs with one attention pass and one IG call:
    histories are left-padded together, which changes no result (padding invariance).
    `integrated` / `deletion` False skip those (their scores are then zero, and the
    combined score, which builds on deletion, too)."""
    device = model.item_emb.weight.device
    seq = torch.as_tensor(left_pad([np.asarray(h, dtype=np.int64) for h in histories], model.config.max_len),
                          device=device)  # (B, T)
    user_t = stack_users(users, model.config.user_features, device)  # None user = unknown: every code 0
    with torch.no_grad():
        _, attentions = model(seq, user_t, return_attention=True)
        layers = final_query_attention(attentions).double().cpu().numpy()  # (B, L, H, T')
        heads = layers[:, -1]  # (B, H, T') the last layer
        roll = rollout(attentions, config.rollout_residual).double().cpu().numpy()  # (B, T')
    target_t = torch.as_tensor(list(targets), device=device)
    if integrated:
        igs = integrated_gradients(model, seq, user_t, target_t, config, n_steps)
    else:
        with torch.no_grad():
            scores = model.score(seq, target_t[:, None], user_t)[:, 0].tolist()
        T = seq.shape[1]  # zero attributions shaped like embed_parts' output, summed over D
        zeros = [torch.zeros(T)] + [torch.zeros((T, f.max_values) if f.multi else (T,))
                                    for f in model.config.item_features]
        zeros += [torch.zeros((f.max_values,) if f.multi else ()) for f in model.config.user_features]
        igs = [Attribution(zeros, s, float("nan"), None, 0) for s in scores]
    n_item = 1 + len(model.config.item_features)
    user_token = model.config.has_user_token
    out = []
    for b, (history, user, target, ig) in enumerate(zip(histories, users, targets, igs)):
        T = len(history)
        keep = np.r_[[0] if user_token else [], np.arange(heads.shape[-1] - T, heads.shape[-1])].astype(int)
        parts = [p.double().cpu().numpy() for p in ig.parts]
        parts = [p[-T:] for p in parts[:n_item]] + parts[n_item:]  # drop left padding of item parts
        per_item = sum(p if p.ndim == 1 else p.sum(-1) for p in parts[:n_item])  # (T,)
        if user_token:
            per_position = np.concatenate([[sum(float(p.sum()) for p in parts[n_item:])], per_item])  # (T+1,)
        else:
            per_position = per_item
        drops = deletion_attribution(model, np.asarray(history, dtype=np.int64), user, target) if deletion \
            else np.zeros(T)  # (T,)
        if user_token:
            drops = np.concatenate([[0.0], drops])  # the user token is never deleted
        attention = heads[b][:, keep]
        out.append(Explanation(
            target=target, history=np.asarray(history), has_user_token=user_token,
            attention_layers=layers[b][..., keep], attention_heads=attention, attention=attention.mean(0),
            rollout=roll[b][keep], attribution=per_position,
            deletion=drops, combined=combine(drops, attention.mean(0)), part_attribution=parts,
            score=ig.score, baseline_score=ig.baseline_score, convergence_delta=ig.convergence_delta,
            n_steps=ig.n_steps,
        ))
    return out
