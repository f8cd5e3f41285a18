"""The data-module contract shared by every data set: splits, loaders, and what tasks it provides."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import DataLoader, Dataset

from mtl.errors import ConfigError


class DataModule:
    """Holds the train/val splits of one data set and builds their loaders.

    A batch is ``(images, targets)``: ``images`` is a float tensor B×C×H×W and ``targets`` a dict
    ``{task_name: Tensor}`` with one entry per task the data set provides (see ``task_names``).
    """

    task_names: tuple[str, ...] = ()

    def __init__(self, batch_size: int, num_workers: int = 0, eval_batch_size: int | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.train_dataset: Dataset
        self.val_dataset: Dataset

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C, H, W of one input image."""
        images, _ = self.train_dataset[0]
        return tuple(images.shape)

    def check_tasks(self, names: Mapping[str, object] | list[str]) -> None:
        """Fail early, naming the alternatives, when a task is not provided by this data set."""
        unknown = [name for name in names if name not in self.task_names]
        if unknown:
            raise ConfigError(
                f"task(s) {unknown} are not provided by data set {type(self).__name__}; "
                f"it provides: {list(self.task_names)}"
            )

    def train_loader(self, generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_dataset) >= self.batch_size,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def val_loader(self) -> DataLoader:
        return DataLoader(
            self.val_dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
        )
