"""Evaluation over a whole split, the trivial-predictor baseline, and Δm% against single-task metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from mtl.strategies.base import Images
from mtl.tasks import Task

Metrics = dict[str, dict[str, float]]


def delta_m(
    metrics: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    higher_is_better: Mapping[str, Mapping[str, bool]],
) -> float:
    """Δm% = (1/M) Σ (−1)^{higher_is_better} (M_method − M_stl) / M_stl · 100 over all metrics of all tasks.

    The Nash-MTL / FAMO definition (lower is better: negative means better than single-task learning). Every
    metric of ``metrics`` must be in ``baseline`` and ``higher_is_better``; a missing one is an error.
    """
    terms = []
    for task, values in metrics.items():
        for name, value in values.items():
            try:
                reference = baseline[task][name]
                higher = higher_is_better[task][name]
            except KeyError as error:
                raise KeyError(
                    f"Δm needs a baseline value and a direction for every metric; missing {task}/{name} "
                    f"(key {error}) in the baseline or higher_is_better"
                ) from None
            if reference == 0:
                raise ValueError(f"Δm is undefined: the baseline value of {task}/{name} is 0")
            sign = -1.0 if higher else 1.0
            terms.append(sign * (value - reference) / reference * 100.0)
    if not terms:
        raise ValueError("Δm needs at least one metric")
    return sum(terms) / len(terms)


def _to_float(values: Mapping[str, Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in values.items()}


def to_device(images: Images, device: torch.device) -> Images:
    """Move one input tensor, or a dict of per-task inputs, to ``device``."""
    if isinstance(images, Tensor):
        return images.to(device, non_blocking=True)
    return {name: value.to(device, non_blocking=True) for name, value in images.items()}


@torch.no_grad()
def evaluate(
    predict: Callable[[Images], Mapping[str, Tensor]],
    tasks: Mapping[str, Task],
    batches: Iterable[tuple[Images, dict[str, Tensor]]],
    device: torch.device,
) -> Metrics:
    """Metrics of every task over all ``batches`` (states accumulate; nothing is averaged per batch).

    ``predict`` maps a batch's images to ``{task: prediction}``, e.g.
    ``functools.partial(mtl.strategies.base.predict, strategy)``.
    """
    collections = {name: task.metrics().to(device) for name, task in tasks.items()}
    for images, targets in batches:
        predictions = predict(to_device(images, device))
        for name, collection in collections.items():
            collection.update(predictions[name].float(), targets[name].to(device, non_blocking=True))
    return {name: _to_float(collection.compute()) for name, collection in collections.items()}


@torch.no_grad()
def trivial_baseline(
    tasks: Mapping[str, Task],
    batches: Iterable[tuple[Images, dict[str, Tensor]]],
    sequence_steps: Mapping[str, int],
) -> Metrics:
    """Metrics of the best constant predictor of each task (majority class, mean depth, mean normal, ...).

    Two passes over ``batches`` (a re-iterable such as a DataLoader): one to fit the constants, one to score
    them with the tasks' own metrics. ``sequence_steps`` gives the number of time steps of sequence outputs.
    """
    constants = {
        name: task.constant_prediction((targets[name] for _, targets in batches), steps=sequence_steps.get(name))
        for name, task in tasks.items()
    }

    def predict(images: Images) -> dict[str, Tensor]:
        sizes = {name: (images if isinstance(images, Tensor) else images[name]).shape[0] for name in constants}
        return {name: constant.expand(sizes[name], *constant.shape) for name, constant in constants.items()}

    return evaluate(predict, tasks, batches, torch.device("cpu"))
