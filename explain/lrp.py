"""AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
Transformers", ICML 2024): relevance of every content embedding to the explained item's
logit, from one forward and one backward pass, where integrated gradients takes `n_steps`.

It is computed as the `lxt` package's efficient implementation does, as gradient x input
through a forward pass whose backward follows the AttnLRP rules:

- LayerNorm: the identity rule, by treating the standard deviation as a constant;
- GELU (element-wise): the identity rule, gradient f(x)/x in place of f'(x);
- the two matrix products of attention: the uniform rule, by dividing the gradient that
  reaches the queries and keys by 4 and the values by 2 (softmax keeps its gradient).

The rules are applied to this model's instances only while `rules` is active; `lxt` itself
is not a dependency (it needs `transformers` and other large packages for rules that are
a few lines here). Relevance comes in the same shapes as integrated gradients' parts, so it
can stand wherever they do.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

from attnrec.explain.attribution import Attribution
from attnrec.model.sasrec import SASRec


class _ScaleGradient(Function):
    """Identity forward; the gradient times `scale` (broadcast over the last dimension)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class _IdentityRule(Function):
    """y = f(x) forward; the gradient f(x)/x (f(x)/x -> 1/2 at 0 for GELU)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = F.gelu(x)
        ctx.save_for_backward(torch.where(x.abs() > 1e-6, y / x, torch.full_like(x, 0.5)))
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ratio,) = ctx.saved_tensors
        return grad * ratio


def _layer_norm(module: nn.LayerNorm):
    def forward(x: Tensor) -> Tensor:
        centred = x - x.mean(-1, keepdim=True)
        std = (centred.pow(2).mean(-1, keepdim=True) + module.eps).sqrt()
        return centred / std.detach() * module.weight + module.bias

    return forward


@contextmanager
def rules(model: SASRec):
    """The AttnLRP rules on this model's LayerNorms, GELUs and attention while active."""
    patched: list[nn.Module] = []
    hooks = []
    D = model.config.d_model
    qkv_scale = torch.cat([torch.full((2 * D,), 0.25), torch.full((D,), 0.5)]).to(model.item_emb.weight.device)
    try:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.forward = _layer_norm(module)
                patched.append(module)
            elif isinstance(module, nn.GELU):
                module.forward = _IdentityRule.apply
                patched.append(module)
        for block in model.blocks:  # queries and keys / 4, values / 2: the uniform rule on both products
            hooks.append(block.attn.qkv.register_forward_hook(
                lambda _m, _i, out: _ScaleGradient.apply(out, qkv_scale)))
        yield model
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
        for hook in hooks:
            hook.remove()


def attn_lrp(model: SASRec, seq: Tensor, user: list[Tensor] | None, targets: Tensor) -> list[Attribution]:
    """AttnLRP relevance of each history's target logit to every content embedding; seq (B, T)
    left-padded, targets (B,). Parts as `integrated_gradients` gives them (summed over D)."""
    was_training = model.training
    model.eval()
    target_vectors = model.item_vectors(targets).detach()  # (B, D): the output side is not explained
    allowed = model.attention_mask(seq)
    try:
        with torch.enable_grad(), rules(model):
            parts = [p.detach().requires_grad_(True) for p in model.embed_parts(seq, user)]
            # every query row (not last_only): the hook on the fused q/k/v projection sees them all
            h, _ = model.transform(model.assemble(parts, seq, user), allowed, need_weights=False)
            logits = (h[:, -1] * target_vectors).sum(-1)  # (B,)
            grads = torch.autograd.grad(logits.sum(), parts, allow_unused=True)
    finally:
        model.train(was_training)
    relevance = [(p * g).sum(-1).detach() if g is not None else p.new_zeros(p.shape[:-1]) for p, g in zip(parts, grads)]
    scores = logits.detach().tolist()
    return [Attribution(parts=[r[b] for r in relevance], score=scores[b], baseline_score=float("nan"),
                        convergence_delta=None, n_steps=1) for b in range(seq.shape[0])]
