"""Weightings inside real tiny runs: the trainer's hooks (after_step, on_epoch_end) and the TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl.engine.checkpoint import load_checkpoint
from mtl.train import run
from tests.conftest import TINY, compose_config
from tests.test_engine import events

TASKS = ["seg", "depth", "count"]


def tiny_run(tmp_path: Path, *overrides: str) -> dict[str, list[float]]:
    speed = ["trainer.log_every=1", "trainer.image_every=0", "trainer.trivial_baseline=false", "trainer.eval_every=5"]
    cfg = compose_config([*TINY, f"tasks=[{','.join(TASKS)}]", *speed, *overrides])
    run(cfg, tmp_path)
    accumulator = events(tmp_path)
    return {tag: [event.value for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_famo_updates_its_logits_through_the_trainer_after_each_step(tmp_path: Path) -> None:
    scalars = tiny_run(tmp_path, "weighting=famo", "trainer.max_steps=3")
    logits = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["weighting"]["logits"]
    assert int(load_checkpoint(tmp_path / "checkpoints" / "last.pt")["weighting"]["adam_steps"]) == 3
    assert not torch.equal(logits, torch.zeros(3))
    assert all(len(scalars[f"weight/{task}"]) == 3 for task in TASKS)


def test_dwa_changes_its_weights_after_two_epochs(tmp_path: Path) -> None:
    scalars = tiny_run(tmp_path, "weighting=dwa", "trainer.epochs=3", "trainer.max_steps=null", "data.train_size=16")
    weights = scalars["weight/seg"]
    assert weights[:4] == [1.0] * 4, "epochs 1 and 2 (2 steps each) use unit weights"
    assert weights[4] != 1.0
    assert sum(scalars[f"weight/{task}"][4] for task in TASKS) == pytest.approx(3.0, rel=1e-5)


def test_a_gradient_method_in_rep_mode_logs_its_diagnostics(tmp_path: Path) -> None:
    scalars = tiny_run(tmp_path, "weighting=nash_mtl", "weighting.mode=rep", "weighting.diagnostics_every=2")
    assert set(scalars["solver_failures/nash_mtl"]) == {0.0}
    assert len(scalars["cos/seg~depth"]) == 1 and -1 <= scalars["cos/seg~depth"][0] <= 1
    assert all(value > 0 for task in TASKS for value in scalars[f"grad_norm/{task}"])
    assert all(value > 0 for task in TASKS for value in scalars[f"weight/{task}"])
