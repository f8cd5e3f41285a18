"""Methods built on a small quadratic programme over the Gram matrix: MGDA, CAGrad and UPGrad."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.errors import ConfigError
from mtl.weighting.base import GramWeighting
from mtl.weighting.solvers import active_set_qp, min_norm_weights, normalized


class MGDA(GramWeighting):
    """MGDA, Sener & Koltun, "Multi-task learning as multi-objective optimization", NeurIPS 2018.

    ``d = Σ_k λ_k g_k`` with ``λ = argmin_{λ ∈ Δ} ‖Σ_k λ_k g_k‖²``: the min-norm point of the gradients' convex
    hull, solved exactly (active set) instead of by Frank–Wolfe. ``mode=rep`` is the paper's MGDA-UB.
    """

    name = "mgda"
    has_solver = True

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        weights, converged = min_norm_weights(gram)
        if not converged:
            self.solver_failed("the min-norm QP hit its iteration limit")
        return weights


class CAGrad(GramWeighting):
    """CAGrad, Liu et al., "Conflict-averse gradient descent for multi-task learning", NeurIPS 2021.

    ``d = (g₀ + (c‖g₀‖ / ‖g_w‖) g_w) / (1 + c²)`` with ``g₀`` the mean gradient and
    ``w = argmin_{w ∈ Δ} g_wᵀg₀ + c‖g₀‖‖g_w‖`` (the official code's ``rescale=1``). The inner problem is solved
    exactly: its minimiser is the simplex QP ``min g_wᵀg₀ + ρ/2 ‖g_w‖²`` at the ρ with ``ρ‖g_w‖ = c‖g₀‖``,
    found by safeguarded regula falsi on ``log ρ``. ``c = 0`` is the mean gradient.
    """

    name = "cagrad"
    has_solver = True

    def __init__(
        self, task_names: Sequence[str], mode: str = "param", diagnostics_every: int = 10, c: float = 0.4
    ) -> None:
        super().__init__(task_names, mode, diagnostics_every)
        if c < 0:
            raise ConfigError(f"weighting.c must be >= 0 (0 = the mean gradient), got {c}")
        self.c = c

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        mean = gram.new_full((k,), 1.0 / k)
        q, _ = normalized(gram)
        linear = q @ mean
        target = self.c * math.sqrt(max(float(mean @ linear), 0.0))
        if target == 0.0:
            return mean / (1 + self.c**2)
        rho, weights = self._solve(q, linear, target)
        return (mean + rho * weights) / (1 + self.c**2)

    def _solve(self, q: Tensor, linear: Tensor, target: float) -> tuple[float, Tensor]:
        zeros = torch.zeros_like(linear)
        failures = []

        def residual(log_rho: float) -> tuple[float, Tensor]:
            weights, converged = active_set_qp(math.exp(log_rho) * q, linear, zeros, simplex=True)
            if not converged:
                failures.append(log_rho)
            norm = max(float(weights @ q @ weights), 0.0) ** 0.5
            if norm == 0.0:
                raise _ZeroCombination
            return math.log(math.exp(log_rho) * norm) - math.log(target), weights

        try:
            return self._regula_falsi(residual, target, failures)
        except _ZeroCombination:
            # some g_w = 0 minimises the QP, hence (by convexity) the inner objective: d = g₀ exactly
            return 0.0, zeros

    def _regula_falsi(self, residual, target: float, failures: list[float]) -> tuple[float, Tensor]:
        low, high = math.log(target / 2), math.log(2 * target)
        f_low, _ = residual(low)
        f_high, w_high = residual(high)
        for _ in range(200):
            if f_high > 0:
                break
            low, f_low = high, f_high
            high += math.log(4.0)
            f_high, w_high = residual(high)
        else:
            self.solver_failed("could not bracket ρ (c‖g₀‖ is out of reach of ρ‖g_w‖)")
            return math.exp(high), w_high
        weights, side = w_high, 0
        for _ in range(100):
            middle = (low * f_high - high * f_low) / (f_high - f_low)
            f_middle, weights = residual(middle)
            if abs(f_middle) < 1e-10 or high - low < 1e-12:
                if failures:
                    self.solver_failed(f"the inner QP hit its iteration limit {len(failures)} time(s)")
                return math.exp(middle), weights
            if f_middle > 0:
                high, f_high = middle, f_middle
                f_low = f_low / 2 if side == 1 else f_low
                side = 1
            else:
                low, f_low = middle, f_middle
                f_high = f_high / 2 if side == -1 else f_high
                side = -1
        self.solver_failed("regula falsi on ρ hit its iteration limit")
        return math.exp(middle), weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}"


class _ZeroCombination(Exception):
    """A convex combination of the gradients vanishes and minimises CAGrad's inner problem."""


class UPGrad(GramWeighting):
    """UPGrad, Quinton & Rey, "Jacobian descent for multi-objective optimization", 2024 (torchjd).

    ``d = (1/K) Σ_i π(g_i)`` where ``π`` projects onto the dual cone ``{x : G x ≥ 0}``; by duality
    ``π(g_i) = Gᵀ v_i`` with ``v_i = argmin_{v ≥ e_i} vᵀ G Gᵀ v`` (one small QP per task, solved exactly).
    The result never conflicts with any task (``G d ≥ 0``).
    """

    name = "upgrad"
    has_solver = True

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        q, _ = normalized(gram)
        k = q.shape[0]
        zeros = q.new_zeros(k)
        total = q.new_zeros(k)
        for i in range(k):
            lower = zeros.clone()
            lower[i] = 1.0 / k
            weights, converged = active_set_qp(q, zeros, lower)
            if not converged:
                self.solver_failed(f"the projection QP of task {self.task_names[i]!r} hit its iteration limit")
            total += weights
        return total
