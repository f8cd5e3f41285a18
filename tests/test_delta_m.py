"""Δm% against single-task baselines: published numbers, baseline sources, and the trainer's metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl import delta_m
from mtl.engine.metrics import load_baseline, mean_metrics, shipped_baselines
from mtl.errors import ConfigError
from mtl.train import run
from tests.conftest import TINY, compose_config

NYUV2_HIGHER = {
    "seg": {"miou": True, "pixel_acc": True},
    "depth": {"abs_err": False, "rel_err": False},
    "normal": {
        "angle_mean": False,
        "angle_median": False,
        "within_11_25": True,
        "within_22_5": True,
        "within_30": True,
    },
}


def nyuv2_row(miou, pixel_acc, abs_err, rel_err, mean, median, within_11, within_22, within_30) -> dict:
    """A row of Nash-MTL's Table 2 (mIoU and pixel accuracy in percent there) in our units (fractions)."""
    return {
        "seg": {"miou": miou / 100, "pixel_acc": pixel_acc / 100},
        "depth": {"abs_err": abs_err, "rel_err": rel_err},
        "normal": {
            "angle_mean": mean,
            "angle_median": median,
            "within_11_25": within_11,
            "within_22_5": within_22,
            "within_30": within_30,
        },
    }


# Navon et al. 2022 (Nash-MTL), Table 2, NYUv2: method rows and their published Δm%.
PUBLISHED_NYUV2 = {
    "LS": (nyuv2_row(39.29, 65.33, 0.5493, 0.2263, 28.15, 23.96, 22.09, 47.50, 61.08), 5.59),
    "MGDA": (nyuv2_row(30.47, 59.90, 0.6070, 0.2555, 24.88, 19.45, 29.18, 56.88, 69.36), 1.38),
    "Nash-MTL": (nyuv2_row(40.13, 65.93, 0.5261, 0.2171, 25.26, 20.08, 28.40, 55.47, 68.15), -4.04),
}


@pytest.mark.parametrize("method", PUBLISHED_NYUV2)
def test_published_nyuv2_rows_give_the_published_delta_m(method: str) -> None:
    metrics, published = PUBLISHED_NYUV2[method]
    assert delta_m(metrics, load_baseline("nyuv2_stl"), NYUV2_HIGHER) == pytest.approx(published, abs=0.05)


def test_shipped_baselines_use_our_metric_names_and_units() -> None:
    assert shipped_baselines() == ["cityscapes_stl", "nyuv2_stl"]
    nyuv2 = load_baseline("nyuv2_stl")
    assert {task: set(values) for task, values in nyuv2.items()} == {
        task: set(values) for task, values in NYUV2_HIGHER.items()
    }
    assert nyuv2["seg"]["miou"] == pytest.approx(0.3830), "mIoU is a fraction here, not the paper's percent"
    assert nyuv2["normal"]["within_30"] == pytest.approx(69.15), "within_* are percents, as our metric"
    assert load_baseline("cityscapes_stl") == {
        "seg": {"miou": 0.7401, "pixel_acc": 0.9316},
        "depth": {"abs_err": 0.0125, "rel_err": 27.77},
    }


def test_a_metric_missing_from_the_baseline_is_an_error_naming_it() -> None:
    metrics, _ = PUBLISHED_NYUV2["LS"]
    baseline = load_baseline("nyuv2_stl")
    del baseline["normal"]["within_30"]
    with pytest.raises(KeyError, match="normal/within_30"):
        delta_m(metrics, baseline, NYUV2_HIGHER)


def test_baseline_from_a_plain_file_a_record_and_a_run_directory(tmp_path: Path) -> None:
    values = {"seg": {"miou": 0.5}, "depth": {"abs_err": 2.0}}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(values))
    run_dir = tmp_path / "independent_run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"epoch": 3, "tasks": values, "delta_m": None}))
    assert load_baseline(plain) == values
    assert load_baseline(run_dir) == values
    assert load_baseline(str(run_dir / "metrics.json")) == values
    with pytest.raises(FileNotFoundError, match="nyuv2_stl"):
        load_baseline(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=r"no metrics\.json"):
        load_baseline(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"seg": {"miou": "high"}}))
    with pytest.raises(ValueError, match="'seg' must map metric names to numbers"):
        load_baseline(tmp_path / "bad.json")


def test_mean_metrics_averages_each_metric() -> None:
    evaluations = [{"a": {"x": 1.0, "y": 4.0}}, {"a": {"x": 3.0, "y": 8.0}}]
    assert mean_metrics(evaluations) == {"a": {"x": 2.0, "y": 6.0}}


def test_the_trainer_fills_delta_m_from_an_independent_run_and_averages_the_last_evaluations(tmp_path: Path) -> None:
    """A tiny independent run is the baseline of a hard-sharing run; its metrics.json records Δm% and the protocol."""
    tiny = [*TINY, "tasks=[seg,depth]", "trainer.image_every=0", "trainer.trivial_baseline=false"]
    stl = tmp_path / "stl"
    run(compose_config([*tiny, "strategy=independent"]), stl)
    assert json.loads((stl / "metrics.json").read_text())["delta_m"] is None
    mtl_dir = tmp_path / "mtl"
    overrides = ["trainer.epochs=2", "trainer.max_steps=null", "data.train_size=16", "trainer.average_last=2"]
    record = run(compose_config([*tiny, *overrides, f"trainer.baseline={stl}"]), mtl_dir)
    saved = json.loads((mtl_dir / "metrics.json").read_text())
    assert saved["delta_m"] == pytest.approx(record["delta_m"])
    higher = saved["higher_is_better"]
    assert saved["delta_m"] == pytest.approx(delta_m(saved["tasks"], load_baseline(stl), higher))
    assert saved["protocol"] == {"split": "val", "average_last": 2, "evaluations": 2}
    assert saved["baseline"] == str(stl)
    last = saved["last_evaluation"]["depth"]["abs_err"]
    assert saved["tasks"]["depth"]["abs_err"] != pytest.approx(last), "two evaluations averaged, not the last one"


def test_a_baseline_without_a_task_metric_fails_before_training(tmp_path: Path) -> None:
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"seg": {"miou": 0.5, "pixel_acc": 0.9}}))
    with pytest.raises(ConfigError, match=r"has no value for depth/abs_err, depth/rel_err"):
        run(compose_config([*TINY, "tasks=[seg,depth]", f"trainer.baseline={partial}"]), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(ConfigError, match=r"trainer\.baseline: .*shipped"):
        run(compose_config([*TINY, "trainer.baseline=nyuv3"]), tmp_path / "run")
