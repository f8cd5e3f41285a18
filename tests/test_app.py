"""The mtl-train app as a user runs it: composition, presets, sweeps, clear errors, and a non-editable install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from tests.conftest import REPO, TINY, compose_config, options
from tests.test_engine import events


def mtl_train(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtl.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_default_composition() -> None:
    cfg = compose_config()
    assert list(cfg.tasks) == ["seg", "depth", "normal", "count", "sequence"]
    assert cfg.strategy._target_ == "mtl.strategies.HardSharing"
    assert cfg.weighting._target_ == "mtl.weighting.EqualWeighting"
    assert cfg.data._target_ == "mtl.data.scenes.ScenesData"
    assert cfg.data.classes.count == cfg.data.max_objects + 1


def test_task_subset_head_and_weight_from_the_command_line() -> None:
    cfg = compose_config(["tasks=[seg,count]", "tasks.count.head.name=lstm", "tasks.seg.weight=2"])
    assert list(cfg.tasks) == ["seg", "count"]
    assert cfg.tasks.count.head.name == "lstm"
    assert cfg.tasks.seg.weight == 2


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_experiment_preset_composes(preset: str) -> None:
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.tasks and cfg.trainer.epochs >= 1


def test_typos_and_wrong_types_fail_at_compose_time() -> None:
    with pytest.raises(ConfigCompositionException, match="epocs"):
        compose_config(["trainer.epocs=3"])
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["trainer.epochs=many"])
    assert isinstance(info.value.__cause__, ValidationError)
    with pytest.raises(ConfigCompositionException, match="nope"):
        compose_config(["strategy=nope"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy=nope", "Could not find 'strategy/nope'"),
        ("tasks=[seg,colour]", "Could not load 'tasks/colour'"),
        ("data.batch_size=0", "data.batch_size must be a positive integer"),
        ("encoder.widths=[8,8,8,8,8,8]", "sequence"),
    ],
)
def test_bad_input_is_a_clear_error_without_traceback(tmp_path: Path, override: str, message: str) -> None:
    result = mtl_train(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    assert "Traceback" not in output


def test_a_sweep_writes_one_run_per_job_with_hparams(tmp_path: Path) -> None:
    result = mtl_train("-m", "strategy=hard,independent", *TINY, f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(path.parent for path in tmp_path.glob("*/metrics.json"))
    assert [run.name for run in runs][:1] and len(runs) == 2
    assert any("strategy=independent" in run.name for run in runs)
    for run in runs:
        record = json.loads((run / "metrics.json").read_text())
        assert record["step"] == 2
        assert "_hparams_/session_start_info" in events(run).PluginTagToContent("hparams")


def test_non_editable_install_runs_from_any_directory(tmp_path: Path) -> None:
    """``pip install .`` (a real wheel, conf/ packaged as mtl.conf) works outside the repository."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "mtl" / "conf" / "config.yaml").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import mtl; print(mtl.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where.stdout
    result = mtl_train(*TINY, "hydra.run.dir=run", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "run" / "metrics.json").exists()


def test_sweep_folder_names_are_one_short_path_component() -> None:
    from mtl.config import RUN_NAME_LIMIT, run_name

    assert run_name("strategy=hard,seed=0") == "strategy=hard,seed=0"
    assert run_name("trainer.baseline=runs/stl") == "trainer.baseline=runs_stl"
    assert run_name("") == "default"
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(run_name(long_a)) == RUN_NAME_LIMIT
    assert run_name(long_a) != run_name(long_b)


@pytest.mark.parametrize("group", ["data", "encoder", "strategy", "weighting", "trainer"])
def test_schemas_are_not_listed_as_options_of_their_group(group: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([f"{group}=nope"])
    section = str(info.value).split("Available options in")[1].split("Config search path")[0]
    listed = [line.strip() for line in section.splitlines()[1:] if line.strip()]
    assert listed == options(group)


def test_a_bad_optimizer_option_is_one_clear_line(tmp_path: Path) -> None:
    result = mtl_train(*TINY, "trainer.optimizer.lr=abc", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "trainer.optimizer cannot be built from its options" in output
    assert "Traceback" not in output
