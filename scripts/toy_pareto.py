"""The two-objective toy problem of Nash-MTL / FAMO (after CAGrad): trajectories of θ ∈ R² for several weightings.

    python scripts/toy_pareto.py                                  # 8 methods × 5 starts, writes toy_pareto.png
    python scripts/toy_pareto.py --methods ew,mgda --steps 2000 --out /tmp/toy.png --json /tmp/toy.json

The losses, the five starting points and the optimiser (Adam, lr 1e-3 on θ) are those of the authors' code
(experiments/toy in the Nash-MTL and FAMO repositories; the first loss is scaled by 0.1). Each method is the
same ``Weighting`` object the trainer builds from conf/weighting/<name>.yaml, driven through ``predict`` /
``backward`` / ``after_step``. The Pareto set is ``θ₂ = −8.3552, θ₁ ∈ [−7, 7]``; a run "ends on the front" when
no point of the front is better than its final losses by more than ``--tolerance`` in both objectives.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from torch import Tensor, nn

import mtl.config  # noqa: F401  (registers the structured-config schemas)
from mtl.strategies.base import SharingStrategy
from mtl.train import create

METHODS = "ew,mgda,pcgrad,cagrad,imtl_g,nash_mtl,famo,upgrad"
STARTS = [(-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)]
SCALE = 0.1  # the first loss's scale in the authors' runs
LOWER = 5e-6
FRONT_Y = -8.3552
TASKS = ["f1", "f2"]


def positive_part(x: Tensor) -> Tensor:
    """``max(x, 0)`` whose gradient at 0 is 1, as ``torch.clamp`` had when the authors ran the toy (it is 0 in
    current torch, which would freeze the start θ = (0, 0), where both switches are exactly 0)."""
    return torch.where(x >= 0, x, torch.zeros_like(x))


def toy_losses(theta: Tensor, scale: float = SCALE) -> Tensor:
    """The two losses at ``theta`` (shape (..., 2)) as (..., 2); the Nash-MTL ``Toy`` problem, batched."""
    x1, x2 = theta[..., 0], theta[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = positive_part(torch.tanh(x2 * 0.5))
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = positive_part(torch.tanh(-x2 * 0.5))
    return torch.stack([(f1 * c1 + f1_sq * c2) * scale, f2 * c1 + f2_sq * c2], dim=-1)


class ToyModel(SharingStrategy):
    """θ is the only (shared) parameter; the "predictions" are the two losses themselves."""

    def __init__(self, start: tuple[float, float]) -> None:
        nn.Module.__init__(self)
        self.task_names = list(TASKS)
        self.input_shape = (1, 1, 1)
        self.theta = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(TASKS, toy_losses(self.theta).unbind(), strict=True))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        return []


def build_weighting(method: str):
    overrides = [f"weighting={method}"]
    if method == "famo":  # the FAMO toy: losses are bounded below by (−21·scale, −21); logits updated every step
        overrides += [f"weighting.min_losses=[{-21 * SCALE},-21]", "weighting.update=next_batch"]
    with initialize_config_module(config_module="mtl.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return create(cfg.weighting, task_names=TASKS).double()


def trajectory(method: str, start: tuple[float, float], steps: int, lr: float) -> Tensor:
    """θ after every step (steps+1 × 2), optimised with ``method``'s weighting."""
    torch.manual_seed(0)
    weighting = build_weighting(method)
    model = ToyModel(start)
    optimizer = torch.optim.Adam([model.theta], lr=lr)
    extra = list(weighting.parameters())
    weighting_optimizer = torch.optim.Adam(extra, lr=lr) if extra else None
    path = [model.theta.detach().clone()]
    dummy = torch.zeros(1)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        if weighting_optimizer is not None:
            weighting_optimizer.zero_grad(set_to_none=True)
        weighting.backward(weighting.predict(model, dummy), model)
        optimizer.step()
        if weighting_optimizer is not None:
            weighting_optimizer.step()
        with torch.no_grad():
            weighting.after_step(lambda: model(dummy))
        path.append(model.theta.detach().clone())
    return torch.stack(path)


def pareto_front(points: int = 2000) -> Tensor:
    x = torch.linspace(-7, 7, points, dtype=torch.float64)
    return toy_losses(torch.stack([x, torch.full_like(x, FRONT_Y)], dim=-1))


def front_gap(losses: Tensor, front: Tensor) -> float:
    """By how much the best point of the front beats ``losses`` in both objectives at once (≤ 0: not beaten)."""
    return float((losses - front).max(dim=-1).values.min())


def plot(results: dict[str, list[Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    grid = torch.linspace(-10, 10, 200, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    mean_loss = toy_losses(torch.stack([xx, yy], dim=-1)).mean(-1)
    columns = min(4, len(results))
    rows = (len(results) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.axis("off")
    for ax, (method, paths) in zip(axes.flat, results.items(), strict=False):
        ax.contourf(xx.numpy(), yy.numpy(), mean_loss.numpy(), levels=30, cmap="Greys_r", alpha=0.6)
        ax.plot([-7, 7], [FRONT_Y, FRONT_Y], color="tab:red", linewidth=4, label="Pareto set")
        for path_ in paths:
            ax.plot(path_[:, 0].numpy(), path_[:, 1].numpy(), linewidth=1.5)
            ax.scatter([path_[0, 0]], [path_[0, 1]], color="k", s=25, zorder=5)
            ax.scatter([path_[-1, 0]], [path_[-1, 1]], color="tab:blue", marker="*", s=60, zorder=6)
        ax.set_title(method)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
    axes.flat[0].legend(loc="upper right", fontsize=8)
    figure.suptitle("toy problem: θ trajectories over the mean loss, Pareto set in red")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float | bool]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--steps", type=int, default=25000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tolerance", type=float, default=0.02, help="loss units (see above)")
    parser.add_argument("--out", type=Path, default=Path("toy_pareto.png"))
    parser.add_argument("--json", type=Path, default=None, help="also write the per-run results here")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (one torch thread each)")
    args = parser.parse_args(argv)
    front = pareto_front()
    methods = args.methods.split(",")
    runs = [(method, start, args.steps, args.lr) for method in methods for start in STARTS]
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            args.jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            finished = list(pool.map(trajectory, *zip(*runs, strict=True)))
    else:
        finished = [trajectory(*run) for run in runs]
    paths: dict[str, list[Tensor]] = {method: [] for method in methods}
    summary: dict[str, list[dict[str, float | bool]]] = {method: [] for method in methods}
    print(f"{'method':<10} {'start':<14} {'final θ':<20} {'final losses':<22} {'gap':>8}  on front")
    for (method, start, _, _), path in zip(runs, finished, strict=True):
        final = toy_losses(path[-1])
        gap = front_gap(final, front)
        on_front = gap <= args.tolerance
        paths[method].append(path)
        summary[method].append(
            {
                "start": list(start),
                "theta": path[-1].tolist(),
                "losses": final.tolist(),
                "gap": gap,
                "on_front": on_front,
            }
        )
        theta = f"({path[-1][0]:.2f}, {path[-1][1]:.2f})"
        losses = f"({final[0]:.3f}, {final[1]:.3f})"
        print(f"{method:<10} {start!s:<14} {theta:<20} {losses:<22} {gap:>8.3f}  {'yes' if on_front else 'NO'}")
    plot(paths, args.out)
    print(f"wrote {args.out}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
