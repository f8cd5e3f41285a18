"""Pictures of dense predictions for TensorBoard: input | target | prediction, one row per image."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.utils import make_grid

from mtl.tasks import DepthTask, NormalTask, SegmentationTask, Task


def _palette(num_classes: int) -> Tensor:
    """A fixed, well-separated colour per class (class 0 dark grey)."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(num_classes, 3, generator=generator) * 0.8 + 0.2
    colours[0] = 0.15
    return colours


def _unit_range(images: Tensor) -> Tensor:
    """Min-max scale each image to [0, 1] (per image, so dark and bright scenes both show)."""
    flat = images.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    scale = (high - low).clamp_min(1e-8)
    return ((flat - low[:, None]) / scale[:, None]).view_as(images)


def render(task: Task, values: Tensor, is_target: bool) -> Tensor | None:
    """An RGB picture in [0, 1] of a prediction or target of a dense task; None for tasks with no picture."""
    values = values.detach().float().cpu()
    if isinstance(task, SegmentationTask):
        classes = values if is_target else values.argmax(1)
        classes = classes.clamp_min(0).long()
        return _palette(task.num_classes)[classes].permute(0, 3, 1, 2)
    if isinstance(task, DepthTask):
        return _unit_range(values).expand(-1, 3, -1, -1)
    if isinstance(task, NormalTask):
        unit = torch.nn.functional.normalize(values, dim=1)
        return (unit + 1) / 2
    return None


def prediction_grid(task: Task, images: Tensor, target: Tensor, prediction: Tensor) -> Tensor | None:
    """A grid with one row per image: input, target, prediction."""
    target_rgb = render(task, target, is_target=True)
    prediction_rgb = render(task, prediction, is_target=False)
    if target_rgb is None or prediction_rgb is None:
        return None
    inputs = _unit_range(images.detach().float().cpu())
    if inputs.shape[1] == 1:
        inputs = inputs.expand(-1, 3, -1, -1)
    rows = torch.stack([inputs, target_rgb, prediction_rgb], dim=1).flatten(0, 1)
    return make_grid(rows, nrow=3, padding=2, pad_value=1.0)
