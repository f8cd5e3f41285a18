"""Loss weighting schemes and gradient aggregators (one update from K task losses)."""

from mtl.weighting.base import GradientWeighting, LossWeighting, Weighting
from mtl.weighting.ew import EqualWeighting

__all__ = ["EqualWeighting", "GradientWeighting", "LossWeighting", "Weighting"]
