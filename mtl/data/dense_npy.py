"""Dense-prediction data sets stored as one .npy array per sample and modality (mtan's preprocessed format).

``root/{train,val}/<folder>/<i>.npy`` for i = 0..N-1, one folder per modality: the image (H×W×3, RGB in
[0, 1]), a label map (H×W, −1 = ignore), depth (H×W×1, 0 = invalid) and for NYUv2 surface normals (H×W×3,
0 = invalid). NYUv2 and CityScapes are this module with different folders, sizes and class counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtl.data._files import (
    check_array,
    check_classes,
    check_labels,
    indexed_npy_files,
    load_npy,
    npy_header,
    require_dir,
)
from mtl.data.base import DataModule
from mtl.data.transforms import random_scale_crop_flip
from mtl.errors import ConfigError, DataError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Modality:
    """One per-sample array: its folder under the split and its channels (None: an H×W label map)."""

    folder: str
    channels: int | None


class DenseNpyDataset(Dataset):
    """One split: checks every file's header at construction, every label map when it is loaded.

    ``modalities`` maps ``image`` and each target name (``seg``, ``depth``, ``normal``) to its folder.
    Returns ``(image float 3×H×W, {seg: int64 H×W, depth: float 1×H×W, normal: float 3×H×W})``.
    """

    def __init__(
        self,
        split_dir: Path,
        modalities: Mapping[str, Modality],
        image_size: tuple[int, int],
        num_classes: int,
        augment: bool,
        dataset: str,
        layout: str,
    ) -> None:
        self.split_dir = split_dir
        self.modalities = dict(modalities)
        self.image_size = image_size
        self.num_classes = num_classes
        self.augment = augment
        self.dataset = dataset
        counts = {}
        for name, modality in self.modalities.items():
            folder = require_dir(split_dir / modality.folder, dataset, layout)
            counts[name] = indexed_npy_files(folder, dataset)
        if len(set(counts.values())) != 1:
            found = {self.modalities[name].folder: count for name, count in counts.items()}
            short = min(found, key=found.get)
            raise DataError(
                f"{dataset}: the folders of {split_dir} hold different numbers of samples {found}: "
                f"{split_dir / short / f'{found[short]}.npy'} is missing"
            )
        self.length = next(iter(counts.values()))
        for index in range(self.length):
            for name in self.modalities:
                path = self._path(name, index)
                shape, dtype = npy_header(path)
                check_array(path, shape, dtype, self._expected_shape(name))

    def _path(self, name: str, index: int) -> Path:
        return self.split_dir / self.modalities[name].folder / f"{index}.npy"

    def _expected_shape(self, name: str) -> tuple[int, ...]:
        channels = self.modalities[name].channels
        return self.image_size if channels is None else (*self.image_size, channels)

    def __len__(self) -> int:
        return self.length

    def _load(self, name: str, index: int) -> Tensor:
        path = self._path(name, index)
        array = load_npy(path)
        check_array(path, array.shape, array.dtype, self._expected_shape(name))
        array = torch.from_numpy(np.array(array))
        if self.modalities[name].channels is None:
            check_labels(array, self.num_classes, path, ignore=-1)
            return array.long()
        return array.float().permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        sample = {name: self._load(name, index) for name in self.modalities}
        if self.augment:
            sample = random_scale_crop_flip(sample)
        image = sample.pop("image")
        return image, sample


class DenseNpyData(DataModule):
    """Train (optionally augmented) and val splits of a data set in mtan's per-sample .npy layout.

    Subclasses set ``dataset``, ``default_size`` and ``task_names`` and pass their ``modalities``.
    """

    dataset: ClassVar[str]

    def __init__(
        self,
        root: str | Path,
        modalities: Mapping[str, Modality],
        num_classes: int,
        image_size: Sequence[int],
        augment: bool,
        batch_size: int,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, eval_batch_size)
        size = tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"data.image_size must be [height, width] of positive integers, got {list(image_size)}")
        check_classes(self.dataset, classes, {"seg": num_classes})
        root = Path(root).expanduser()
        layout = self.layout(root, modalities, size)
        require_dir(root, self.dataset, layout)
        self.classes = {"seg": num_classes}
        self.train_dataset = DenseNpyDataset(
            root / "train", modalities, size, num_classes, augment, self.dataset, layout
        )
        self.val_dataset = DenseNpyDataset(root / "val", modalities, size, num_classes, False, self.dataset, layout)

    @classmethod
    def layout(cls, root: Path, modalities: Mapping[str, Modality], size: tuple[int, int]) -> str:
        """The expected layout, shown in every missing-file error."""
        h, w = size
        shapes = {None: f"{h}×{w} labels, −1 = ignore", 1: f"{h}×{w}×1 float", 3: f"{h}×{w}×3 float"}
        lines = [f"  {root}/{{{','.join(SPLITS)}}}/"]
        lines += [f"    {m.folder}/<i>.npy   ({name}: {shapes[m.channels]})" for name, m in modalities.items()]
        lines.append("  with i = 0..N-1 in every folder (see docs/datasets.md)")
        return "\n".join(lines)
