"""Training loop, evaluation bookkeeping, checkpoints and TensorBoard logging."""

from mtl.engine.metrics import delta_m, evaluate
from mtl.engine.trainer import Trainer

__all__ = ["Trainer", "delta_m", "evaluate"]
