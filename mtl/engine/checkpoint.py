"""Checkpoints written atomically (a crash mid-write never leaves a broken ``last.pt``) and read with clear errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mtl.errors import DataError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to a temporary file in the same folder, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged file is a :class:`DataError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise DataError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it is damaged or not an mtl "
            "checkpoint. Delete it to start the run afresh."
        ) from error
    required = {"strategy", "optimizer", "epoch", "step"}
    if not isinstance(state, dict) or not required <= state.keys():
        raise DataError(f"checkpoint {path} is not an mtl checkpoint (it lacks {sorted(required)})")
    return state
