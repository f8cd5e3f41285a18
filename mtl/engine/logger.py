"""TensorBoard output of a run: scalars, a custom-scalars layout, hparams in the same run, prediction images."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``, with values TensorBoard's HParams plugin accepts."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is None or isinstance(value, bool | int | float | str):
            flat[name] = "None" if value is None else value
        else:
            flat[name] = str(value)
    return flat


DELTA_M_TAG = "val/delta_m"


def _multiline(tags: Iterable[str]) -> list:
    """A custom-scalars chart that overlays exactly ``tags`` (the plugin matches regular expressions)."""
    return ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]]


def scalar_layout(metrics: Mapping[str, Iterable[str]]) -> dict[str, dict[str, list]]:
    """Custom-scalars layout: per task, its val metrics overlaid in one chart and its train loss; then all losses,
    all task weights and Δm% each in one chart (``metrics`` is ``{task: metric names}``)."""
    layout: dict[str, dict[str, list]] = {}
    for task, names in metrics.items():
        layout[f"task {task}"] = {
            f"{task}: val metrics": _multiline(f"val/{task}/{name}" for name in names),
            f"{task}: train loss": _multiline([f"train/loss/{task}"]),
        }
    layout["all tasks"] = {
        "train losses": _multiline([*(f"train/loss/{task}" for task in metrics), "train/loss/total"]),
        "task weights": _multiline(f"weight/{task}" for task in metrics),
        "Δm% (lower is better)": _multiline([DELTA_M_TAG]),
    }
    return layout


class TensorBoardLogger:
    """Writes every event of one run into ``run_dir`` so ``tensorboard --logdir <sweep>`` shows one run per job."""

    def __init__(self, run_dir: str | Path) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for tag, value in values.items():
            self.writer.add_scalar(f"{prefix}{tag}", value, step)

    def hparams(self, params: Mapping[str, Any], metric_tags: list[str]) -> None:
        """Register the run's hyper-parameters and the scalar tags the HParams dashboard should show.

        ``SummaryWriter.add_hparams`` would open a sub-run; writing the three summaries into this run's own
        file keeps hparams and scalars together (the dashboard reads the metric values from the scalars).
        """
        experiment, start, end = hparams_summary(dict(params), dict.fromkeys(metric_tags, 0.0))
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)

    def layout(self, layout: Mapping[str, Mapping[str, list]]) -> None:
        """Write a custom-scalars layout (see :func:`scalar_layout`) into this run."""
        self.writer.add_custom_scalars({category: dict(charts) for category, charts in layout.items()})

    def images(self, tag: str, grid: Tensor, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
