"""Raw attention and attention rollout, read from the same forward pass that scores."""

from __future__ import annotations

import torch
from torch import Tensor


def final_query_attention(attentions: list[Tensor]) -> Tensor:
    """Every layer's attention from the final position to every position:
    per-layer (B, H, T', T') list -> (B, layers, H, T'); [:, -1] is the last layer's."""
    return torch.stack([a[:, :, -1, :] for a in attentions], dim=1)


def rollout(attentions: list[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) from the final position: (B, T').

    Each layer's head-mean attention is mixed with the identity (the residual stream),
    rows renormalised, and the layers multiplied from the input upward."""
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype, device=attentions[0].device)
    joint = eye.expand(B, T, T)
    for att in attentions:
        a = residual * eye + (1 - residual) * att.mean(dim=1)  # (B, T, T)
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a @ joint  # (B, T, T)
    return joint[:, -1, :]
