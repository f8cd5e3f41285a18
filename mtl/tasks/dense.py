"""Per-pixel tasks (head output B×C×H×W): semantic segmentation, depth and surface normals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from mtl.errors import ConfigError
from mtl.tasks.base import Task, check_int, check_layout, iterate_targets, log_frequencies, masked_mean
from mtl.tasks.metrics import (
    DepthError,
    NormalAngleError,
    NormalAngleWithin,
    channel_norm,
    depth_valid,
    normal_valid,
)


class DenseTask(Task):
    """A task whose head outputs a per-pixel map."""

    output = "map"
    default_head = {"name": "dense"}


class SegmentationTask(DenseTask):
    """Semantic segmentation: logits B×C×H×W against int64 labels B×H×W, ``ignore_index`` = unlabelled.

    ``miou`` is torchmetrics' macro ``MulticlassJaccardIndex``: a class absent from both the predictions
    and the targets of the whole evaluation set is left out of the mean (torchmetrics >= 1.x gives it
    weight 0), while a class that is only predicted counts with IoU 0.
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        ignore_index: int = -1,
        weight: float = 1.0,
        head: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, weight, head)
        self.num_classes = check_int(num_classes, f"task '{name}': num_classes", minimum=2)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or 0 <= ignore_index < num_classes:
            raise ConfigError(
                f"task '{name}': ignore_index must be an integer outside the class range [0, {num_classes}), "
                f"got {ignore_index!r}"
            )
        self.ignore_index = ignore_index

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def _repr_options(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over labelled pixels (0 when a batch has none, rather than NaN)."""
        check_layout(self.name, pred, target, "B C H W", "B H W", C=self.num_classes)
        per_pixel = F.cross_entropy(pred, target, ignore_index=self.ignore_index, reduction="none")
        return masked_mean(per_pixel, target != self.ignore_index)

    def metrics(self) -> torchmetrics.MetricCollection:
        common = {"num_classes": self.num_classes, "ignore_index": self.ignore_index}
        return torchmetrics.MetricCollection(
            {
                "miou": MulticlassJaccardIndex(average="macro", **common),
                "pixel_acc": MulticlassAccuracy(average="micro", **common),
            }
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """Log class frequencies of labelled pixels, at every pixel: all pixels predict the majority class."""
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        for target in iterate_targets(targets, self.name):
            size = target.shape[-2:]
            labelled = target[target != self.ignore_index]
            counts += torch.bincount(labelled.flatten().cpu(), minlength=self.num_classes)
        return log_frequencies(counts)[:, None, None].expand(-1, *size).clone()


class DepthTask(DenseTask):
    """Depth regression: B×1×H×W against float B×1×H×W targets, where depth <= 0 marks invalid pixels."""

    @property
    def out_channels(self) -> int:
        return 1

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """L1 error averaged over valid pixels."""
        check_layout(self.name, pred, target, "B C H W", "B C H W", C=1)
        return masked_mean((pred - target).abs(), depth_valid(target))

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection({"abs_err": DepthError("abs"), "rel_err": DepthError("rel")})

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """The mean depth over all valid pixels, at every pixel."""
        total, count = torch.tensor(0.0, dtype=torch.float64), 0
        for target in iterate_targets(targets, self.name):
            size = target.shape[-2:]
            valid = depth_valid(target)
            total += target[valid].double().sum().cpu()
            count += int(valid.sum())
        mean = (total / count).float() if count else torch.tensor(0.0)
        return mean.expand(1, *size).clone()


class NormalTask(DenseTask):
    """Surface normals: B×3×H×W (normalised here) against unit B×3×H×W targets; zero vector = invalid.

    Metrics follow the MTAN / Nash-MTL tables: angle mean and median in degrees, and the percent of
    pixels within 11.25°, 22.5° and 30° (named ``within_11_25``, ``within_22_5``, ``within_30``: metric
    collections are module dicts, whose keys cannot contain "."); see ``NormalAngleError`` for the
    median's resolution.
    """

    @property
    def out_channels(self) -> int:
        return 3

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """1 − cosine similarity, averaged over valid pixels."""
        check_layout(self.name, pred, target, "B C H W", "B C H W", C=3)
        cosine = (pred * target).sum(dim=1) / (channel_norm(pred) * channel_norm(target))
        return masked_mean(1 - cosine, normal_valid(target))

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection(
            {
                "angle_mean": NormalAngleError("mean"),
                "angle_median": NormalAngleError("median"),
                "within_11_25": NormalAngleWithin(11.25),
                "within_22_5": NormalAngleWithin(22.5),
                "within_30": NormalAngleWithin(30.0),
            }
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """The normalised mean of all valid target normals, at every pixel."""
        total = torch.zeros(3, dtype=torch.float64)
        for target in iterate_targets(targets, self.name):
            size = target.shape[-2:]
            valid = normal_valid(target)
            total += target.movedim(1, -1)[valid].double().sum(dim=0).cpu()
        return F.normalize(total.float(), dim=0)[:, None, None].expand(-1, *size).clone()
