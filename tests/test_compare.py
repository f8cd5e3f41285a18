"""mtl-compare on a tiny real sweep: table (mean ± std over seeds, Δm% vs independent, ranks), CSV, plots, errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest

from mtl import delta_m
from mtl.compare import Configuration, Run, main, mean_ranks, pareto_front
from mtl.engine.metrics import mean_metrics
from tests.conftest import TINY
from tests.test_app import mtl_train
from tests.test_engine import events

TASKS = ["seg", "depth"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One subprocess sweep: hard and independent sharing, two seeds each, two evaluations per run."""
    root = tmp_path_factory.mktemp("sweep")
    result = mtl_train(
        "-m",
        "strategy=hard,independent",
        "seed=0,1",
        *TINY,
        "tasks=[seg,depth]",
        "trainer.epochs=2",
        "trainer.max_steps=null",
        "data.train_size=16",
        "trainer.image_every=0",
        "trainer.trivial_baseline=false",
        f"hydra.sweep.dir={root}",
        "hydra.sweep.subdir=${hydra.job.num}",  # the default subdir (all overrides) exceeds 255 characters here
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # tiny models: one thread is faster than two contending ones
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def run_dirs(sweep: Path, strategy: str) -> list[Path]:
    """The sweep's run directories of one strategy, from each run's .hydra/overrides.yaml."""
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json") if _overrides(p.parent).get("strategy") == strategy)
    assert len(runs) == 2, runs
    return runs


def _overrides(run_dir: Path) -> dict[str, str]:
    lines = (run_dir / ".hydra" / "overrides.yaml").read_text().splitlines()
    return dict(line.removeprefix("- ").partition("=")[::2] for line in lines)


def records(sweep: Path, strategy: str) -> list[dict]:
    return [json.loads((path / "metrics.json").read_text()) for path in run_dirs(sweep, strategy)]


def test_table_csv_and_plots_of_a_sweep(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = sweep.parent / "report"
    assert main([str(sweep), "--out", str(out), "--tensorboard"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs in 2 configurations" in printed
    assert "against the mean of the strategy=independent runs" in printed
    assert (
        "| configuration | seeds | seg/miou ↑ | seg/pixel_acc ↑ | depth/abs_err ↓ | depth/rel_err ↓ | Δm% ↓" in printed
    )
    assert (out / "results.md").read_text() in printed + "\n"

    hard, independent = records(sweep, "hard"), records(sweep, "independent")
    abs_err = [r["tasks"]["depth"]["abs_err"] for r in hard]
    expected = f"{statistics.fmean(abs_err):.4f} ± {statistics.stdev(abs_err):.4f}"
    hard_line = next(line for line in printed.splitlines() if line.startswith("| strategy=hard "))
    assert "| 0,1 |" in hard_line and expected in hard_line

    reference = mean_metrics([r["tasks"] for r in independent])
    deltas = [delta_m(r["tasks"], reference, r["higher_is_better"]) for r in hard]
    with (out / "results.csv").open() as handle:
        rows = {row["configuration"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"strategy=hard", "strategy=independent"}
    assert float(rows["strategy=hard"]["delta_m mean"]) == pytest.approx(statistics.fmean(deltas))
    assert float(rows["strategy=hard"]["delta_m std"]) == pytest.approx(statistics.stdev(deltas))
    assert float(rows["strategy=independent"]["delta_m mean"]) == pytest.approx(0.0, abs=1e-9)
    assert float(rows["strategy=hard"]["depth/abs_err mean"]) == pytest.approx(statistics.fmean(abs_err))
    ranks = [float(row["mean rank"]) for row in rows.values()]
    assert sum(ranks) == pytest.approx(3.0) and all(1.0 <= rank <= 2.0 for rank in ranks)

    pngs = {path.name for path in out.glob("*.png")}
    assert {f"curve_{t}_{m}.png" for t, m in [("seg", "miou"), ("depth", "abs_err"), ("depth", "rel_err")]} <= pngs
    assert "pareto_seg_miou__depth_abs_err.png" in pngs
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)

    run_dir = run_dirs(sweep, "hard")[0]
    logged = events(run_dir).Scalars("val/delta_m")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert logged[-1].step == record["step"]
    assert logged[-1].value == pytest.approx(delta_m(record["tasks"], reference, record["higher_is_better"]), rel=1e-5)


def test_a_shipped_or_partial_baseline_and_a_chosen_pareto_pair(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = "depth/rel_err,seg/pixel_acc"
    assert main([str(sweep), "--out", str(tmp_path), "--baseline", "nyuv2_stl", "--metrics", pair]) == 0
    assert "Δm% against nyuv2_stl." in capsys.readouterr().out
    assert (tmp_path / "pareto_depth_rel_err__seg_pixel_acc.png").is_file()
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"seg": {"miou": 0.5, "pixel_acc": 0.9}, "depth": {"abs_err": 1.0}}))
    assert main([str(sweep), "--out", str(tmp_path), "--baseline", str(partial)]) == 2
    assert "depth/rel_err" in capsys.readouterr().err
    assert main([str(sweep), "--out", str(tmp_path), "--metrics", "seg/miou,depth/nope"]) == 2
    assert "available: seg/miou" in capsys.readouterr().err


def test_a_run_given_twice_counts_once_and_unfinished_runs_are_reported(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sweep), str(run_dirs(sweep, "hard")[0]), "--out", str(tmp_path / "a")]) == 0
    assert "4 runs in 2 configurations" in capsys.readouterr().out
    partial = tmp_path / "partial"
    for index, run_dir in enumerate(run_dirs(sweep, "hard")):
        shutil.copytree(run_dir, partial / str(index))
    (partial / "1" / "metrics.json").unlink()
    assert main([str(partial), "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "1 runs in 1 configurations" in printed and "Δm% not computed" in printed
    assert f"Skipped 1 run directories without metrics.json: {partial / '1'}" in printed


def test_clear_errors_for_no_runs_and_different_task_sets(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert f"no runs under {tmp_path}" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    other = tmp_path / "other_run"
    shutil.copytree(run_dirs(sweep, "hard")[0], other)
    record = json.loads((other / "metrics.json").read_text())
    del record["tasks"]["depth"]
    (other / "metrics.json").write_text(json.dumps(record))
    assert main([str(sweep), str(other), "--out", str(tmp_path / "out")]) == 2
    assert "different task sets" in capsys.readouterr().err


def test_pareto_front_respects_each_metrics_direction() -> None:
    points = [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (0.5, 0.5), (2.0, 2.0)]
    assert pareto_front(points, (True, True)) == [4]
    assert pareto_front(points, (False, False)) == [3]
    assert pareto_front(points[:4], (True, True)) == [0, 1, 2]
    assert pareto_front(points[:4], (True, False)) == [1], "(2, 0.5) is best in both directions"
    trade_off = [(1.0, 1.0), (2.0, 2.0), (0.5, 0.5), (0.5, 2.0)]
    assert pareto_front(trade_off, (True, False)) == [0, 1, 2]


def test_mean_rank_averages_ranks_with_ties_over_metrics() -> None:
    def configuration(a: float, b: float) -> Configuration:
        return Configuration({}, [_run({"t": {"acc": a, "err": b}})])

    higher = {"t": {"acc": True, "err": False}}
    configurations = [configuration(0.9, 1.0), configuration(0.8, 1.0), configuration(0.7, 0.5)]
    # acc ranks 1, 2, 3; err ranks 2.5, 2.5, 1
    assert mean_ranks(configurations, [("t", "acc"), ("t", "err")], higher) == [1.75, 2.25, 2.0]


def _run(metrics: dict) -> Run:
    return Run(Path("."), {}, 0, metrics, {}, 0)


def test_a_single_run_shows_no_spread() -> None:
    from mtl.compare import _format

    assert _format(0.5, 0.0, runs=1) == "0.5000"
    assert _format(0.5, 0.01, runs=2) == "0.5000 ± 0.0100"
    assert _format(-11.024, 0.0, runs=1, sign="+") == "-11.02"
    assert _format(2.5, 1.0, runs=3, sign="+") == "+2.50 ± 1.00"
