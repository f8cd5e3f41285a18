"""CelebA (Liu et al. 2015): 40 binary face attributes, in torchvision's folder layout, images resized to 64×64
as in FAMO (Liu et al. 2023, ``experiments/celeba/data.py``: ``Resize((64, 64))`` then ``ToTensor``).

The files are read here rather than through ``torchvision.datasets.CelebA``: torchvision insists on the MD5s
of all five annotation files (so no test fixture can pass it, and it also requires the identity, bbox and
landmark files that attribute tasks never use). The layout and parsing are torchvision's; with
``check_md5: true`` the two files read are verified against torchvision's own checksums.

Tasks: ``attributes`` (one multilabel task, 40 labels) and one binary task per attribute, named by its
lower-cased header name (``smiling``, ``5_o_clock_shadow``, ...) with a 1-element target.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import CelebA
from torchvision.datasets.utils import check_integrity

from mtl.data._files import check_classes, load_rgb, require_dir, require_file
from mtl.data.base import DataModule
from mtl.errors import ConfigError, DataError

ATTRIBUTES_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
SPLITS = {"train": 0, "valid": 1, "test": 2}
NUM_ATTRIBUTES = 40

LAYOUT = """  {root}/celeba/img_align_celeba/000001.jpg ...   (aligned and cropped JPEGs)
  {root}/celeba/list_attr_celeba.txt     (line 1: count; line 2: 40 names; then '<file> ±1 ×40')
  {root}/celeba/list_eval_partition.txt  ('<file> <0 train | 1 valid | 2 test>')
  (torchvision's CelebA layout; see docs/datasets.md)"""


def read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Attribute names and ``{file: [0/1] × 40}`` from ``list_attr_celeba.txt`` (±1 in the file)."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line, a line of {NUM_ATTRIBUTES} attribute names, then rows")
    names = lines[1].split()
    if len(names) != NUM_ATTRIBUTES:
        raise DataError(f"{path}:2: expected {NUM_ATTRIBUTES} attribute names, found {len(names)}")
    rows: dict[str, list[int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != NUM_ATTRIBUTES + 1 or any(value not in ("1", "-1") for value in fields[1:]):
            raise DataError(
                f"{path}:{number}: expected '<file> ' then {NUM_ATTRIBUTES} values of 1 or -1, got {line!r}"
            )
        rows[fields[0]] = [int(value == "1") for value in fields[1:]]
    if lines[0].strip() != str(len(rows)):
        raise DataError(f"{path}:1: the count line says {lines[0].strip()!r} but the file has {len(rows)} rows")
    return names, rows


def read_partition(path: Path, split: int) -> list[str]:
    """Files of one split (0 train, 1 valid, 2 test) from ``list_eval_partition.txt``, in file order."""
    files = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{number}: expected '<file> <0|1|2>', got {line!r}")
        if int(fields[1]) == split:
            files.append(fields[0])
    return files


class CelebADataset(Dataset):
    """One split: ``(image float 3×S×S in [0, 1], {attributes: int64 40, <attribute>: int64 1})``."""

    def __init__(self, folder: Path, files: list[str], labels: Tensor, names: list[str], image_size: int) -> None:
        self.folder = folder
        self.files = files
        self.labels = labels
        self.task_index = {name.lower(): i for i, name in enumerate(names)}
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        size = (self.image_size, self.image_size)
        image = load_rgb(self.folder / self.files[index], size, f"CelebA's {PARTITION_FILE}")
        labels = self.labels[index]
        targets = {"attributes": labels}
        targets.update({name: labels[i : i + 1] for name, i in self.task_index.items()})
        return image, targets


class CelebAData(DataModule):
    """CelebA train split and the ``eval_split`` (``valid`` or ``test``) for evaluation."""

    task_names = ("attributes",)

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 256,
        image_size: int = 64,
        eval_split: str = "valid",
        check_md5: bool = False,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        classes: Mapping | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, eval_batch_size)
        if eval_split not in ("valid", "test"):
            raise ConfigError(f"data.eval_split must be 'valid' or 'test', got {eval_split!r}")
        self.classes = {"attributes": NUM_ATTRIBUTES}
        check_classes("CelebA", classes, self.classes)
        folder = Path(root).expanduser() / CelebA.base_folder
        layout = LAYOUT.format(root=Path(root).expanduser())
        require_dir(folder, "CelebA", layout)
        images = require_dir(folder / IMAGE_DIR, "CelebA", layout)
        attributes_file = require_file(folder / ATTRIBUTES_FILE, "CelebA", layout)
        partition_file = require_file(folder / PARTITION_FILE, "CelebA", layout)
        if check_md5:
            verify_md5(attributes_file, partition_file)
        names, rows = read_attributes(attributes_file)
        self.attribute_names = names
        self.task_names = ("attributes", *(name.lower() for name in names))
        self.train_dataset = self._split(partition_file, "train", rows, images, names, image_size)
        self.val_dataset = self._split(partition_file, eval_split, rows, images, names, image_size)

    @staticmethod
    def _split(
        partition: Path, split: str, rows: Mapping[str, list[int]], images: Path, names: list[str], image_size: int
    ) -> CelebADataset:
        files = read_partition(partition, SPLITS[split])
        if not files:
            raise DataError(f"{partition}: the {split!r} split (code {SPLITS[split]}) lists no images")
        missing = [name for name in files if name not in rows]
        if missing:
            raise DataError(f"{partition}: {len(missing)} file(s) have no row in {ATTRIBUTES_FILE}, e.g. {missing[0]}")
        labels = torch.tensor([rows[name] for name in files], dtype=torch.long)
        return CelebADataset(images, files, labels, names, image_size)


def verify_md5(*paths: Path) -> None:
    """Compare annotation files with the MD5s torchvision lists for the official release."""
    expected = {filename: md5 for _, md5, filename in CelebA.file_list}
    for path in paths:
        if not check_integrity(str(path), expected[path.name]):
            raise DataError(
                f"{path}: MD5 differs from the official release ({expected[path.name]}); "
                "re-download it or set data.check_md5=false"
            )
