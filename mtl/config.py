"""Structured-config schemas: typed fields so a typo or a wrong type fails when Hydra composes the config.

Each yaml option lists its schema first in its defaults (``defaults: [schema, _self_]``); the schemas are
registered in Hydra's ConfigStore under the option's group as ``schema`` when this module is imported (the app
``mtl.train`` imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


@dataclass
class TrainerSchema:
    _target_: str = "mtl.engine.Trainer"
    epochs: int = 10
    max_steps: int | None = None
    device: str = "auto"
    precision: str = "32"
    eval_every: int = 1
    log_every: int = 10
    image_every: int = 5
    num_images: int = 4
    grad_clip: float | None = None
    resume: bool = True
    trivial_baseline: bool = True
    progress: bool = True
    optimizer: Any = field(default_factory=dict)
    scheduler: Any = None


@dataclass
class ScenesSchema:
    _target_: str = "mtl.data.scenes.ScenesData"
    batch_size: int = 64
    eval_batch_size: int | None = None
    num_workers: int = 0
    train_size: int = 4000
    val_size: int = 1000
    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    seed: int = 0
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class SmallCNNSchema:
    _target_: str = "mtl.models.SmallCNN"
    _partial_: bool = True
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks_per_stage: int = 2
    downsample: str = "stride"


@dataclass
class ResNetSchema:
    _target_: str = "mtl.models.ResNetEncoder"
    _partial_: bool = True
    depth: int = 18
    weights: str | None = None


@dataclass
class StrategySchema:
    _target_: str = "mtl.strategies.HardSharing"


@dataclass
class LossWeightingSchema:
    _target_: str = "mtl.weighting.EqualWeighting"


def register() -> None:
    """Register the schemas and the ``mtl.add`` resolver (``${mtl.add:${data.max_objects},1}``)."""
    if not OmegaConf.has_resolver("mtl.add"):
        OmegaConf.register_new_resolver("mtl.add", lambda *values: sum(values))
    store = ConfigStore.instance()
    store.store(group="trainer", name="schema", node=TrainerSchema)
    store.store(group="data", name="scenes_schema", node=ScenesSchema)
    store.store(group="encoder", name="small_cnn_schema", node=SmallCNNSchema)
    store.store(group="encoder", name="resnet_schema", node=ResNetSchema)
    store.store(group="strategy", name="schema", node=StrategySchema)
    store.store(group="weighting", name="loss_schema", node=LossWeightingSchema)


register()
