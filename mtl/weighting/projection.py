"""Sequential gradient surgery: PCGrad and GradVac, computed in the K×K Gram domain.

Each projected gradient ``g'_i`` is kept as coefficients over the original gradients (``g'_i = Σ_j C_ij g_j``),
so every dot product the papers take is a small product with ``G Gᵀ`` and the only P-sized work is the final
``(1ᵀC) G``. The task order of the projections is random per step, from a checkpointed generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.errors import ConfigError
from mtl.weighting.base import GramWeighting, Stochastic


class PCGrad(Stochastic, GramWeighting):
    """PCGrad, Yu et al., "Gradient surgery for multi-task learning", NeurIPS 2020, Alg. 1.

    For each task i and every task j in random order: if ``g'_i · g_j < 0``, ``g'_i −= (g'_i · g_j / ‖g_j‖²) g_j``;
    ``d = Σ_i g'_i`` (the official code sums). The logged weights are the coefficients of ``d`` over the ``g_j``.
    """

    name = "pcgrad"

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        coefficients = torch.eye(k, dtype=gram.dtype)
        squared_norms = gram.diagonal()
        for i in range(k):
            for j in self.permutation(k):
                dot = float(coefficients[i] @ gram[:, j])
                if dot < 0 and squared_norms[j] > 0:
                    coefficients[i, j] -= dot / squared_norms[j]
        return coefficients.sum(0)


class GradVac(Stochastic, GramWeighting):
    """GradVac, Wang et al., "Gradient vaccine", ICLR 2021, Alg. 2 (applied to the whole gradient).

    Keeps an EMA ``φ̂_ij`` of the cosine similarity of task pairs (``φ̂ ← (1−β) φ̂ + β φ``). For each i and every
    j ≠ i in random order, when ``φ_ij = cos(g'_i, g_j) < φ̂_ij``, ``g'_i`` gets
    ``‖g'_i‖ (φ̂ √(1−φ²) − φ √(1−φ̂²)) / (‖g_j‖ √(1−φ̂²)) · g_j`` so that the pair reaches the target similarity;
    ``d = Σ_i g'_i``.
    """

    name = "gradvac"

    def __init__(
        self,
        task_names: Sequence[str],
        mode: str = "param",
        diagnostics_every: int = 10,
        beta: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(task_names, mode, diagnostics_every, seed=seed)
        if not 0 < beta <= 1:
            raise ConfigError(f"weighting.beta (EMA rate of the target similarity) must be in (0, 1], got {beta}")
        self.beta = beta
        k = len(self.task_names)
        self.register_buffer("targets", torch.zeros(k, k, dtype=torch.float64))

    def weights_from_gram(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        coefficients = torch.eye(k, dtype=gram.dtype)
        norms = gram.diagonal().clamp_min(0).sqrt().tolist()
        targets = self.targets.cpu()
        for i in range(k):
            for j in self.permutation(k):
                if j == i or norms[j] == 0:
                    continue
                norm_i = float(coefficients[i] @ gram @ coefficients[i]) ** 0.5
                if norm_i == 0:
                    continue
                phi = float(coefficients[i] @ gram[:, j]) / (norm_i * norms[j])
                target = float(targets[i, j])
                if phi < target:
                    coefficients[i, j] += (
                        norm_i
                        * (target * (1 - phi**2) ** 0.5 - phi * (1 - target**2) ** 0.5)
                        / (norms[j] * (1 - target**2) ** 0.5)
                    )
                targets[i, j] = (1 - self.beta) * target + self.beta * phi
        self.targets.copy_(targets)
        return coefficients.sum(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"
