"""Per-sample tasks (head output B×C): multiclass and multilabel classification, and regression."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mtl.errors import ConfigError
from mtl.tasks.base import Task, check_int, check_layout, check_number, iterate_targets, log_frequencies
from mtl.tasks.metrics import (
    MeanAbsoluteErrorAnyShape,
    MultilabelAccuracyFromLogits,
    MultilabelMacroF1FromLogits,
    RootMeanSquaredErrorAnyShape,
)


class VectorTask(Task):
    """A task whose head outputs one vector per sample."""

    output = "vector"
    default_head = {"name": "pooled"}


class ClassificationTask(VectorTask):
    """Multiclass classification: logits B×C against int64 labels B.

    ``f1`` is torchmetrics' macro F1, which leaves out classes absent from both predictions and targets.
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        weight: float = 1.0,
        head: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(name, weight, head)
        self.num_classes = check_int(num_classes, f"task '{name}': num_classes", minimum=2)
        self.label_smoothing = check_number(label_smoothing, f"task '{name}': label_smoothing", minimum=0.0, below=1.0)

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def _repr_options(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "label_smoothing": self.label_smoothing}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy (with optional label smoothing) averaged over the batch."""
        check_layout(self.name, pred, target, "B C", "B", C=self.num_classes)
        return F.cross_entropy(pred, target, label_smoothing=self.label_smoothing)

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection(
            {
                "accuracy": MulticlassAccuracy(self.num_classes, average="micro"),
                "f1": MulticlassF1Score(self.num_classes, average="macro"),
            }
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """Logits of the class frequencies, whose argmax is the majority class."""
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        for target in iterate_targets(targets, self.name):
            counts += torch.bincount(target.flatten().cpu(), minlength=self.num_classes)
        return log_frequencies(counts)


class MultilabelTask(VectorTask):
    """Multilabel classification: logits B×L against {0, 1} targets B×L.

    ``accuracy`` is per element (micro); ``f1`` is macro over labels, leaving out labels neither present
    nor predicted (see ``MultilabelMacroF1FromLogits``).
    """

    def __init__(self, name: str, num_labels: int, weight: float = 1.0, head: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, weight, head)
        self.num_labels = check_int(num_labels, f"task '{name}': num_labels", minimum=1)

    @property
    def out_channels(self) -> int:
        return self.num_labels

    def _repr_options(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Binary cross-entropy on logits, averaged over samples and labels."""
        check_layout(self.name, pred, target, "B L", "B L", L=self.num_labels)
        return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype))

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection(
            {
                "accuracy": MultilabelAccuracyFromLogits(self.num_labels, average="micro"),
                "f1": MultilabelMacroF1FromLogits(self.num_labels),
            }
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """Log-odds of each label's positive rate: positive exactly where the label is mostly 1."""
        positives = torch.zeros(self.num_labels, dtype=torch.float64)
        count = 0
        for target in iterate_targets(targets, self.name):
            matrix = target.reshape(-1, self.num_labels)
            positives += matrix.double().sum(dim=0).cpu()
            count += matrix.shape[0]
        rate = (positives / count).clamp(1e-6, 1 - 1e-6)
        return torch.logit(rate).float()


class RegressionTask(VectorTask):
    """Regression of ``out_dim`` values: B×D against float B×D targets (B accepted when D = 1)."""

    LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}

    def __init__(
        self,
        name: str,
        out_dim: int = 1,
        loss: str = "l1",
        weight: float = 1.0,
        head: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, weight, head)
        self.out_dim = check_int(out_dim, f"task '{name}': out_dim", minimum=1)
        if loss not in self.LOSSES:
            raise ConfigError(f"task '{name}': loss must be one of {list(self.LOSSES)}, got {loss!r}")
        self.loss_name = loss

    @property
    def out_channels(self) -> int:
        return self.out_dim

    def _repr_options(self) -> dict[str, Any]:
        return {"out_dim": self.out_dim, "loss": self.loss_name}

    def _as_matrix(self, target: Tensor) -> Tensor:
        """The target as B×D (a B target is read as B×1)."""
        return target[:, None] if target.ndim == 1 and self.out_dim == 1 else target

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """L1 or mean squared error, averaged over samples and outputs."""
        target = self._as_matrix(target)
        check_layout(self.name, pred, target, "B D", "B D", D=self.out_dim)
        return self.LOSSES[self.loss_name](pred, target.to(pred.dtype))

    def metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection(
            {"mae": MeanAbsoluteErrorAnyShape(), "rmse": RootMeanSquaredErrorAnyShape()}
        )

    def constant_prediction(self, targets: Iterable[Tensor], steps: int | None = None) -> Tensor:
        """The mean target of every output."""
        total = torch.zeros(self.out_dim, dtype=torch.float64)
        count = 0
        for target in iterate_targets(targets, self.name):
            matrix = self._as_matrix(target).reshape(-1, self.out_dim)
            total += matrix.double().sum(dim=0).cpu()
            count += matrix.shape[0]
        return (total / count).float()
