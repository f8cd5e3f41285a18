"""MultiMNIST built from MNIST the way Sener & Koltun (2018, "Multi-Task Learning as Multi-Objective
Optimization", ``multi_mnist_loader.py``) build it.

Every MNIST image is the left digit of one sample; a partner image drawn uniformly at random is the right
digit. On a 36×36 canvas the left digit fills [0:28, 0:28], the right one [6:34, 6:34], overlapping pixels take
the maximum, and the canvas is resized to 28×28 with nearest-neighbour sampling (their ``imresize(...,
interp='nearest')``, i.e. PIL's pixel-centre rule). Tasks: ``left`` and ``right`` digit. Partners are drawn
from ``seed`` (the val split from a different seed), so the data set is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import MNIST

from mtl.data._files import check_classes, require_dir
from mtl.data.base import DataModule
from mtl.errors import DataError

CANVAS = 36
DIGIT = 28
RIGHT_OFFSET = 6
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
"""Normalisation of Sener & Koltun's loader (``transforms.Normalize((0.1307,), (0.3081,))``)."""

LAYOUT = """  {root}/MNIST/raw/train-images-idx3-ubyte
  {root}/MNIST/raw/train-labels-idx1-ubyte
  {root}/MNIST/raw/t10k-images-idx3-ubyte
  {root}/MNIST/raw/t10k-labels-idx1-ubyte
  (torchvision's MNIST layout, uncompressed IDX files; see docs/datasets.md)"""

_RESIZE_INDEX = ((torch.arange(DIGIT) + 0.5) * CANVAS / DIGIT).floor().long()
"""Source row/column of each output pixel in a nearest-neighbour 36 → 28 resize (pixel centres, as PIL)."""


def overlay_digits(left: Tensor, right: Tensor) -> Tensor:
    """Sener & Koltun's composite of uint8 N×28×28 ``left`` and ``right`` digits: N×28×28 uint8."""
    canvas = torch.zeros(left.shape[0], CANVAS, CANVAS, dtype=left.dtype)
    canvas[:, :DIGIT, :DIGIT] = left
    window = canvas[:, RIGHT_OFFSET : RIGHT_OFFSET + DIGIT, RIGHT_OFFSET : RIGHT_OFFSET + DIGIT]
    window.copy_(torch.maximum(window, right))
    return canvas[:, _RESIZE_INDEX][:, :, _RESIZE_INDEX]


def load_mnist(root: Path, train: bool) -> tuple[Tensor, Tensor]:
    """MNIST images (uint8 N×28×28) and labels through torchvision, never downloading; clear errors."""
    layout = LAYOUT.format(root=root)
    require_dir(root, "MultiMNIST", layout)
    try:
        mnist = MNIST(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, ValueError, TypeError) as error:
        if isinstance(error, RuntimeError) and "not found" in str(error):
            raise FileNotFoundError(
                f"MultiMNIST: MNIST files not found under {root}; expected layout:\n{layout}"
            ) from None
        prefix = "train" if train else "t10k"
        raise DataError(
            f"MultiMNIST: {root}/MNIST/raw/{prefix}-*-ubyte is not a valid (uncompressed) MNIST IDX file, e.g. "
            f"truncated ({type(error).__name__}: {error}); expected layout:\n{layout}"
        ) from error
    images, labels = mnist.data, mnist.targets
    if images.shape[1:] != (DIGIT, DIGIT) or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MultiMNIST: {mnist.raw_folder} holds images of shape {tuple(images.shape)} and "
            f"{labels.shape[0]} labels; expected N×28×28 images and N labels"
        )
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:
        raise DataError(f"MultiMNIST: {mnist.raw_folder} has labels outside the digit range 0..9")
    return images, labels


class MultiMNISTDataset(Dataset):
    """One split: composites built once at construction; returns the normalised 1×28×28 image and both digits."""

    def __init__(self, images: Tensor, labels: Tensor, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        partner = torch.randint(len(images), (len(images),), generator=generator)
        self.images = overlay_digits(images, images[partner])
        self.left = labels.clone()
        self.right = labels[partner]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image = (self.images[index][None].float() / 255 - MNIST_MEAN) / MNIST_STD
        return image, {"left": self.left[index], "right": self.right[index]}


class MultiMNISTData(DataModule):
    """MultiMNIST from the MNIST training set (train) and test set (val)."""

    task_names = ("left", "right")

    VAL_SEED_OFFSET = 1_000_003

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, eval_batch_size)
        self.classes = {"digit": 10}
        check_classes("MultiMNIST", classes, self.classes)
        root = Path(root).expanduser()
        self.train_dataset = MultiMNISTDataset(*load_mnist(root, train=True), seed=seed)
        self.val_dataset = MultiMNISTDataset(*load_mnist(root, train=False), seed=seed + self.VAL_SEED_OFFSET)
