"""Trainer, checkpoints, metrics bookkeeping and TensorBoard output, on tiny composed runs."""

from __future__ import annotations

import json
import math
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar.layout_pb2 import Layout
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mtl import delta_m
from mtl.engine.checkpoint import load_checkpoint, save_checkpoint
from mtl.engine.metrics import evaluate
from mtl.errors import ConfigError, DataError
from mtl.strategies.base import predict
from mtl.train import build, run
from tests.conftest import TINY, compose_config


def events(run_dir: Path) -> EventAccumulator:
    files = list(run_dir.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {run_dir}"
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_delta_m_on_known_values() -> None:
    higher = {"a": {"acc": True}, "b": {"err": False}}
    baseline = {"a": {"acc": 0.5}, "b": {"err": 2.0}}
    metrics = {"a": {"acc": 0.55}, "b": {"err": 2.2}}
    # acc +10% (better, counts -10), err +10% (worse, counts +10) -> mean 0
    assert delta_m(metrics, baseline, higher) == pytest.approx(0.0)
    assert delta_m({"a": {"acc": 0.4}}, baseline, higher) == pytest.approx(20.0)
    with pytest.raises(KeyError, match="b/err"):
        delta_m(metrics, {"a": {"acc": 0.5}}, higher)


def test_checkpoint_round_trip_and_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    state = {"strategy": {"w": torch.ones(2)}, "optimizer": {}, "epoch": 3, "step": 7}
    save_checkpoint(state, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"], "temporary files must not remain"
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["strategy"]["w"], torch.ones(2))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="damaged"):
        load_checkpoint(path)


def test_evaluation_accumulates_over_the_whole_split() -> None:
    parts = build(compose_config(TINY))
    loader = parts.data.val_loader()
    whole = evaluate(parts.strategy.eval(), parts.tasks, loader, torch.device("cpu"))
    images, targets = [], {}
    for batch_images, batch_targets in loader:
        images.append(batch_images)
        for key, value in batch_targets.items():
            targets.setdefault(key, []).append(value)
    one_batch = [(torch.cat(images), {key: torch.cat(value) for key, value in targets.items()})]
    single = evaluate(parts.strategy, parts.tasks, one_batch, torch.device("cpu"))
    for task, values in whole.items():
        for metric, value in values.items():
            assert value == pytest.approx(single[task][metric], rel=1e-4, abs=1e-4), (task, metric)


def test_a_tiny_run_writes_metrics_checkpoint_and_tensorboard(tmp_path: Path) -> None:
    record = run(compose_config(TINY), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["step"] == 2 and saved["epoch"] == 1
    assert set(saved["tasks"]) == {"seg", "depth", "normal", "count", "sequence"}
    assert saved["tasks"] == record["tasks"]
    assert saved["delta_m"] is None
    assert all(math.isfinite(v) for values in saved["tasks"].values() for v in values.values())
    assert set(saved["trivial"]) == set(saved["tasks"])
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    accumulator = events(tmp_path)
    scalars = set(accumulator.Tags()["scalars"])
    for task in saved["tasks"]:
        assert f"train/loss/{task}" in scalars
        assert f"weight/{task}" in scalars
        for metric in saved["tasks"][task]:
            assert f"val/{task}/{metric}" in scalars
    assert {"train/loss/total", "train/lr"} <= scalars
    assert {"predictions/seg", "predictions/depth", "predictions/normal"} <= set(accumulator.Tags()["images"])
    plugins = accumulator.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    experiment = HParamsPluginData.FromString(plugins["_hparams_/experiment"]).experiment
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert metric_tags == {"val/delta_m"} | {f"val/{t}/{m}" for t, values in saved["tasks"].items() for m in values}
    layout = Layout.FromString(accumulator.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: chart for category in layout.category for chart in category.chart}
    seg_chart = charts["seg: val metrics"].multiline.tag
    assert [re.fullmatch(pattern, "val/seg/miou") is not None for pattern in seg_chart] == [True, False]
    assert len(seg_chart) == len(saved["tasks"]["seg"])
    assert {"train losses", "task weights", "Δm% (lower is better)", "sequence: train loss"} <= set(charts)
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "checkpoints"], "no hparams sub-run"


def test_a_rerun_in_the_same_directory_resumes(tmp_path: Path) -> None:
    run(compose_config([*TINY, "trainer.epochs=1", "trainer.max_steps=null"]), tmp_path)
    first = json.loads((tmp_path / "metrics.json").read_text())
    assert first["epoch"] == 1 and first["step"] == 4
    run(compose_config([*TINY, "trainer.epochs=2", "trainer.max_steps=null"]), tmp_path)
    second = json.loads((tmp_path / "metrics.json").read_text())
    assert second["epoch"] == 2 and second["step"] == 8, "the second run continues, it does not restart"


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    run(compose_config(TINY), tmp_path)
    with pytest.raises(DataError, match="does not match"):
        run(compose_config([*TINY, "encoder.widths=[4,8]"]), tmp_path)


def test_a_nan_loss_stops_with_a_message_naming_the_task(tmp_path: Path) -> None:
    parts = build(compose_config(TINY))
    original = parts.tasks["depth"].loss
    parts.tasks["depth"].loss = lambda pred, target: original(pred, target) * float("nan")
    with pytest.raises(FloatingPointError, match=r"task .depth.*step 1"):
        parts.trainer.fit(parts.strategy, parts.tasks, parts.weighting, parts.data, tmp_path)


def test_multi_input_batches_predict_each_task_from_its_own_images() -> None:
    parts = build(compose_config([*TINY, "tasks=[seg,count]"]))
    strategy = parts.strategy.eval()
    first, second = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    predictions = predict(strategy, {"seg": first, "count": second})
    torch.testing.assert_close(predictions["seg"], strategy(first)["seg"])
    torch.testing.assert_close(predictions["count"], strategy(second)["count"])
    targets = {"seg": torch.zeros(2, 32, 32, dtype=torch.long), "count": torch.ones(3, dtype=torch.long)}
    batches = [({"seg": first, "count": second}, targets)]
    metrics = evaluate(partial(predict, strategy), parts.tasks, batches, torch.device("cpu"))
    assert set(metrics) == {"seg", "count"}


def test_bf16_autocast_trains_and_evaluates(tmp_path: Path) -> None:
    record = run(compose_config([*TINY, "trainer.precision=bf16"]), tmp_path)
    assert all(math.isfinite(v) for values in record["tasks"].values() for v in values.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA device"):
        build(compose_config([*TINY, "trainer.device=cuda"]))


def test_strategy_diagnostics_such_as_mmoe_gates_reach_tensorboard(tmp_path: Path) -> None:
    run(compose_config([*TINY, "strategy=mmoe", "trainer.log_every=1"]), tmp_path)
    gates = [tag for tag in events(tmp_path).Tags()["scalars"] if tag.startswith("gate/")]
    assert "gate/seg/expert0" in gates and "gate/sequence/expert1" in gates
