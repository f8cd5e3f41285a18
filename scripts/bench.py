"""Per-step cost of every weighting against hand-written plain PyTorch loops, in one process, interleaved.

    python scripts/bench.py                                   # every weighting, param and rep mode, K=3
    python scripts/bench.py --methods ew,pcgrad,famo --modes param --steps 30 --json bench.json
    python scripts/bench.py --methods ew,uw,famo --k 40 --task-pool count   # loss-based cost vs K

Every round times one step of each configuration in turn (the plain EW loop, the plain K-backward loop, then
each weighting), so machine noise hits all of them alike; the table reports medians and the ratios against the
two plain loops of the same run. A weighting step is the trainer's step: ``predict``, task losses,
``weighting.backward``, optimizer step, ``weighting.after_step``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import Tensor

import mtl.config  # noqa: F401  (registers the structured-config schemas)
from mtl.errors import ConfigError
from mtl.strategies.base import SharingStrategy
from mtl.tasks import Task
from mtl.train import create

CONF = Path(__file__).resolve().parents[1] / "conf" / "weighting"
Step = Callable[[], None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(sorted(p.stem for p in CONF.glob("*.yaml"))))
    parser.add_argument("--modes", default="param,rep", help="modes of the gradient methods: param, rep or both")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (each times every configuration once)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--k", type=int, default=3, help="number of tasks (the pool is cycled when K exceeds it)")
    parser.add_argument("--task-pool", default="seg,depth,normal,count,sequence")
    parser.add_argument("--strategy", default="hard")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronise the device)")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. encoder=resnet18")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.k < 1 or args.batch < 1:
        parser.error("--steps, --k and --batch must be >= 1")
    unknown = set(args.modes.split(",")) - {"param", "rep"}
    if unknown:
        parser.error(f"--modes takes param and/or rep, got {sorted(unknown)}")
    return args


def task_plan(pool: list[str], k: int) -> dict[str, str]:
    """Task name → the task config it is built from; the pool is cycled (``count0``, ``count1``, ...) when K > pool."""
    if k <= len(pool):
        return {name: name for name in pool[:k]}
    return {f"{pool[i % len(pool)]}{i}": pool[i % len(pool)] for i in range(k)}


def build_problem(args: argparse.Namespace) -> tuple[SharingStrategy, dict[str, Task], Tensor, dict[str, Tensor]]:
    """The model, tasks and one fixed batch, built from the packaged Hydra config like ``mtl-train`` does."""
    plan = task_plan(args.task_pool.split(","), args.k)
    bases = sorted(set(plan.values()))
    overrides = [
        f"strategy={args.strategy}",
        f"tasks=[{','.join(bases)}]",
        f"data.batch_size={args.batch}",
        f"data.train_size={args.batch}",
        "data.val_size=8",
        f"data.image_size={args.image_size}",
        *args.override,
    ]
    with initialize_config_module(config_module="mtl.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    torch.manual_seed(0)
    data = instantiate(cfg.data)
    tasks = {name: instantiate(cfg.tasks[base], name=name) for name, base in plan.items()}
    encoder = instantiate(cfg.encoder, _partial_=True, in_channels=data.input_shape[0])
    strategy = instantiate(cfg.strategy, encoder=encoder, tasks=tasks, input_shape=data.input_shape)
    images, targets = next(iter(data.train_loader()))
    return strategy, tasks, images, {name: targets[base] for name, base in plan.items()}


def weighting_configs(methods: list[str], modes: list[str]) -> list[tuple[str, list[str]]]:
    """(result key, Hydra overrides) for every method and mode that applies (loss-based methods have no mode)."""
    configs = []
    for method in methods:
        with initialize_config_module(config_module="mtl.conf", version_base="1.3"):
            node = compose(config_name="config", overrides=[f"weighting={method}"]).weighting
        if "mode" not in node:
            configs.append((method, [f"weighting={method}"]))
            continue
        for mode in modes:
            key = method if mode == "param" else f"{method}:rep"
            configs.append((key, [f"weighting={method}", f"weighting.mode={mode}"]))
    return configs


def losses_of(predictions: dict[str, Tensor], tasks: dict[str, Task], targets: dict[str, Tensor]) -> list[Tensor]:
    return [task.loss(predictions[name].float(), targets[name]) * task.weight for name, task in tasks.items()]


def plain_ew_step(model: SharingStrategy, optimizer, tasks, images, targets) -> Step:
    """The hand-written baseline: forward, sum of the losses, one backward, step."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        sum(losses_of(model(images), tasks, targets)).backward()
        optimizer.step()

    return step


