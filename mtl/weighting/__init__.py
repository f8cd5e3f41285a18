"""Loss weighting schemes and gradient aggregators (one update from K task losses).

Loss-based (one backward pass): EqualWeighting, UncertaintyWeighting, DynamicWeightAverage, RandomLossWeighting,
GeometricLossStrategy, IMTLL, FAMO. Gradient methods (``aggregate(grads: K×P) -> P``, ``mode=param|rep``):
GradNorm, DBMTL, MGDA, PCGrad, GradVac, CAGrad, IMTLG, NashMTL, AlignedMTL, GradDrop, UPGrad. See docs/weighting.md.
"""

from mtl.weighting.balancing import IMTLG, AlignedMTL, NashMTL
from mtl.weighting.base import GradientWeighting, GramWeighting, LossWeighting, Weighting
from mtl.weighting.ew import EqualWeighting
from mtl.weighting.famo import FAMO
from mtl.weighting.graddrop import GradDrop
from mtl.weighting.loss_based import (
    IMTLL,
    DynamicWeightAverage,
    GeometricLossStrategy,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from mtl.weighting.magnitude import DBMTL, GradNorm
from mtl.weighting.min_norm import MGDA, CAGrad, UPGrad
from mtl.weighting.projection import GradVac, PCGrad

__all__ = [
    "DBMTL",
    "FAMO",
    "IMTLG",
    "IMTLL",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "EqualWeighting",
    "GeometricLossStrategy",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientWeighting",
    "GramWeighting",
    "LossWeighting",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
]
