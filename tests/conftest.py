"""Shared fixtures: composing the packaged Hydra config, and tiny settings that keep runs to seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import mtl.config  # noqa: F401  (registers the schemas)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Overrides that make any composed run tiny: a small split, a narrow encoder, a few steps, no progress bar.
TINY = [
    "data.train_size=32",
    "data.val_size=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.image_size=32",
    "encoder.widths=[8,16]",
    "trainer.epochs=1",
    "trainer.max_steps=2",
    "trainer.progress=false",
    "trainer.image_every=1",
    "trainer.num_images=2",
]
RESNET_TINY = ["data.image_size=64"]


def options(group: str) -> list[str]:
    """Every option (yaml file) of a config group: tests parametrized over it cover new options at once."""
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_module(config_module="mtl.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [])


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
