"""GradDrop, Chen et al., "Just pick a sign: optimizing deep multitask models with gradient sign dropout", 2020."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.weighting.base import GradientWeighting, Stochastic


class GradDrop(Stochastic, GradientWeighting):
    """Per coordinate, keep only the gradients of one sign, chosen at random in proportion to its purity.

    ``P = ½ (1 + Σ_k g_k / Σ_k |g_k|)``, ``U ~ U[0, 1)``; task k keeps a coordinate when ``P > U`` and
    ``g_k > 0`` or ``P < U`` and ``g_k < 0``; ``d = Σ_k mask_k ⊙ g_k``. The paper applies it to activations
    (``mode=rep``; its batch-sum of the purity is not done here: every coordinate of ``z`` is its own) and
    without leak. It has no per-task weights to log.
    """

    name = "graddrop"

    def aggregate(self, grads: Tensor) -> Tensor:
        purity = 0.5 * (1 + grads.sum(0) / grads.abs().sum(0).clamp_min(torch.finfo(grads.dtype).tiny))
        draw = self.uniform(grads.shape[1], grads.device).to(grads.dtype)
        positive = (purity > draw).unsqueeze(0)
        keep = torch.where(positive, grads > 0, grads < 0)
        return (grads * keep).sum(0)
