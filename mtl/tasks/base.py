"""The task contract: what a task's head must output, how it is trained (loss) and judged (metrics)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
import torchmetrics
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mtl.errors import ConfigError


class Task:
    """A named prediction problem: a loss to train on and metrics to evaluate with.

    Subclasses set ``output`` (the layout of the head output they consume: ``"map"`` B×C×H×W,
    ``"vector"`` B×C or ``"sequence"`` B×T×C) and ``default_head`` (the head spec used when the
    config gives none), and implement ``out_channels``, ``loss``, ``metrics`` and
    ``constant_prediction``.
    """

    output: ClassVar[str]
    default_head: ClassVar[dict[str, Any]]

    def __init__(self, name: str, weight: float = 1.0, head: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"task name must be a non-empty string, got {name!r}")
        self.name = name
        self.weight = check_number(weight, f"task '{name}': weight", minimum=0.0)
        self.head = self._head_spec(head)

    def _head_spec(self, head: Mapping[str, Any] | None) -> dict[str, Any]:
        """The head spec as a plain dict; a spec without ``name`` gives options for the default head."""
        if head is None:
            return dict(self.default_head)
        if isinstance(head, DictConfig):
            head = OmegaConf.to_container(head, resolve=True)
        if not isinstance(head, Mapping):
            raise ConfigError(f"task '{self.name}': head must be a mapping like {{name: ..., <options>}}, got {head!r}")
        spec = dict(head)
        spec.setdefault("name", self.default_head["name"])
        if not isinstance(spec["name"], str) or not spec["name"]:
            raise ConfigError(f"task '{self.name}': head.name must be a non-empty string, got {spec['name']!r}")
        return spec

    @property
    def out_channels(self) -> int:
        """Number of channels (classes, labels, outputs) the head must produce."""
        raise NotImplementedError

    @property
    def higher_is_better(self) -> dict[str, bool]:
        """For each metric name of ``metrics()``: whether a larger value is better.

        Read from the metric objects themselves so that it cannot drift from ``metrics()``.
        """
        result = {}
        for key, metric in self.metrics().items():
            if metric.higher_is_better is None:
                raise TypeError(f"metric '{key}' of task '{self.name}' does not declare higher_is_better")
            result[key] = bool(metric.higher_is_better)
        return result

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar training loss, averaged over the batch (and over valid pixels / elements)."""
        raise NotImplementedError

    def metrics(self) -> torchmetrics.MetricCollection:
        """A new collection of metrics, keyed by metric name, accumulated over a whole evaluation set.

        ``update(pred, target)`` takes the head output and the target exactly as ``loss`` does.
        """
        raise NotImplementedError

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """The best trivial constant prediction, from one streaming pass over batches of targets.

        Returns one sample's head output (no batch dimension); expanded to a batch and fed to
        ``metrics()`` it gives the trivial baseline. ``steps`` is the number of time steps of a
        sequence output (only sequence tasks use it). Map tasks take the spatial size of the
        first batch.
        """
        raise NotImplementedError

    def _repr_options(self) -> dict[str, Any]:
        """Task-specific options shown by ``repr``."""
        return {}

    def __repr__(self) -> str:
        options = {"name": self.name, "weight": self.weight, **self._repr_options(), "head": self.head}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in options.items())})"


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (still differentiable) when nothing is valid.

    Uses ``where`` rather than indexing so that invalid entries (possibly inf/nan) never reach the sum.
    """
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def log_frequencies(counts: Tensor) -> Tensor:
    """Log relative frequencies of a 1-D tensor of class counts.

    These are the constant logits with the lowest cross-entropy, and their argmax is the majority
    class; an absent class gets a large negative but finite logit.
    """
    counts = counts.double()
    return (counts / counts.sum()).clamp(min=1e-12).log().float()


def iterate_targets(targets: Iterable[Tensor], task: str) -> Iterator[Tensor]:
    """Yield the target batches (detached), failing clearly when there are none."""
    empty = True
    for batch in targets:
        empty = False
        yield batch.detach()
    if empty:
        raise ValueError(f"task '{task}': constant_prediction needs at least one batch of targets")


def check_int(value: Any, what: str, minimum: int) -> int:
    """``value`` as an int, or ConfigError if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value: Any, what: str, minimum: float, below: float | None = None) -> float:
    """``value`` as a float, or ConfigError if it is not a finite number in [minimum, below)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= minimum and (below is None or value < below)
    if not ok:
        bound = f"in [{minimum}, {below})" if below is not None else f">= {minimum}"
        raise ConfigError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_layout(task: str, pred: Tensor, target: Tensor, pred_layout: str, target_layout: str, **fixed: int) -> None:
    """Raise a ValueError naming the expected layouts unless pred and target match them.

    Layouts are space-separated dimension names (e.g. ``"B C H W"``); a name used twice must have
    the same size everywhere, and ``fixed`` pins sizes (e.g. ``C=5``).
    """
    sizes = dict(fixed)
    ok = True
    for tensor, layout in ((pred, pred_layout), (target, target_layout)):
        dims = layout.split()
        ok = ok and tensor.ndim == len(dims)
        for dim, size in zip(dims, tensor.shape, strict=False):
            ok = ok and sizes.setdefault(dim, size) == size
    if not ok:
        pinned = "".join(f", {dim}={size}" for dim, size in fixed.items())
        raise ValueError(
            f"task '{task}': expected prediction {pred_layout} and target {target_layout}{pinned}; "
            f"got prediction {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