def plain_floor_step(model: SharingStrategy, optimizer, tasks, images, targets) -> Step:
    """The floor of every param-mode gradient method: one forward and K backward passes, nothing else."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        losses = losses_of(model(images), tasks, targets)
        for k, loss in enumerate(losses):
            loss.backward(retain_graph=k < len(losses) - 1)
        optimizer.step()

    return step


def weighting_step(model: SharingStrategy, weighting, optimizer, tasks, images, targets) -> Step:
    """The trainer's step with ``weighting``."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        predictions = weighting.predict(model, images)
        losses = dict(zip(tasks, losses_of(predictions, tasks, targets), strict=True))
        weighting.backward(losses, model)
        optimizer.step()
        with torch.no_grad():
            weighting.after_step(lambda: dict(zip(tasks, losses_of(model(images), tasks, targets), strict=True)))

    return step


def measure(steps: dict[str, Step], rounds: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds per step of each configuration, timed round-robin."""
    times: dict[str, list[float]] = {key: [] for key in steps}
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for round_index in range(warmup + rounds):
        for key, step in steps.items():
            synchronize()
            start = time.perf_counter()
            step()
            synchronize()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[key].append(elapsed * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, tasks, images, targets = build_problem(args)
    model, images = model.to(device), images.to(device)
    targets = {name: target.to(device) for name, target in targets.items()}
    names = list(tasks)

    def fresh_optimizer(*parameter_lists):
        return torch.optim.Adam([p for params in parameter_lists for p in params], lr=1e-4)

    steps: dict[str, Step] = {}
    plain = copy.deepcopy(model)
    steps["plain_ew"] = plain_ew_step(plain, fresh_optimizer(plain.parameters()), tasks, images, targets)
    floor = copy.deepcopy(model)
    steps["plain_floor"] = plain_floor_step(floor, fresh_optimizer(floor.parameters()), tasks, images, targets)
    for key, overrides in weighting_configs(args.methods.split(","), args.modes.split(",")):
        with initialize_config_module(config_module="mtl.conf", version_base="1.3"):
            node = compose(config_name="config", overrides=overrides).weighting
        if key.endswith(":rep") and not model.supports_rep_mode:
            print(f"skip {key}: strategy {args.strategy} has no shared representation", file=sys.stderr)
            continue
        try:
            weighting = create(node, task_names=names)
        except ConfigError as error:  # a method that refuses this mode (db_mtl in rep mode) is reported, not run
            print(f"skip {key}: {error}", file=sys.stderr)
            continue
        copy_ = copy.deepcopy(model)
        weighting = weighting.to(device)
        optimizer = fresh_optimizer(copy_.parameters(), weighting.parameters())
        steps[key] = weighting_step(copy_, weighting, optimizer, tasks, images, targets)

    medians = measure(steps, args.steps, args.warmup, device)
    results = {
        key: {"ms": ms, "ratio_ew": ms / medians["plain_ew"], "ratio_floor": ms / medians["plain_floor"]}
        for key, ms in medians.items()
    }
    print(
        f"strategy={args.strategy} K={args.k} tasks={','.join(names)} batch={args.batch} "
        f"image={args.image_size} device={args.device} threads={torch.get_num_threads()} rounds={args.steps} (medians)"
    )
    print(f"{'config':<18} {'ms/step':>9} {'x plain EW':>11} {'x K-backward':>13}")
    for key, values in results.items():
        print(f"{key:<18} {values['ms']:>9.1f} {values['ratio_ew']:>11.3f} {values['ratio_floor']:>13.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
