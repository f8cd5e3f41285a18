"""Checked file access shared by the on-disk loaders: every failure names the file and the expected format.

A loader describes its expected layout once (a short text block); these helpers put that block into the
``FileNotFoundError`` raised for a missing root or file, and name the file in the ``DataError`` raised for a
truncated array, a wrong shape or dtype, a label out of range, or an empty split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import functional as TF

from mtl.errors import ConfigError, DataError

NPY_NAME = re.compile(r"^(\d+)\.npy$")
"""Per-sample array files are named ``<index>.npy`` with indices 0..N-1 (mtan's preprocessing)."""


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """``path`` if it is a directory, else a FileNotFoundError that shows the expected layout."""
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: directory {path} not found; expected layout:\n{layout}")
    return path


def require_file(path: Path, dataset: str, layout: str) -> Path:
    """``path`` if it is a file, else a FileNotFoundError that shows the expected layout."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: file {path} not found; expected layout:\n{layout}")
    return path


def indexed_npy_files(folder: Path, dataset: str) -> int:
    """Number N of samples in ``folder``, which must hold exactly ``0.npy`` .. ``<N-1>.npy``."""
    indices = sorted(int(match[1]) for name in _names(folder) if (match := NPY_NAME.match(name)))
    if not indices:
        raise DataError(f"{dataset}: {folder} holds no <index>.npy files; the split is empty")
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))[:5]
        raise DataError(
            f"{dataset}: {folder} must hold 0.npy .. {indices[-1]}.npy without gaps; missing e.g. "
            f"{', '.join(f'{i}.npy' for i in missing)}"
        )
    return len(indices)


def _names(folder: Path) -> Iterable[str]:
    return (entry.name for entry in folder.iterdir())


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file, read without loading it (a memory map checks the file is complete)."""
    array = load_npy(path, mmap=True)
    return tuple(array.shape), array.dtype


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load(path)``; an unreadable or truncated file is a DataError naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as error:
        raise DataError(
            f"{path}: cannot be read as a NumPy .npy array ({error}); the file may be truncated or corrupt"
        ) from error


def check_array(path: Path, shape: tuple[int, ...], dtype: np.dtype, expected: tuple[int, ...]) -> None:
    """Fail unless an array of ``shape``/``dtype`` read from ``path`` is numeric with shape ``expected``."""
    if tuple(shape) != tuple(expected):
        raise DataError(f"{path}: array of shape {tuple(shape)}, expected {_shape_text(expected)}")
    if dtype.kind not in "fiu":
        raise DataError(f"{path}: array of dtype {dtype}, expected a float or integer dtype")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def check_labels(labels: Tensor, num_classes: int, path: Path | str, ignore: int | None = None) -> None:
    """Fail unless ``labels`` are whole numbers in [0, num_classes) (or equal to ``ignore``)."""
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise DataError(f"{path}: labels must be whole numbers, found fractional values")
    valid = (labels >= 0) & (labels < num_classes)
    if ignore is not None:
        valid |= labels == ignore
    if not bool(valid.all()):
        bad = labels[~valid].unique()[:5].long().tolist()
        accepted = f"0..{num_classes - 1}" + (f" or {ignore} (ignore)" if ignore is not None else "")
        raise DataError(f"{path}: label value(s) {bad} outside the class range; accepted: {accepted}")


def read_split_list(path: Path, dataset: str, layout: str, num_classes: int) -> list[tuple[str, int]]:
    """Parse a LibMTL-style split list: one ``<relative path> <label>`` per line (blank lines ignored)."""
    require_file(path, dataset, layout)
    entries: list[tuple[str, int]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise DataError(f"{path}:{number}: expected '<relative/path.jpg> <label>', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise DataError(f"{path}:{number}: label {label} outside the class range 0..{num_classes - 1}")
        entries.append((parts[0], label))
    if not entries:
        raise DataError(f"{path}: the split list is empty; expected one '<relative/path.jpg> <label>' per line")
    return entries


def check_classes(dataset: str, given: Mapping | None, actual: Mapping[str, int]) -> None:
    """Fail when the class counts the task configs read (``data.classes``) disagree with the data set."""
    for name, value in (given or {}).items():
        if name not in actual:
            raise ConfigError(f"data.classes has unknown key {name!r}; {dataset} defines {sorted(actual)}")
        if value != actual[name]:
            raise ConfigError(
                f"data.classes.{name} = {value} disagrees with {dataset}, which has {actual[name]} {name} classes "
                f"(data.classes must be {dict(actual)})"
            )


def load_rgb(path: Path, size: tuple[int, int], listed_in: str) -> Tensor:
    """The image at ``path`` as float 3×H×W in [0, 1], resized (bilinear, antialiased) to ``size``."""
    try:
        with Image.open(path) as raw:
            image = raw.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} (listed in {listed_in}) not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: cannot be read as an image ({error})") from error
    return TF.to_tensor(TF.resize(image, list(size), antialias=True))
