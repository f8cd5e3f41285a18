"""Closed-form or Newton-solved balancing of the task gradients: IMTL-G, Nash-MTL and Aligned-MTL."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.weighting.base import GramWeighting
from mtl.weighting.solvers import nash_bargaining, normalized


class IMTLG(GramWeighting):
    """IMTL-G, Liu et al., "Towards impartial multi-task learning", ICLR 2021, Eq. 9.

    ``d = Σ_k α_k g_k`` with ``Σ α = 1`` and equal projections ``d · u_k`` onto every unit gradient
    ``u_k = g_k / ‖g_k‖``: ``α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹``, ``D_j = g_1 − g_j``, ``U_j = u_1 − u_j`` (least squares
    when ``D Uᵀ`` is singular, e.g. for collinear gradients).
    """

    name = "imtl_g"

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        q, _ = normalized(gram)
        if q.shape[0] == 1:
            return q.new_ones(1)
        norms = q.diagonal().clamp_min(0).sqrt()
        inverse = torch.where(norms > 0, 1 / norms.clamp_min(1e-300), torch.zeros_like(norms))
        along_units = q * inverse[None, :]  # [a, b] = g_a · u_b
        first_on_u = along_units[0, 0] - along_units[0, 1:]
        d_u = first_on_u[None, :] - along_units[1:, :1] + along_units[1:, 1:]
        rest = torch.linalg.lstsq(d_u.T, first_on_u.unsqueeze(1), driver="gelsd").solution.flatten()
        return torch.cat([1 - rest.sum(0, keepdim=True), rest])


class NashMTL(GramWeighting):
    """Nash-MTL, Navon et al., "Multi-task learning as a bargaining game", ICML 2022.

    ``d = Σ_k α_k g_k`` with ``α > 0`` solving ``G Gᵀ α = 1/α`` (the Nash bargaining solution). Solved to machine
    precision by Newton's method on ``½ αᵀGGᵀα − Σ log α`` instead of the paper's sequence of convex programs;
    no solution exists when a non-negative combination of the gradients vanishes: that is a counted solver
    failure (``solver_failures/nash_mtl``) and the last Newton iterate is used. A task whose gradient is exactly
    zero has no bargaining power to give: it gets weight 0 and the others are solved without it.
    """

    name = "nash_mtl"
    has_solver = True

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        weights = gram.new_zeros(gram.shape[0])
        moving = gram.diagonal() > 0
        if bool(moving.any()):
            solved, converged = nash_bargaining(gram[moving][:, moving])
            if not converged:
                self.solver_failed(
                    "Newton on the bargaining potential did not converge: no positive solution exists when a "
                    "non-negative combination of the gradients (nearly) vanishes, e.g. at a Pareto-stationary point"
                )
            weights[moving] = solved
        return weights


class AlignedMTL(GramWeighting):
    """Aligned-MTL, Senushkin et al., "Independent component alignment for multi-task learning", CVPR 2023.

    Replaces G by the aligned ``σ_min U Vᵀ`` (all singular values equal to the smallest non-zero one of G):
    ``d = Σ_k α_k g_k``, ``α = B 1`` with ``B = √λ_min · V Λ^{-1/2} Vᵀ`` from the eigen-decomposition of
    ``G Gᵀ`` restricted to its numerical rank (the LibMTL form with equal task preferences).
    """

    name = "aligned_mtl"

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        q, _ = normalized(gram)
        eigenvalues, eigenvectors = torch.linalg.eigh(q)
        tolerance = float(eigenvalues.max()) * q.shape[0] * torch.finfo(torch.float32).eps
        keep = eigenvalues > tolerance
        if not bool(keep.any()):
            return q.new_zeros(q.shape[0])
        eigenvalues, eigenvectors = eigenvalues[keep], eigenvectors[:, keep]
        balance = eigenvalues.min().sqrt() * (eigenvectors * eigenvalues.rsqrt()) @ eigenvectors.T
        return balance.sum(0)
