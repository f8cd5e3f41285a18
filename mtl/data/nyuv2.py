"""NYUv2 (Silberman et al. 2012) as preprocessed by mtan (Liu et al. 2019): 13-class segmentation, depth and
surface normals at 288×384, 795 train / 654 val images, stored as ``root/{train,val}/{image,label,depth,normal}``
``/<i>.npy``. Setups follow mtan / Nash-MTL; see docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mtl.data.dense_npy import DenseNpyData, Modality

NYUV2_CLASSES = 13
NYUV2_SIZE = (288, 384)
NYUV2_MODALITIES = {
    "image": Modality("image", 3),
    "seg": Modality("label", None),
    "depth": Modality("depth", 1),
    "normal": Modality("normal", 3),
}


class NYUv2Data(DenseNpyData):
    """NYUv2 train/val; ``augment`` applies mtan's random scale crop and flip to the training split."""

    dataset = "NYUv2"
    task_names = ("seg", "depth", "normal")

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 2,
        augment: bool = True,
        image_size: Sequence[int] = NYUV2_SIZE,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(
            root,
            NYUV2_MODALITIES,
            NYUV2_CLASSES,
            image_size,
            augment,
            batch_size,
            num_workers,
            eval_batch_size,
            classes,
        )
