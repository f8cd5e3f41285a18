"""CityScapes (Cordts et al. 2016) as preprocessed by mtan / Auto-Lambda: 7-class (or 19-class) segmentation and
depth at 128×256, 2975 train / 500 val images, stored as ``root/{train,val}/{image,label_7,label_19,depth}``
``/<i>.npy``. Setups follow mtan / Nash-MTL; see docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mtl.data.dense_npy import DenseNpyData, Modality
from mtl.errors import ConfigError

CITYSCAPES_SIZE = (128, 256)
CITYSCAPES_CLASSES = (7, 19)
"""The two label sets of the preprocessed release, in folders ``label_7`` and ``label_19``."""


class CityScapesData(DenseNpyData):
    """CityScapes train/val with ``seg_classes`` (7 or 19) segmentation classes; ``augment`` as for NYUv2."""

    dataset = "CityScapes"
    task_names = ("seg", "depth")

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 8,
        seg_classes: int = 7,
        augment: bool = True,
        image_size: Sequence[int] = CITYSCAPES_SIZE,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        if seg_classes not in CITYSCAPES_CLASSES:
            raise ConfigError(f"data.seg_classes must be one of {list(CITYSCAPES_CLASSES)}, got {seg_classes!r}")
        modalities = {
            "image": Modality("image", 3),
            "seg": Modality(f"label_{seg_classes}", None),
            "depth": Modality("depth", 1),
        }
        super().__init__(
            root, modalities, seg_classes, image_size, augment, batch_size, num_workers, eval_batch_size, classes
        )
