"""Small exact solvers on K×K matrices (float64, CPU), shared by the gradient methods.

- :func:`active_set_qp` — ``min ½ xᵀQx + cᵀx`` s.t. ``x ≥ lower`` and optionally ``Σx = 1``: a primal
  active-set method (Nocedal & Wright, Numerical Optimization, Alg. 16.3). It is exact (finite, up to round-off)
  and handles singular ``Q`` (collinear gradients) through least-squares solves. MGDA, CAGrad and UPGrad use it.
- :func:`nash_bargaining` — the positive solution of ``Mα = 1/α`` (Nash-MTL) by damped Newton on its convex
  potential.

Each returns ``(solution, converged)``; the caller counts and reports a non-converged solve.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalized(gram: Tensor) -> tuple[Tensor, float]:
    """``gram / s`` with ``s`` its largest diagonal entry (1 when the Gram matrix is zero), and ``s``."""
    scale = float(gram.diagonal().max()) if gram.numel() else 0.0
    scale = scale if scale > 0 else 1.0
    return gram / scale, scale


def active_set_qp(
    q: Tensor, c: Tensor, lower: Tensor, simplex: bool = False, tol: float = 1e-12, max_iter: int | None = None
) -> tuple[Tensor, bool]:
    """Minimise ``½ xᵀqx + cᵀx`` over ``{x ≥ lower}`` (and ``Σx = 1`` when ``simplex``; then ``lower`` = 0).

    ``q`` must be positive semi-definite and the problem bounded below (true for every use here). Starts from
    ``lower`` (or the simplex centre) and moves between faces of the feasible set; each face's equality-
    constrained minimiser comes from one small least-squares solve, so a rank-deficient ``q`` is fine.
    """
    k = c.numel()
    x = torch.full_like(c, 1.0 / k) if simplex else lower.clone()
    active = torch.zeros(k, dtype=torch.bool) if simplex else torch.ones(k, dtype=torch.bool)
    max_iter = max_iter or 20 * k + 20
    for _ in range(max_iter):
        gradient = q @ x + c
        free = (~active).nonzero().flatten()
        step, multiplier = _face_step(q, gradient, free, simplex)
        at_face_minimum = free.numel() == 0 or step.abs().max().item() <= tol * (1.0 + x.abs().max().item())
        if at_face_minimum:
            held = active.nonzero().flatten()
            if held.numel() == 0:
                return x, True
            multipliers = gradient[held] - multiplier
            worst = int(multipliers.argmin())
            if multipliers[worst] >= -tol * (1.0 + gradient.abs().max().item()):
                return x, True
            active[held[worst]] = False
            continue
        length, blocking = 1.0, -1
        for index, direction in zip(free.tolist(), step.tolist(), strict=True):
            if direction < 0:
                ratio = (lower[index].item() - x[index].item()) / direction
                if ratio < length:
                    length, blocking = ratio, index
        x[free] += length * step
        if blocking >= 0:
            x[blocking] = lower[blocking]
            active[blocking] = True
    return x, False


def _face_step(q: Tensor, gradient: Tensor, free: Tensor, simplex: bool) -> tuple[Tensor, float]:
    """Step to the minimiser on the current face (free coordinates only), and the Σx = 1 multiplier."""
    if free.numel() == 0:
        return gradient.new_zeros(0), 0.0
    block = q[free][:, free]
    rhs = -gradient[free]
    if simplex:
        n = free.numel()
        system = block.new_zeros(n + 1, n + 1)
        system[:n, :n] = block
        system[:n, n] = 1.0
        system[n, :n] = 1.0
        solution = torch.linalg.lstsq(system, torch.cat([rhs, rhs.new_zeros(1)]).unsqueeze(1), driver="gelsd")
        solution = solution.solution.flatten()
        return solution[:n], -solution[n].item()
    return torch.linalg.lstsq(block, rhs.unsqueeze(1), driver="gelsd").solution.flatten(), 0.0


def min_norm_weights(gram: Tensor) -> tuple[Tensor, bool]:
    """The convex weights λ of the min-norm point of the rows' convex hull: ``argmin_{λ ∈ Δ} λᵀ gram λ``."""
    q, _ = normalized(gram)
    zeros = q.new_zeros(q.shape[0])
    return active_set_qp(q, zeros, zeros, simplex=True)


def nash_bargaining(gram: Tensor, tol: float = 1e-9, max_iter: int = 100) -> tuple[Tensor, bool]:
    """The solution α > 0 of ``gram · α = 1/α`` (Navon et al. 2022, Eq. 4).

    It is the unique minimiser of the strictly convex ``½ αᵀ gram α − Σ log α``; damped Newton with a
    positivity-preserving backtracking line search converges quadratically; converged means
    ``max_k |α_k (gram α)_k − 1| ≤ tol`` (scale-free, on the normalised Gram matrix), or ≤ 1e-6 once Newton can make
    no more progress (nearly opposite gradients make the system ill-conditioned). No solution exists when a
    non-negative combination of the gradients vanishes (the potential is unbounded): reported as not converged.
    """
    q, scale = normalized(gram)
    alpha = torch.ones(q.shape[0], dtype=q.dtype)

    def potential(a: Tensor) -> float:
        return float(0.5 * a @ q @ a - a.log().sum())

    value = potential(alpha)
    for _ in range(max_iter):
        gradient = q @ alpha - 1.0 / alpha
        hessian = q + torch.diag(alpha.pow(-2))
        direction, info = torch.linalg.solve_ex(hessian, -gradient)
        if int(info) != 0:
            return alpha / scale**0.5, False
        residual = float((alpha * (q @ alpha) - 1).abs().max())
        decrement = float(-(gradient @ direction))
        if residual <= tol:
            return alpha / scale**0.5, True
        if decrement <= 1e-12:  # no progress left in float64: round-off on an ill-conditioned Gram matrix
            return alpha / scale**0.5, residual <= 1e-6
        length = 1.0
        while length > 1e-12:
            trial = alpha + length * direction
            if bool((trial > 0).all()):
                trial_value = potential(trial)
                if trial_value <= value - 0.25 * length * decrement:
                    break
            length *= 0.5
        else:  # the line search found no decrease: as above, accept only a near-solution
            return alpha / scale**0.5, residual <= 1e-6
        alpha, value = trial, trial_value
    return alpha / scale**0.5, False
