"""Equal weighting: the plain sum of the task losses, the baseline every MTL paper reports (as "EW" or "LS")."""

from __future__ import annotations

from torch import Tensor

from mtl.weighting.base import LossWeighting


class EqualWeighting(LossWeighting):
    """Minimise ``Σ_k L_k``; per-task loss weights (``tasks.<name>.weight``) are applied by the trainer."""

    def weights(self, losses: Tensor) -> Tensor:
        return losses.new_ones(losses.shape)
