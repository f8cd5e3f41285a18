"""Evaluation over a whole split, the trivial-predictor baseline, and Δm% against single-task metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

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


def missing_metrics(metrics: Mapping[str, Iterable[str]], baseline: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The ``task/metric`` names of ``metrics`` (``{task: metric names}``) that ``baseline`` lacks."""
    return [f"{task}/{name}" for task, names in metrics.items() for name in names if name not in baseline.get(task, {})]


def mean_metrics(evaluations: Sequence[Mapping[str, Mapping[str, float]]]) -> Metrics:
    """Metric-wise mean of several evaluations with the same tasks and metrics (the last-N-epochs protocol)."""
    if not evaluations:
        raise ValueError("mean_metrics needs at least one evaluation")
    first = evaluations[0]
    return {
        task: {name: sum(e[task][name] for e in evaluations) / len(evaluations) for name in values}
        for task, values in first.items()
    }


def shipped_baselines() -> list[str]:
    """Names of the published single-task baselines shipped in ``mtl/baselines`` (usable as ``baseline=<name>``)."""
    return sorted(
        item.name.removesuffix(".json")
        for item in resources.files("mtl.baselines").iterdir()
        if item.name.endswith(".json")
    )


def load_baseline(source: str | Path) -> Metrics:
    """Single-task metrics ``{task: {metric: value}}`` from a file, a run directory, or a shipped name.

    ``source`` is a JSON file (either ``{task: {metric: value}}`` or a record with a ``"tasks"`` key, like a run's
    ``metrics.json``), the directory of a run (usually ``strategy=independent``; its ``metrics.json`` is read),
    or the name of a shipped baseline (see :func:`shipped_baselines`).
    """
    path = Path(source)
    if path.is_dir():
        path = path / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"baseline directory {source} has no metrics.json: give a finished run's directory")
    elif not path.is_file():
        shipped = resources.files("mtl.baselines") / f"{source}.json"
        if not shipped.is_file():
            raise FileNotFoundError(
                f"baseline {str(source)!r} is neither a file, a run directory, nor a shipped baseline "
                f"(shipped: {', '.join(shipped_baselines())})"
            )
        return _parse_baseline(json.loads(shipped.read_text()), f"shipped baseline {source}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"baseline file {path} is not valid JSON ({error})") from None
    return _parse_baseline(data, str(path))


def _parse_baseline(data: object, where: str) -> Metrics:
    tasks = data.get("tasks", data) if isinstance(data, Mapping) else None
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(f"baseline {where} must map task -> {{metric: value}} (or hold that under 'tasks')")
    result: Metrics = {}
    for task, values in tasks.items():
        if not isinstance(values, Mapping) or not all(isinstance(v, int | float) for v in values.values()):
            raise ValueError(f"baseline {where}: task {task!r} must map metric names to numbers, got {values!r}")
        result[task] = {name: float(value) for name, value in values.items()}
    return result


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
