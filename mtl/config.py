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


# ----------------------------------------------------------------------------- trainer
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


# ----------------------------------------------------------------------------- data
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


# ----------------------------------------------------------------------------- encoders
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


# ----------------------------------------------------------------------------- strategies
@dataclass
class StrategySchema:
    _target_: str = "mtl.strategies.HardSharing"


# ----------------------------------------------------------------------------- weighting
@dataclass
class LossWeightingSchema:
    _target_: str = "mtl.weighting.EqualWeighting"


# (group, name, schema): an option lists its schema first in its yaml defaults, e.g. ``defaults: [schema, _self_]``.
SCHEMAS: list[tuple[str, str, type]] = [
    ("trainer", "schema", TrainerSchema),
    ("data", "scenes_schema", ScenesSchema),
    ("encoder", "small_cnn_schema", SmallCNNSchema),
    ("encoder", "resnet_schema", ResNetSchema),
    ("strategy", "schema", StrategySchema),
    ("weighting", "loss_schema", LossWeightingSchema),
]


def register() -> None:
    """Register the schemas and the ``mtl.add`` resolver (``${mtl.add:${data.max_objects},1}``)."""
    if not OmegaConf.has_resolver("mtl.add"):
        OmegaConf.register_new_resolver("mtl.add", lambda *values: sum(values))
    store = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        store.store(group=group, name=name, node=node)


register()
