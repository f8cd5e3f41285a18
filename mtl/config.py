"""Structured-config schemas: typed fields so a typo or a wrong type fails when Hydra composes the config.

Each yaml option lists its schema first in its defaults, e.g. ``defaults: [/schema/strategy/base@_here_, _self_]``.
The schemas are registered in Hydra's ConfigStore under ``schema/<group>`` (so they do not show up as options of
the group) when this module is imported (the app ``mtl.train`` imports it).
"""

from __future__ import annotations

import hashlib
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
    baseline: str | None = None
    average_last: int = 1
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


@dataclass
class DiskDataSchema:
    """Fields shared by the data sets read from disk (``root``: where the files are, see docs/datasets.md)."""

    _target_: str = ""
    root: str = ""
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class NYUv2Schema(DiskDataSchema):
    _target_: str = "mtl.data.nyuv2.NYUv2Data"
    root: str = "data/nyuv2"
    batch_size: int = 2
    augment: bool = True
    image_size: list[int] = field(default_factory=lambda: [288, 384])


@dataclass
class CityScapesSchema(DiskDataSchema):
    _target_: str = "mtl.data.cityscapes.CityScapesData"
    root: str = "data/cityscapes"
    batch_size: int = 8
    seg_classes: int = 7
    augment: bool = True
    image_size: list[int] = field(default_factory=lambda: [128, 256])


@dataclass
class CelebASchema(DiskDataSchema):
    _target_: str = "mtl.data.celeba.CelebAData"
    root: str = "data"
    batch_size: int = 256
    image_size: int = 64
    eval_split: str = "valid"
    check_md5: bool = False


@dataclass
class MultiMNISTSchema(DiskDataSchema):
    _target_: str = "mtl.data.multimnist.MultiMNISTData"
    root: str = "data"
    batch_size: int = 256
    seed: int = 0


@dataclass
class OfficeSchema(DiskDataSchema):
    _target_: str = "mtl.data.office.OfficeData"
    root: str = "data/office-31"
    dataset: str = "office-31"
    split_dir: str | None = None
    image_size: int = 224
    eval_split: str = "val"
    batch_size: int = 64


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


@dataclass
class SegNetSchema:
    _target_: str = "mtl.models.SegNet"
    _partial_: bool = True
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 512])


@dataclass
class LeNetSchema:
    _target_: str = "mtl.models.LeNet"
    _partial_: bool = True
    widths: list[int] = field(default_factory=lambda: [10, 20, 50])
    dropout: float = 0.5


# ----------------------------------------------------------------------------- strategies
@dataclass
class StrategySchema:
    _target_: str = "mtl.strategies.HardSharing"


@dataclass
class CrossStitchSchema:
    _target_: str = "mtl.strategies.CrossStitch"
    alpha_same: float = 0.9
    per_channel: bool = False


@dataclass
class MMoESchema:
    _target_: str = "mtl.strategies.MMoE"
    num_experts: int = 3
    gate_pool: int = 4


@dataclass
class ExtractionSchema:
    _target_: str = "mtl.strategies.PLE"
    num_shared_experts: int = 1
    num_task_experts: int = 1
    gate_pool: int = 4


# ----------------------------------------------------------------------------- weighting
@dataclass
class LossWeightingSchema:
    _target_: str = "mtl.weighting.EqualWeighting"


@dataclass
class LearnedScalesSchema(LossWeightingSchema):
    init: float = 0.0


@dataclass
class DWASchema(LossWeightingSchema):
    temperature: float = 2.0


@dataclass
class RLWSchema(LossWeightingSchema):
    seed: int | None = None


@dataclass
class FAMOSchema(LossWeightingSchema):
    w_lr: float = 0.025
    gamma: float = 0.01
    update: str = "same_batch"
    min_losses: list[float] | None = None
    epsilon: float = 1e-8


@dataclass
class GradientWeightingSchema:
    _target_: str = "mtl.weighting.MGDA"
    mode: str = "param"
    diagnostics_every: int = 10


@dataclass
class SeededGradientSchema(GradientWeightingSchema):
    seed: int | None = None


@dataclass
class GradVacSchema(SeededGradientSchema):
    beta: float = 0.01


@dataclass
class CAGradSchema(GradientWeightingSchema):
    c: float = 0.4


@dataclass
class GradNormSchema(GradientWeightingSchema):
    alpha: float = 1.5


@dataclass
class DBMTLSchema(GradientWeightingSchema):
    beta: float = 0.9
    beta_sigma: float = 0.0
    epsilon: float = 1e-8


# (group, name, schema), stored as ``schema/<group>/<name>``; an option's yaml lists
# ``/schema/<group>/<name>@_here_`` first in its defaults.
SCHEMAS: list[tuple[str, str, type]] = [
    ("trainer", "base", TrainerSchema),
    ("data", "scenes", ScenesSchema),
    ("data", "nyuv2", NYUv2Schema),
    ("data", "cityscapes", CityScapesSchema),
    ("data", "celeba", CelebASchema),
    ("data", "multimnist", MultiMNISTSchema),
    ("data", "office", OfficeSchema),
    ("encoder", "small_cnn", SmallCNNSchema),
    ("encoder", "resnet", ResNetSchema),
    ("encoder", "segnet", SegNetSchema),
    ("encoder", "lenet", LeNetSchema),
    ("strategy", "base", StrategySchema),
    ("strategy", "cross_stitch", CrossStitchSchema),
    ("strategy", "mmoe", MMoESchema),
    ("strategy", "extraction", ExtractionSchema),
    ("weighting", "loss", LossWeightingSchema),
    ("weighting", "learned_scales", LearnedScalesSchema),
    ("weighting", "dwa", DWASchema),
    ("weighting", "rlw", RLWSchema),
    ("weighting", "famo", FAMOSchema),
    ("weighting", "gradient", GradientWeightingSchema),
    ("weighting", "seeded_gradient", SeededGradientSchema),
    ("weighting", "gradvac", GradVacSchema),
    ("weighting", "cagrad", CAGradSchema),
    ("weighting", "gradnorm", GradNormSchema),
    ("weighting", "db_mtl", DBMTLSchema),
]


RUN_NAME_LIMIT = 200  # file names may have 255 bytes; the job number and "_" come first


def run_name(overrides: str) -> str:
    """A sweep job's folder name from its overrides: one path component (``/`` → ``_``) of at most
    ``RUN_NAME_LIMIT`` characters (long ones are cut and end in a hash so they stay distinct)."""
    name = overrides.replace("/", "_") or "default"
    if len(name) <= RUN_NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: RUN_NAME_LIMIT - 9]}~{digest}"


RESOLVERS = {
    "mtl.add": lambda *values: sum(values),  # ${mtl.add:${data.max_objects},1}
    "mtl.run_name": run_name,  # ${mtl.run_name:${hydra.job.override_dirname}}
}


def register() -> None:
    """Register the schemas and the ``mtl.*`` resolvers."""
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    store = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        store.store(group=f"schema/{group}", name=name, node=node)


register()
