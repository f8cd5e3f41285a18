"""The weighting contract: per-task losses (and, for gradient methods, per-task gradients) → one update.

Two families share the :class:`Weighting` interface ``backward(losses, strategy) -> logs``:

- :class:`LossWeighting` rescales the losses and runs one backward pass of their weighted sum;
- :class:`GradientWeighting` computes the K×P matrix of per-task gradients (of the shared parameters in
  ``mode="param"``, of the shared representation in ``mode="rep"``), lets ``aggregate`` turn it into one
  P-vector, and writes that back as the gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.strategies.base import Images, SharingStrategy, predict
from mtl.weighting.gradients import per_task_grads, set_flat_grad

MODES = ("param", "rep")


class Weighting(nn.Module):
    """Base class of every weighting scheme; ``task_names`` fixes the order of the loss vector."""

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        if not task_names:
            raise ConfigError(f"{type(self).__name__} needs at least one task name")
        self.task_names = list(task_names)

    def predict(self, strategy: SharingStrategy, images: Images) -> dict[str, Tensor]:
        """The forward pass whose predictions ``backward`` will see (rep-mode methods hook in here)."""
        return predict(strategy, images)

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        """Backpropagate one update into ``.grad`` of the strategy's parameters; return scalars to log."""
        raise NotImplementedError

    def stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The losses as a K-vector in ``task_names`` order (a mismatch is a wiring bug: say which)."""
        if set(losses) != set(self.task_names):
            raise ValueError(
                f"{type(self).__name__} was built for tasks {self.task_names} but got losses for {list(losses)}"
            )
        return torch.stack([losses[name] for name in self.task_names])

    def weight_logs(self, weights: Tensor) -> dict[str, float]:
        return {f"weight/{name}": float(w) for name, w in zip(self.task_names, weights.tolist(), strict=True)}

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}"


class LossWeighting(Weighting):
    """Schemes that only rescale the losses: one backward pass of ``Σ_k w_k · L_k``."""

    def weights(self, losses: Tensor) -> Tensor:
        """The K weights for the (detached) loss vector; subclasses override this or ``combine``."""
        raise NotImplementedError

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """The scalar to backpropagate and the weights to log."""
        weights = self.weights(losses.detach())
        return (weights * losses).sum(), weights

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        total, weights = self.combine(self.stack(losses))
        total.backward()
        return self.weight_logs(weights.detach())


class GradientWeighting(Weighting):
    """Methods that combine per-task gradients: subclasses implement ``aggregate(grads: K×P) -> P``.

    ``mode="param"``: exact per-task gradients of ``strategy.shared_parameters()`` (one forward, K backward
    passes through the trunk); task-specific parameters receive their own task's gradient.
    ``mode="rep"``: per-task gradients of the shared representation ``z = strategy.encode(x)`` through the
    heads only; the aggregated gradient is backpropagated through the encoder once.
    """

    def __init__(self, task_names: Sequence[str], mode: str = "param") -> None:
        super().__init__(task_names)
        if mode not in MODES:
            raise ConfigError(f"weighting.mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._representation: tuple[Tensor, Tensor] | None = None

    def aggregate(self, grads: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, strategy: SharingStrategy, images: Images) -> dict[str, Tensor]:
        if self.mode == "param":
            return predict(strategy, images)
        if not isinstance(images, Tensor):
            raise ConfigError(
                "weighting.mode=rep needs one input shared by all tasks; this data set gives each task its own "
                "input (multi-input): use weighting.mode=param"
            )
        if not strategy.supports_rep_mode:
            raise ConfigError(
                f"weighting.mode=rep needs a strategy with one shared representation (encode/decode); "
                f"{type(strategy).__name__} has none: use weighting.mode=param"
            )
        z = strategy.encode(images)
        z_leaf = z.detach().requires_grad_(True)
        self._representation = (z, z_leaf)
        return strategy.decode(z_leaf)

    def backward(self, losses: Mapping[str, Tensor], strategy: SharingStrategy) -> dict[str, float]:
        stacked = list(self.stack(losses).unbind())
        if self.mode == "param":
            params = [p for p in strategy.shared_parameters() if p.requires_grad]
            grads = per_task_grads(stacked, params)
            set_flat_grad(params, self.aggregate(grads))
        else:
            if self._representation is None:
                raise RuntimeError("rep-mode backward() called without a preceding predict()")
            z, z_leaf = self._representation
            self._representation = None
            grads = per_task_grads(stacked, [z_leaf])
            z.backward(self.aggregate(grads).view_as(z))
        norms = grads.norm(dim=1)
        return {f"grad_norm/{name}": float(n) for name, n in zip(self.task_names, norms.tolist(), strict=True)}

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, mode={self.mode!r}"
