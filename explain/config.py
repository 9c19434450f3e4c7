"""The explain component's one frozen config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExplainConfig:
    n_steps: int = 64  # integrated-gradients steps; Gauss-Legendre keeps |delta| < 5% of the gap here (see README)
    method: str = "gausslegendre"  # Captum's IG quadrature; gausslegendre converges faster than riemann_trapezoid
    internal_batch_size: int = 64  # path points per forward pass: bounds memory for long histories
    rollout_residual: float = 0.5  # weight of the identity in attention rollout (Abnar & Zuidema 2020)
