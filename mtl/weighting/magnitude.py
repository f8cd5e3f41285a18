"""Gradient-magnitude balancing with state: GradNorm (learned weights) and DB-MTL (EMA of log-loss gradients)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.weighting.base import GradientWeighting


class GradNorm(GradientWeighting):
    """GradNorm, Chen et al., "GradNorm: gradient normalization for adaptive loss balancing", ICML 2018.

    ``d = Σ_k w_k g_k`` with learned ``w = K softmax(ξ)`` (the LibMTL parametrisation, which keeps ``Σ w = K``
    without a renormalisation step). ``ξ`` gets the gradient of ``Σ_k |w_k‖g_k‖ − mean(w‖g‖) r_k^α|``,
    ``r_k = L̃_k / mean(L̃)``, ``L̃_k = L_k(t) / L_k(0)`` (target detached), and is stepped by the model's
    optimizer. Deviation: ``‖g_k‖`` is over all shared parameters (param mode) or the representation (rep
    mode), not over the last shared layer only.
    """

    name = "gradnorm"

    def __init__(
        self, task_names: Sequence[str], mode: str = "param", diagnostics_every: int = 10, alpha: float = 1.5
    ) -> None:
        super().__init__(task_names, mode, diagnostics_every)
        if alpha < 0:
            raise ConfigError(f"weighting.alpha (GradNorm's restoring-force asymmetry) must be >= 0, got {alpha}")
        self.alpha = alpha
        k = len(self.task_names)
        self.logits = nn.Parameter(torch.zeros(k))
        self.register_buffer("initial_losses", torch.zeros(k))
        self.register_buffer("ratios", torch.ones(k))

    def observe(self, losses: Tensor) -> None:
        if self.step == 1:
            self.initial_losses.copy_(losses)
        self.ratios.copy_(losses / self.initial_losses.clamp_min(torch.finfo(losses.dtype).tiny))

    def aggregate(self, grads: Tensor) -> Tensor:
        with torch.enable_grad():
            weights = len(self.task_names) * torch.softmax(self.logits, dim=0)
            scaled_norms = weights * grads.norm(dim=1).detach().to(weights)
            relative = self.ratios / self.ratios.mean()
            target = (scaled_norms.mean() * relative**self.alpha).detach()
            (gradient,) = torch.autograd.grad((scaled_norms - target).abs().sum(), self.logits)
        self.logits.grad = gradient if self.logits.grad is None else self.logits.grad + gradient
        self.record_weights(weights)
        return weights.detach().to(grads) @ grads

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"


class DBMTL(GradientWeighting):
    """DB-MTL, Lin et al., "Dual-balancing for multi-task learning", 2023.

    Loss-scale balancing: gradients of ``log(L_k + ε)``. Gradient-magnitude balancing: an EMA
    ``ĝ_k ← g_k + β/t^σ (ĝ_k − g_k)`` and ``d = Σ_k (max_j ‖ĝ_j‖ / ‖ĝ_k‖) ĝ_k``, every task's contribution
    scaled to the largest norm (logged as the weights). Param mode only: the EMA needs the same coordinates
    every step, which the representation (a new batch each step) does not have.
    """

    name = "db_mtl"
    supports_rep_mode = False

    def __init__(
        self,
        task_names: Sequence[str],
        mode: str = "param",
        diagnostics_every: int = 10,
        beta: float = 0.9,
        beta_sigma: float = 0.0,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(task_names, mode, diagnostics_every)
        if not 0 <= beta < 1:
            raise ConfigError(f"weighting.beta (EMA factor) must be in [0, 1), got {beta}")
        self.beta, self.beta_sigma, self.epsilon = beta, beta_sigma, epsilon
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.ema: Tensor | None = None

    def transform_loss(self, loss: Tensor) -> Tensor:
        return torch.log(loss + self.epsilon)

    def aggregate(self, grads: Tensor) -> Tensor:
        if self.ema is None:
            self.ema = torch.zeros_like(grads)
        elif self.ema.shape != grads.shape:
            raise ValueError(
                f"db_mtl keeps an EMA of shape {tuple(self.ema.shape)} but got gradients of shape "
                f"{tuple(grads.shape)}: the shared parameters changed (or a checkpoint of another model was loaded)"
            )
        self.ema_steps += 1
        self.ema = self.ema.to(grads)
        self.ema.sub_(grads).mul_(self.beta / float(self.ema_steps) ** self.beta_sigma).add_(grads)
        norms = self.ema.norm(dim=1)
        weights = norms.max() / (norms + self.epsilon)
        self.record_weights(weights)
        return weights @ self.ema

    def get_extra_state(self) -> Any:
        return {"ema": self.ema}

    def set_extra_state(self, state: Any) -> None:
        self.ema = state["ema"]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, beta_sigma={self.beta_sigma}"
