"""Fast smoke tests of scripts/bench.py and scripts/toy_pareto.py: outputs, keys and the toy problem's maths."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import torch

from mtl.weighting import MGDA
from tests.conftest import REPO


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_reports_every_configuration_against_the_plain_loops(tmp_path: Path) -> None:
    bench = load_script("bench")
    out = tmp_path / "bench.json"
    argv = ["--methods", "ew,pcgrad,famo,db_mtl", "--steps", "1", "--warmup", "0", "--k", "4", "--task-pool", "count"]
    argv += ["--batch", "4", "--image-size", "32", "--override", "encoder.widths=[8,16]", "--json", str(out)]
    results = bench.main(argv)
    assert json.loads(out.read_text()) == results
    assert set(results) == {"plain_ew", "plain_floor", "ew", "pcgrad", "pcgrad:rep", "famo", "db_mtl"}
    assert results["plain_ew"]["ratio_ew"] == 1.0 and results["plain_floor"]["ratio_floor"] == 1.0
    for values in results.values():
        assert values["ms"] > 0
        assert values["ratio_floor"] == values["ms"] / results["plain_floor"]["ms"]
    assert bench.task_plan(["count"], 3) == {"count0": "count", "count1": "count", "count2": "count"}


def test_the_toy_front_is_pareto_stationary() -> None:
    """On the Pareto set the two task gradients point in opposite directions: MGDA's update vanishes there."""
    toy = load_script("toy_pareto")
    for x in (-5.0, 0.0, 4.0):
        theta = torch.tensor([x, toy.FRONT_Y], dtype=torch.float64, requires_grad=True)
        losses = toy.toy_losses(theta)
        grads = torch.stack([torch.autograd.grad(loss, theta, retain_graph=True)[0] for loss in losses])
        assert MGDA(["f1", "f2"]).aggregate(grads).norm() < 1e-2 * grads.norm()  # FRONT_Y has 5 digits


def test_toy_pareto_writes_the_plot_and_a_verdict_per_method_and_start(tmp_path: Path) -> None:
    toy = load_script("toy_pareto")
    png, out = tmp_path / "toy.png", tmp_path / "toy.json"
    summary = toy.main(["--methods", "ew,mgda,famo", "--steps", "15", "--out", str(png), "--json", str(out)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out.read_text()) == summary
    assert list(summary) == ["ew", "mgda", "famo"]
    for runs in summary.values():
        assert [run["start"] for run in runs] == [list(start) for start in toy.STARTS]
        assert all(run["theta"] != run["start"] for run in runs), "every start moves, (0, 0) included"
        assert all(run["on_front"] == (run["gap"] <= 0.02) for run in runs)
