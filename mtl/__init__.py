"""mtl: multi-task learning with hard and soft parameter sharing, loss weighting and gradient aggregation."""

from mtl.engine.metrics import delta_m

__all__ = ["delta_m"]
__version__ = "0.1.0"
