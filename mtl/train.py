"""The ``mtl-train`` Hydra app: compose data, tasks, strategy, weighting and trainer, then fit.

mtl-train                                   # the default run (Scenes, small CNN, hard sharing, EW)
mtl-train strategy=independent 'tasks=[seg,depth]' trainer.epochs=5
mtl-train -m strategy=hard,independent seed=0,1
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mtl.config  # noqa: F401  (registers the structured-config schemas before Hydra composes)
from mtl.data.base import DataModule
from mtl.engine.logger import flatten
from mtl.engine.trainer import Trainer
from mtl.errors import ConfigError, DataError
from mtl.strategies.base import SharingStrategy
from mtl.tasks import Task
from mtl.weighting.base import Weighting

log = logging.getLogger("mtl.train")


USER_ERRORS = (ConfigError, DataError, FileNotFoundError, FloatingPointError)


def user_error(error: BaseException) -> BaseException | None:
    """The user-facing error behind ``error`` (Hydra's instantiate wraps constructor errors), if any."""
    while error is not None:
        if isinstance(error, USER_ERRORS):
            return error
        error = error.__cause__
    return None


def create(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises our own errors unwrapped (Hydra wraps constructor errors)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = user_error(error)
        if cause is None:
            raise
        raise cause from None


def build_tasks(cfg: DictConfig) -> dict[str, Task]:
    """Instantiate ``cfg.tasks`` (``{name: task config}``); the key is the task's name."""
    if not cfg.get("tasks"):
        raise ConfigError("no tasks selected: choose some, e.g. 'tasks=[seg,depth]'")
    return {name: create(task_cfg, name=name) for name, task_cfg in cfg.tasks.items()}


@dataclass
class Components:
    """Everything a run is made of, built from one composed config."""

    data: DataModule
    tasks: dict[str, Task]
    strategy: SharingStrategy
    weighting: Weighting
    trainer: Trainer


def build(cfg: DictConfig) -> Components:
    """Instantiate data, tasks, strategy (encoder factory + heads), weighting and trainer from ``cfg``."""
    torch.manual_seed(cfg.seed)
    data = create(cfg.data)
    tasks = build_tasks(cfg)
    data.check_tasks(tasks)
    input_shape = data.input_shape
    encoder = create(cfg.encoder, _partial_=True, in_channels=input_shape[0])
    strategy = create(cfg.strategy, encoder=encoder, tasks=tasks, input_shape=input_shape)
    weighting = create(cfg.weighting, task_names=list(tasks))
    if getattr(weighting, "mode", "param") == "rep" and not strategy.supports_rep_mode:
        raise ConfigError(
            f"weighting.mode=rep needs a strategy with one shared representation (encode/decode); "
            f"{type(strategy).__name__} has none: use weighting.mode=param or strategy=hard"
        )
    trainer = create(cfg.trainer)
    return Components(data, tasks, strategy, weighting, trainer)


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Build every component from ``cfg`` and train; returns the final metrics record."""
    parts = build(cfg)
    hparams = flatten(OmegaConf.to_container(cfg, resolve=True))
    hparams["tasks"] = ",".join(parts.tasks)
    return parts.trainer.fit(
        parts.strategy, parts.tasks, parts.weighting, parts.data, run_dir, hparams=hparams, seed=cfg.seed
    )


@hydra.main(config_path="pkg://mtl.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        log.error("%s: %s", type(cause).__name__, cause)
        sys.exit(2)


if __name__ == "__main__":
    main()
