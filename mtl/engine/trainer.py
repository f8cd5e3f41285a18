"""The training loop: one place for the step, evaluation on the whole val split, logging, checkpoints, resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mtl.data.base import DataModule
from mtl.engine.checkpoint import load_checkpoint, save_checkpoint
from mtl.engine.logger import DELTA_M_TAG, TensorBoardLogger, scalar_layout
from mtl.engine.metrics import (
    Metrics,
    delta_m,
    evaluate,
    load_baseline,
    mean_metrics,
    missing_metrics,
    to_device,
    trivial_baseline,
)
from mtl.engine.visuals import prediction_grid
from mtl.errors import ConfigError, DataError
from mtl.strategies.base import Images, SharingStrategy, predict
from mtl.tasks import Task
from mtl.weighting.base import Weighting

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("32", "bf16", "16")
CHECKPOINT = Path("checkpoints") / "last.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA on a machine without it is a config error."""
    if name not in DEVICES:
        raise ConfigError(f"trainer.device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu")
    return torch.device(name)


class Trainer:
    """Fits a strategy on a data module's tasks with a weighting scheme; writes everything to ``run_dir``.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``): the optimizer is called with the
    parameters, the scheduler (stepped once per epoch) with the optimizer. ``baseline`` (a single-task metrics
    file, an ``independent`` run directory, or a shipped name such as ``nyuv2_stl``) turns on Δm%;
    ``average_last`` reports the mean of the last N evaluations (the papers' last-epochs protocol).
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        epochs: int = 10,
        max_steps: int | None = None,
        device: str = "auto",
        precision: str = "32",
        eval_every: int = 1,
        log_every: int = 10,
        image_every: int = 5,
        num_images: int = 4,
        grad_clip: float | None = None,
        resume: bool = True,
        trivial_baseline: bool = True,
        progress: bool = True,
        baseline: str | None = None,
        average_last: int = 1,
    ) -> None:
        precision = str(precision)
        if precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "16":
            raise ConfigError("trainer.precision=16 (float16 with loss scaling) is not supported yet; use 32 or bf16")
        for key, value, low in (
            ("epochs", epochs, 1),
            ("eval_every", eval_every, 1),
            ("log_every", log_every, 1),
            ("average_last", average_last, 1),
        ):
            if value < low:
                raise ConfigError(f"trainer.{key} must be >= {low}, got {value}")
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"trainer.max_steps must be null (no limit) or >= 1, got {max_steps}")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.epochs = epochs
        self.max_steps = max_steps
        self.device = resolve_device(device)
        self.precision = precision
        self.eval_every = eval_every
        self.log_every = log_every
        self.image_every = image_every
        self.num_images = num_images
        self.grad_clip = grad_clip
        self.resume = resume
        self.compute_trivial = trivial_baseline
        self.progress = progress
        self.average_last = average_last
        self.baseline_source = None if baseline is None else str(baseline)
        try:
            self.baseline = None if baseline is None else load_baseline(baseline)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(f"trainer.baseline: {error}") from None

    # ----------------------------------------------------------------- the step
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, images: Images, targets: Mapping[str, Tensor]) -> tuple[dict[str, float], dict[str, float]]:
        """Forward, per-task losses, ``weighting.backward``, optimizer step; returns raw losses and weighting logs."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            predictions = self.weighting.predict(self.strategy, images)
        raw = {name: task.loss(predictions[name].float(), targets[name]) for name, task in self.tasks.items()}
        values = dict(zip(raw, torch.stack(list(raw.values())).detach().cpu().tolist(), strict=True))
        for name, value in values.items():
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss of task {name!r} is {value} at step {self.step + 1} (epoch {self.epoch + 1}); "
                    f"the last good state is in {self.run_dir / CHECKPOINT}. Lower the learning rate "
                    "(trainer.optimizer.lr) or set trainer.grad_clip."
                )
        weighted = {name: loss * self.tasks[name].weight for name, loss in raw.items()}
        logs = self.weighting.backward(weighted, self.strategy)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.strategy.parameters(), self.grad_clip)
        self.optimizer.step()
        logs.update(self.weighting.after_step(lambda: self._losses_after_step(images, targets)))
        self.step += 1
        return values, logs

    @torch.no_grad()
    def _losses_after_step(self, images: Images, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The weighted task losses on the same batch after the update (only weightings that need it call this)."""
        with self.autocast():
            predictions = predict(self.strategy, images)
        return {
            name: task.loss(predictions[name].float(), targets[name]) * task.weight for name, task in self.tasks.items()
        }

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        strategy: SharingStrategy,
        tasks: Mapping[str, Task],
        weighting: Weighting,
        data: DataModule,
        run_dir: str | Path,
        hparams: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Train for ``epochs`` (or until ``max_steps``), evaluating every ``eval_every`` epochs.

        Returns the last evaluation record (also written to ``run_dir/metrics.json``). A run started again in
        the same directory resumes from ``checkpoints/last.pt``.
        """
        self.strategy = strategy.to(self.device)
        self.weighting = weighting.to(self.device)
        self.tasks = dict(tasks)
        self.data = data
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        parameters = [*strategy.parameters(), *weighting.parameters()]
        self.optimizer = _build("trainer.optimizer", self.optimizer_factory, parameters)
        self.scheduler = (
            _build("trainer.scheduler", self.scheduler_factory, self.optimizer) if self.scheduler_factory else None
        )
        self.step, self.epoch = 0, 0
        self.trivial: Metrics | None = None
        self.record: dict[str, Any] | None = None
        self.history: list[Metrics] = []
        higher = {name: dict(task.higher_is_better) for name, task in self.tasks.items()}
        if self.baseline is not None and (missing := missing_metrics(higher, self.baseline)):
            present = [f"{task}/{name}" for task, values in self.baseline.items() for name in values]
            raise ConfigError(
                f"trainer.baseline={self.baseline_source} has no value for {', '.join(missing)}; Δm% needs every "
                f"metric of every task (it has {', '.join(present)})"
            )
        self._restore()

        self.logger = TensorBoardLogger(self.run_dir)
        self.logger.layout(scalar_layout(higher))
        tags = [f"val/{name}/{metric}" for name, metrics in higher.items() for metric in metrics]
        self.logger.hparams(hparams or {}, [DELTA_M_TAG, *tags])
        log.info("run directory: %s", self.run_dir.resolve())
        log.info("device %s, %d parameters", self.device, sum(p.numel() for p in parameters))
        if self.compute_trivial and self.trivial is None:
            self.trivial = trivial_baseline(self.tasks, data.val_loader(), self._sequence_steps())

        generator = torch.Generator()
        try:
            while self.epoch < self.epochs and not self._out_of_steps():
                generator.manual_seed(seed * 1_000_003 + self.epoch)
                train_losses = self._train_epoch(data.train_loader(generator))
                self.weighting.on_epoch_end()
                self.epoch += 1
                if self.scheduler is not None:
                    self.scheduler.step()
                last = self.epoch == self.epochs or self._out_of_steps()
                if self.epoch % self.eval_every == 0 or last:
                    self._evaluate(train_losses, higher)
                self._save()
            if self.record is None:
                self._evaluate({}, higher)
        finally:
            self.logger.close()
        self._print_summary()
        return self.record

    def _out_of_steps(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    def _train_epoch(self, loader) -> dict[str, float]:
        self.strategy.train()
        self.weighting.train()
        sums = dict.fromkeys(self.tasks, 0.0)
        count = 0
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not self.progress, leave=False)
        for images, targets in bar:
            images = to_device(images, self.device)
            targets = {name: targets[name].to(self.device, non_blocking=True) for name in self.tasks}
            losses, logs = self.train_step(images, targets)
            count += 1
            for name, value in losses.items():
                sums[name] += value
            if self.step % self.log_every == 0 or self.step == 1:
                total = sum(self.tasks[name].weight * value for name, value in losses.items())
                self.logger.scalars({**losses, "total": total}, self.step, prefix="train/loss/")
                self.logger.scalars({**logs, **self.strategy.diagnostics()}, self.step)
                self.logger.scalars({"lr": self.optimizer.param_groups[0]["lr"]}, self.step, prefix="train/")
                bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()}, refresh=False)
            if self._out_of_steps():
                break
        bar.close()
        return {name: total / max(count, 1) for name, total in sums.items()}

    def _evaluate(self, train_losses: Mapping[str, float], higher: Mapping[str, Mapping[str, bool]]) -> None:
        self.strategy.eval()
        metrics = evaluate(partial(predict, self.strategy), self.tasks, self.data.val_loader(), self.device)
        self.strategy.train()
        for name, values in metrics.items():
            self.logger.scalars(values, self.step, prefix=f"val/{name}/")
        if self.image_every and (self.epoch % self.image_every == 0 or self.epoch == self.epochs):
            self._log_images()
        self.history = [*self.history, metrics][-self.average_last :]
        reported = mean_metrics(self.history)
        delta = None if self.baseline is None else delta_m(reported, self.baseline, higher)
        if delta is not None:
            self.logger.scalars({DELTA_M_TAG: delta}, self.step)
        self.record = {
            "epoch": self.epoch,
            "step": self.step,
            "tasks": reported,
            "delta_m": delta,
            "baseline": self.baseline_source,
            "protocol": {"split": "val", "average_last": self.average_last, "evaluations": len(self.history)},
            "last_evaluation": metrics,
            "trivial": self.trivial,
            "higher_is_better": higher,
            "train_loss": dict(train_losses),
        }
        path = self.run_dir / "metrics.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record, indent=2))
        tmp.replace(path)
        log.info("epoch %d step %d: %s", self.epoch, self.step, _one_line(metrics))
        if delta is not None:
            log.info("Δm%% against %s: %.2f (lower is better)", self.baseline_source, delta)

    @torch.no_grad()
    def _log_images(self) -> None:
        images, targets = next(iter(self.data.val_loader()))
        if not isinstance(images, Tensor):
            return  # multi-input data sets have no single picture per row
        images = images[: self.num_images]
        self.strategy.eval()
        predictions = self.strategy(images.to(self.device))
        self.strategy.train()
        for name, task in self.tasks.items():
            grid = prediction_grid(task, images, targets[name][: self.num_images], predictions[name])
            if grid is not None:
                self.logger.images(f"predictions/{name}", grid, self.step)

    @torch.no_grad()
    def _sequence_steps(self) -> dict[str, int]:
        """Time steps of each sequence head (the trivial sequence predictor must emit that many)."""
        names = [name for name, task in self.tasks.items() if task.output == "sequence"]
        if not names:
            return {}
        self.strategy.eval()
        predictions = self.strategy(torch.zeros(1, *self.strategy.input_shape, device=self.device))
        self.strategy.train()
        return {name: predictions[name].shape[1] for name in names}

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.state_dict(),
            "weighting": self.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "trivial": self.trivial,
            "record": self.record,
            "history": self.history,
        }

    def _save(self) -> None:
        save_checkpoint(self._state(), self.run_dir / CHECKPOINT)

    def _restore(self) -> None:
        path = self.run_dir / CHECKPOINT
        if not (self.resume and path.exists()):
            return
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.strategy.load_state_dict(state["strategy"])
            self.weighting.load_state_dict(state["weighting"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise DataError(
                f"checkpoint {path} does not match this run's model/optimizer ({error}). It belongs to a "
                "different configuration: use another run directory or set trainer.resume=false."
            ) from error
        self.epoch, self.step = state["epoch"], state["step"]
        self.trivial, self.record = state.get("trivial"), state.get("record")
        self.history = state.get("history", [])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # ----------------------------------------------------------------- summary
    def _print_summary(self) -> None:
        if self.record is None:
            return
        lines = [f"{'task':<10} {'metric':<18} {'value':>10} {'trivial':>10}  better"]
        for name, values in self.record["tasks"].items():
            for metric, value in values.items():
                trivial = (self.trivial or {}).get(name, {}).get(metric)
                if trivial is None:
                    lines.append(f"{name:<10} {metric:<18} {value:>10.4f} {'-':>10}")
                    continue
                higher = self.record["higher_is_better"][name][metric]
                better = value > trivial if higher else value < trivial
                mark = "yes" if better else "NO"
                lines.append(f"{name:<10} {metric:<18} {value:>10.4f} {trivial:>10.4f}  {mark}")
        log.info(
            "final evaluation (epoch %d, step %d) on the val split:\n%s",
            self.record["epoch"],
            self.record["step"],
            "\n".join(lines),
        )


def _build(key: str, factory: Callable[..., Any], argument: Any) -> Any:
    """Call an optimizer/scheduler partial; a bad option (``trainer.optimizer.lr=abc``) becomes one clear line."""
    try:
        return factory(argument)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key} cannot be built from its options: {error}") from error


def _one_line(metrics: Metrics) -> str:
    return "; ".join(
        f"{task} " + " ".join(f"{name}={value:.4g}" for name, value in values.items())
        for task, values in metrics.items()
    )
