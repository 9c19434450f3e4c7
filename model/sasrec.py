"""SASRec with side features: causal self-attention over a user's history.

Input at each history position: item-id embedding + item side-feature embeddings + a
recency-position embedding (0 = most recent item). Positions count from the end, so
left padding (of any length) changes nothing, and the most recent item always sits at
the same position as in training. With user features, a user token (sum of the user's
feature embeddings) sits before the history; causal attention lets every item see it.

Output: the hidden state of the last position dotted with the item vectors (the same
id + feature embeddings as the input side: tied weights), one logit per catalogue item.

The contract that serving and explain use: `encode`, `score`, `score_all`, `loss`, and
`forward(..., return_attention=True)` for the attention maps the scores came from.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrec.model.config import FeatureSpec, ModelConfig

PAD = 0
ITEM_TABLE_SLICE = 65_536  # items whose vectors are computed together when the inference table is filled


class Batch(NamedTuple):
    """One training step: predict `targets[b, t]` from `seq[b, :t+1]`."""

    seq: Tensor  # (B, T) item indices, left-padded with 0
    targets: Tensor  # (B, T) next item at each position, 0 = no loss here
    user: list[Tensor] | None = None  # per user feature (B,) or (B, L) codes
    weights: Tensor | None = None  # (B, T) float weight of each target's loss; None = all 1


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `h @ weight.T` against `targets`, in row chunks; with
    `row_weights` (M,), the weighted mean.

    The gradient is formed during the forward pass, chunk by chunk, so the (M, N) logits
    never exist whole: a full softmax over the catalogue costs three matmuls and no
    multi-hundred-MB allocations (which dominated the step time on CPU).
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, chunk: int = 2048,
                row_weights: Tensor | None = None) -> Tensor:
        M = h.shape[0]
        grad_h, grad_w = torch.empty_like(h), torch.zeros_like(weight)
        total = h.new_zeros(())
        for s in range(0, M, chunk):
            hc, t = h[s : s + chunk], targets[s : s + chunk]
            logits = hc @ weight.T  # (c, N)
            target_logit = logits.gather(1, t[:, None])  # (c, 1)
            peak = logits.max(dim=-1, keepdim=True).values  # (c, 1)
            probs = logits.sub_(peak).exp_()  # (c, N) unnormalised, in place: one exp pass
            norm = probs.sum(dim=-1, keepdim=True)  # (c, 1)
            row_loss = norm.log() + peak - target_logit  # (c, 1)
            probs.div_(norm)  # (c, N) softmax
            probs[torch.arange(len(t), device=t.device), t] -= 1.0  # d loss / d logits
            if row_weights is not None:
                wc = row_weights[s : s + chunk, None]  # (c, 1)
                row_loss, probs = row_loss * wc, probs.mul_(wc)
            total += row_loss.sum()
            grad_h[s : s + chunk] = probs @ weight  # (c, D)
            grad_w += probs.T @ hc  # (N, D)
        scale = M if row_weights is None else row_weights.sum()
        ctx.save_for_backward(grad_h / scale, grad_w / scale)
        return total / scale

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None


class FeatureEmbedding(nn.Module):
    """One embedding per feature, summed; a multi-valued feature mean-pools its values.

    `parts` and `pool` split the forward pass so that explanations can attribute to each
    feature's raw embeddings (per value) and still run the exact same arithmetic."""

    def __init__(self, specs: tuple[FeatureSpec, ...], d_model: int):
        super().__init__()
        self.specs = specs
        self.tables = nn.ModuleList(nn.Embedding(s.cardinality, d_model) for s in specs)

    def parts(self, codes: list[Tensor]) -> list[Tensor]:
        """codes[f]: (...,) or (..., L) -> per feature (..., D) or (..., L, D), not yet pooled."""
        return [table(c) for table, c in zip(self.tables, codes)]

    def pool(self, parts: list[Tensor], codes: list[Tensor]) -> Tensor | float:
        """Sum the features; multi-valued ones are averaged over their present values."""
        out: Tensor | float = 0.0
        for spec, e, c in zip(self.specs, parts, codes):
            if spec.multi:
                present = (c != 0).unsqueeze(-1).to(e.dtype)  # (..., L, 1)
                e = (e * present).sum(-2) / present.sum(-2).clamp(min=1.0)  # (..., D)
            out = out + e
        return out

    def forward(self, codes: list[Tensor]) -> Tensor | float:
        """codes[f]: (...,) or (..., L) for multi features -> (..., D)."""
        return self.pool(self.parts(codes), codes)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, allowed: Tensor, last_only: bool = False,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), allowed (B, 1, T, T) bool -> output (B, Q, D), attention (B, H, Q, T);
        Q = T, or Q = 1 with `last_only` (only the last position queries: the same numbers
        as the last row of the full pass, without computing the other rows).
        Without `need_weights` the attention is None and torch's fused kernel computes the
        output (the same up to float rounding, 10-15% faster for the whole model on CPU)."""
        B, T, D = x.shape
        if last_only:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, -1:], w[:D], b[:D])  # (B, 1, D)
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=2)  # (B, T, D) each
            allowed = allowed[:, :, -1:]  # (B, 1, 1, T)
        else:
            q, k, v = self.qkv(x).split(D, dim=2)
        Q, H, hd = q.shape[1], self.n_heads, D // self.n_heads
        q = q.view(B, Q, H, hd).transpose(1, 2)  # (B, H, Q, hd)
        k = k.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        if not need_weights:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                               dropout_p=self.attn_dropout.p if self.training else 0.0)
            return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, Q, D))), None
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, Q, T)
        att = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # (B, H, Q, T)
        y = self.attn_dropout(att) @ v  # (B, H, Q, hd)
        y = y.transpose(1, 2).contiguous().view(B, Q, D)  # (B, Q, D)
        return self.resid_dropout(self.proj(y)), att


class Block(nn.Module):
    """Pre-LayerNorm transformer block (stabler than SASRec's post-LN at no cost)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, 4 * config.d_model),
            nn.GELU(),
            nn.Linear(4 * config.d_model, config.d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor, last_only: bool = False,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        a, att = self.attn(self.ln_1(x), allowed, last_only, need_weights)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(self.ln_2(x)), att


class SASRec(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        D = config.d_model
        self.item_emb = nn.Embedding(config.n_items + 1, D, padding_idx=PAD)
        self.item_features = FeatureEmbedding(config.item_features, D)
        self.pos_emb = nn.Embedding(config.max_len, D)
        self.user_features = FeatureEmbedding(config.user_features, D)
        self.user_type = nn.Parameter(torch.zeros(D)) if config.has_user_token else None
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(D)
        # Per-item feature codes, row i = item index i (row 0 = padding). Filled from the data
        # with `set_item_codes`; saved and loaded with the weights.
        for i, s in enumerate(config.item_features):
            shape = (config.n_items + 1, s.max_values) if s.multi else (config.n_items + 1,)
            self.register_buffer(f"item_codes_{i}", torch.zeros(shape, dtype=torch.long))
        self._item_table: Tensor | None = None  # inference cache of item_vectors(all items)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    # ---- data the model carries -------------------------------------------------
    def set_item_codes(self, codes: list[Tensor]) -> None:
        """Install per-item feature codes, one tensor per item feature, in config order."""
        for i, c in enumerate(codes):
            getattr(self, f"item_codes_{i}").copy_(c)
        self._item_table = None

    def item_codes(self, items: Tensor) -> list[Tensor]:
        """Feature codes of item indices (...,) -> per feature (...,) or (..., L)."""
        return [getattr(self, f"item_codes_{i}")[items] for i in range(len(self.config.item_features))]

    def train(self, mode: bool = True) -> SASRec:
        self._item_table = None
        return super().train(mode)

    # ---- embeddings --------------------------------------------------------------
    def item_vectors(self, items: Tensor) -> Tensor:
        """Item representation shared by input and output side: (...,) -> (..., D)."""
        return self.item_emb(items) + self.item_features(self.item_codes(items))

    def all_item_vectors(self) -> Tensor:
        """(n_items + 1, D); cached while in inference (eval mode, no grad)."""
        if self.training or torch.is_grad_enabled():
            return self.item_vectors(torch.arange(self.config.n_items + 1, device=self.item_emb.weight.device))
        if self._item_table is None:  # in slices: multi-valued features pool a (items, values, D) tensor
            every_item = torch.arange(self.config.n_items + 1, device=self.item_emb.weight.device)
            self._item_table = torch.cat([self.item_vectors(part) for part in every_item.split(ITEM_TABLE_SLICE)])
        return self._item_table

    def embed_parts(self, seq: Tensor, user: list[Tensor] | None = None) -> list[Tensor]:
        """The content embeddings the input is built from, before any mixing:
        [item id (B, T, D)] + item features ((B, T, D) or (B, T, L, D)) + user features ((B, D) or (B, L, D)).
        Explanations attribute to these; `assemble` turns them into the transformer input."""
        item = [self.item_emb(seq)] + self.item_features.parts(self.item_codes(seq))
        return item + self.user_features.parts(self._user_codes(seq, user))

    def _user_codes(self, seq: Tensor, user: list[Tensor] | None) -> list[Tensor]:
        if user is None:  # an unknown user: every feature missing
            return [torch.zeros(seq.shape[0], dtype=torch.long, device=seq.device) for _ in self.config.user_features]
        return user

    def positions(self, T: int, device: torch.device | str = "cpu") -> Tensor:
        """Recency-position embeddings (T, D): the last row is the most recent item."""
        # = pos_emb(arange(T - 1, -1, -1)); flipped rather than counted down, which the ONNX exporter mistranslates
        return self.pos_emb(torch.arange(T, device=device)).flip(0)  # 0 = most recent

    def assemble(self, parts: list[Tensor], seq: Tensor, user: list[Tensor] | None = None,
                 positions: Tensor | None = None) -> Tensor:
        """Transformer input (B, T', D) from `embed_parts` output; T' = T + 1 with a user token first.
        Padding and pooling masks come from `seq` / codes, never from the parts. `positions`
        ((B, T, D) or (T, D)) replaces the recency embeddings (explanations attribute to them)."""
        n_item = 1 + len(self.config.item_features)
        item_vectors = parts[0] + self.item_features.pool(parts[1:n_item], self.item_codes(seq))  # (B, T, D)
        return self._input(item_vectors, parts[n_item:], seq, user, positions)

    def _input(self, item_vectors: Tensor, user_parts: list[Tensor], seq: Tensor, user: list[Tensor] | None,
               positions: Tensor | None = None) -> Tensor:
        """Scale item vectors (B, T, D), add positions, put the pooled user token first."""
        B, T = seq.shape
        if T > self.config.max_len:
            raise ValueError(f"history of {T} items exceeds max_len={self.config.max_len}; keep the most recent")
        positions = self.positions(T, seq.device) if positions is None else positions
        x = item_vectors * math.sqrt(self.config.d_model) + positions  # (B, T, D)
        if self.user_type is not None:
            u = self.user_type + self.user_features.pool(user_parts, self._user_codes(seq, user))  # (B, D)
            x = torch.cat([u.unsqueeze(1), x], dim=1)  # (B, T+1, D)
        return x

    def embed(self, seq: Tensor, user: list[Tensor] | None = None) -> Tensor:
        """Transformer input (B, T', D): T' = T + 1 with a user token first.

        `user` holds one code tensor per user feature, (B,) or (B, L); None = all missing.
        In inference (eval mode, no grad) the item side is a gather from the cached item
        table, which holds the same item vectors: no per-position feature pooling."""
        if self.training or torch.is_grad_enabled():
            return self.assemble(self.embed_parts(seq, user), seq, user)
        user_parts = self.user_features.parts(self._user_codes(seq, user))
        return self._input(self.all_item_vectors()[seq], user_parts, seq, user)

    def attention_mask(self, seq: Tensor) -> Tensor:
        """(B, 1, T', T') bool: causal, padding never attended; a padding query attends to itself only."""
        valid = seq != PAD  # (B, T)
        if self.user_type is not None:
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # (B, T+1)
        T = valid.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()  # (T, T)
        eye = torch.eye(T, dtype=torch.bool, device=seq.device)
        return ((causal & valid[:, None, :]) | eye).unsqueeze(1)  # (B, 1, T, T)

    # ---- the network ---------------------------------------------------------------
    def transform(self, x: Tensor, allowed: Tensor, last_only: bool = False,
                  need_weights: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Run the blocks on an embedded sequence: (B, T', D) -> (B, T', D), attention per layer.
        With `last_only` the output is (B, 1, D), the last position only: the last block
        computes just that row (its attention is (B, H, 1, T')), for callers that read the
        final state alone (scoring, integrated gradients). Without `need_weights` no
        attention maps are formed (the list is empty) and a fused kernel runs instead."""
        x = self.emb_dropout(x)
        attentions = []
        for i, block in enumerate(self.blocks):
            x, att = block(x, allowed, last_only and i == len(self.blocks) - 1, need_weights)
            if need_weights:
                attentions.append(att)
        return self.ln_f(x), attentions

    def forward(
        self, seq: Tensor, user: list[Tensor] | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Hidden state per history position (B, T, D); with return_attention also the
        attention of every layer, (B, H, T', T') each, T' counting the user token."""
        h, attentions = self.transform(self.embed(seq, user), self.attention_mask(seq))
        if self.user_type is not None:
            h = h[:, 1:]  # (B, T, D) drop the user token's own output
        return (h, attentions) if return_attention else h

    # ---- the contract ------------------------------------------------------------------
    def encode(self, seq: Tensor, user: list[Tensor] | None = None) -> Tensor:
        """The user's state after the most recent item: (B, T) -> (B, D)."""
        h, _ = self.transform(self.embed(seq, user), self.attention_mask(seq), last_only=True, need_weights=False)
        return h[:, -1]

    def encode_codes(self, seq: Tensor, item_codes: list[Tensor], user: list[Tensor] | None = None) -> Tensor:
        """`encode` with the history's side-feature codes given rather than looked up
        (explanations neutralise feature values this way): (B, T) -> (B, D)."""
        items = self.item_emb(seq) + self.item_features.pool(self.item_features.parts(item_codes), item_codes)
        return self.encode_vectors(items, seq, user)

    def encode_vectors(self, items: Tensor, seq: Tensor, user: list[Tensor] | None = None) -> Tensor:
        """`encode` from the history's item vectors (B, T, D), e.g. gathered from the item table:
        the transformer alone, whatever the catalogue's size (model/onnx_encoder.py exports it)."""
        x = self._input(items, self.user_features.parts(self._user_codes(seq, user)), seq, user)  # (B, T', D)
        h, _ = self.transform(x, self.attention_mask(seq), last_only=True, need_weights=False)
        return h[:, -1]

    def score(self, seq: Tensor, candidates: Tensor, user: list[Tensor] | None = None) -> Tensor:
        """Logits of candidate items (B, C) given histories (B, T) -> (B, C)."""
        return torch.einsum("bd,bcd->bc", self.encode(seq, user), self.item_vectors(candidates))

    def score_all(self, seq: Tensor, user: list[Tensor] | None = None) -> Tensor:
        """Logits of every item (B, n_items + 1); column 0 (padding) is -inf."""
        logits = self.encode(seq, user) @ self.all_item_vectors().T  # (B, N+1)
        logits[:, PAD] = float("-inf")
        return logits

    def loss(self, batch: Batch) -> Tensor:
        """Cross-entropy of the next item: full softmax, or sampled softmax when n_negatives > 0."""
        h = self(batch.seq, batch.user)  # (B, T, D)
        keep = batch.targets != PAD  # (B, T)
        h, targets = h[keep], batch.targets[keep]  # (M, D), (M,)
        w = None if batch.weights is None else batch.weights[keep]  # (M,)
        if self.config.n_negatives == 0:
            return LinearCrossEntropy.apply(h, self.all_item_vectors()[1:], targets - 1, 2048, w)
        negatives = torch.randint(1, self.config.n_items + 1, (self.config.n_negatives,), device=h.device)
        pos = (h * self.item_vectors(targets)).sum(-1, keepdim=True)  # (M, 1)
        neg = h @ self.item_vectors(negatives).T  # (M, K)
        # a sampled positive is no negative
        neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([pos, neg], dim=1)  # (M, 1 + K)
        if w is None:
            return F.cross_entropy(logits, torch.zeros_like(targets))
        return (F.cross_entropy(logits, torch.zeros_like(targets), reduction="none") * w).sum() / w.sum()
