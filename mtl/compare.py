"""``mtl-compare``: turn finished runs and sweeps into one table (Markdown + CSV) and plots.

mtl-compare multirun/2025-01-01/12-00-00                      # Δm% against the sweep's strategy=independent runs
mtl-compare multirun/a multirun/b --baseline nyuv2_stl        # Δm% against a shipped published STL row
mtl-compare multirun/... --metrics seg/miou,depth/abs_err     # the two metrics of the Pareto scatter

Runs that differ only by ``seed`` form one configuration (one row: mean ± sample std over the seeds). Δm% is
computed per run against the baseline's mean and then averaged, which equals Δm% of the mean metrics. The mean
rank averages each configuration's rank (1 = best) over every metric of every task.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from mtl.engine.logger import DELTA_M_TAG
from mtl.engine.metrics import Metrics, delta_m, load_baseline, mean_metrics

# Overrides that do not change what is trained: runs differing only in these are one configuration.
IGNORED_KEYS = ("seed", "trainer.baseline")
# Config groups left out when a configuration looks for its single-task runs: a model per task has one loss per
# model, so the weighting scheme has (almost) nothing to act on and every weighting shares the same STL reference.
STL_FREE_GROUPS = ("strategy", "weighting")
INDEPENDENT = "independent"

MetricName = tuple[str, str]


@dataclass
class Run:
    """One finished run directory: its overrides, seed and final metrics."""

    path: Path
    overrides: dict[str, str]
    seed: int | None
    metrics: Metrics
    higher_is_better: dict[str, dict[str, bool]]
    step: int
    protocol: dict | None = None


@dataclass
class Configuration:
    """Runs that differ only by seed, with the Δm% of each run once a baseline is known."""

    overrides: dict[str, str]
    runs: list[Run]
    label: str = ""
    delta_m: list[float] | None = None

    def values(self, name: MetricName) -> list[float]:
        return [run.metrics[name[0]][name[1]] for run in self.runs]

    @property
    def strategy(self) -> str | None:
        return self.overrides.get("strategy")


# ----------------------------------------------------------------------------- reading runs
def _override_key(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def read_run(metrics_file: Path) -> Run:
    """Read one run directory (``metrics.json``, and ``.hydra/overrides.yaml`` when Hydra wrote it)."""
    run_dir = metrics_file.parent
    try:
        record = json.loads(metrics_file.read_text())
        metrics, higher = record["tasks"], record["higher_is_better"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{metrics_file} is not an mtl-train metrics.json (needs 'tasks' and 'higher_is_better'): {error}"
        ) from None
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        overrides = dict(_override_key(item) for item in OmegaConf.to_container(OmegaConf.load(overrides_file)))
    else:  # not a Hydra run: nothing says which runs share a configuration, so it is its own
        overrides = {"run": run_dir.name}
    seed = overrides.get("seed")
    config_file = run_dir / ".hydra" / "config.yaml"
    if seed is None and config_file.is_file():
        seed = OmegaConf.load(config_file).get("seed")
    return Run(
        path=run_dir,
        overrides=overrides,
        seed=None if seed is None else int(seed),
        metrics=metrics,
        higher_is_better=higher,
        step=int(record.get("step", 0)),
        protocol=record.get("protocol"),
    )


def find_runs(directories: Sequence[str | Path]) -> list[Run]:
    """Every run under ``directories`` (each a run directory or a tree of them, e.g. a multirun sweep)."""
    runs: list[Run] = []
    seen: set[Path] = set()  # a run reached through two of the given directories counts once
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory} is not a directory (give run or multirun directories)")
        files = sorted(directory.rglob("metrics.json"))
        if not files:
            raise ValueError(
                f"no runs under {directory}: expected <run>/metrics.json as written by mtl-train "
                "(an unfinished run has none until its first evaluation)"
            )
        runs.extend(read_run(path) for path in files if path.resolve() not in seen)
        seen.update(path.resolve() for path in files)
    check_same_metrics(runs)
    return runs


def unfinished_runs(directories: Sequence[str | Path]) -> list[Path]:
    """Hydra run directories without a metrics.json yet (still running, or failed before the first evaluation)."""
    return sorted(
        hydra_dir.parent
        for directory in map(Path, directories)
        for hydra_dir in directory.rglob(".hydra")
        if not (hydra_dir.parent / "metrics.json").is_file()
    )


def check_same_metrics(runs: Sequence[Run]) -> None:
    """All runs must have the same tasks and metrics, or their rows and Δm% would not be comparable."""
    kinds: dict[tuple, list[Path]] = {}
    for run in runs:
        signature = tuple((task, tuple(sorted(values))) for task, values in sorted(run.metrics.items()))
        kinds.setdefault(signature, []).append(run.path)
    if len(kinds) > 1:
        groups = "; ".join(
            f"{', '.join(f'{task}({len(names)} metrics)' for task, names in signature)} in {paths[0]}"
            + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
            for signature, paths in kinds.items()
        )
        raise ValueError(f"the runs have different task sets, so they cannot share one table: {groups}")


def group_runs(runs: Iterable[Run]) -> list[Configuration]:
    """Configurations (runs equal up to ``IGNORED_KEYS``), labelled by the overrides in which they differ."""
    groups: dict[tuple, Configuration] = {}
    for run in runs:
        overrides = {key: value for key, value in run.overrides.items() if key not in IGNORED_KEYS}
        key = tuple(sorted(overrides.items()))
        groups.setdefault(key, Configuration(overrides, [])).runs.append(run)
    configurations = list(groups.values())
    common = set.intersection(*(set(c.overrides.items()) for c in configurations)) if len(configurations) > 1 else set()
    for configuration in configurations:
        parts = [f"{key}={value}" for key, value in configuration.overrides.items() if (key, value) not in common]
        configuration.label = " ".join(parts) or "(defaults)"
        configuration.runs.sort(key=lambda run: (run.seed is None, run.seed, str(run.path)))
    return configurations


# ----------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def metric_names(runs: Sequence[Run]) -> list[MetricName]:
    """``(task, metric)`` of every metric, in the runs' order (all runs have the same ones)."""
    return [(task, name) for task, values in runs[0].metrics.items() for name in values]


def mean_ranks(configurations: Sequence[Configuration], names: Sequence[MetricName], higher: Mapping) -> list[float]:
    """Each configuration's rank (1 = best, ties share the average rank) averaged over ``names``."""
    totals = [0.0] * len(configurations)
    for task, name in names:
        sign = -1.0 if higher[task][name] else 1.0
        scores = [sign * statistics.fmean(c.values((task, name))) for c in configurations]
        for index, score in enumerate(scores):
            better = sum(other < score for other in scores)
            ties = sum(other == score for other in scores)
            totals[index] += better + (ties + 1) / 2
    return [total / len(names) for total in totals]


def _stl_key(configuration: Configuration) -> tuple:
    return tuple(
        sorted(
            (key, value)
            for key, value in configuration.overrides.items()
            if key.split(".")[0] not in STL_FREE_GROUPS and key != "run"
        )
    )


def assign_baselines(configurations: Sequence[Configuration], baseline: str | None) -> str:
    """Fill each configuration's per-run Δm%; returns a sentence saying what the baseline was.

    With ``baseline`` (file, run directory or shipped name) every row uses it. Otherwise a row uses the mean of
    the ``strategy=independent`` runs that match it in every override except ``strategy``/``weighting``.
    """
    higher = configurations[0].runs[0].higher_is_better
    if baseline is not None:
        reference = load_baseline(baseline)
        for configuration in configurations:
            configuration.delta_m = [delta_m(run.metrics, reference, higher) for run in configuration.runs]
        return f"Δm% against {baseline}."
    independent: dict[tuple, list[Run]] = {}
    for configuration in configurations:
        if configuration.strategy == INDEPENDENT:
            independent.setdefault(_stl_key(configuration), []).extend(configuration.runs)
    if not independent:
        return "Δm% not computed: no strategy=independent runs among the inputs and no --baseline."
    for configuration in configurations:
        runs = independent.get(_stl_key(configuration))
        if runs:
            reference = mean_metrics([run.metrics for run in runs])
            configuration.delta_m = [delta_m(run.metrics, reference, higher) for run in configuration.runs]
    return (
        "Δm% against the mean of the strategy=independent runs with the same other settings (any weighting, all seeds)."
    )


# ----------------------------------------------------------------------------- table
def _format(mean: float, std: float, runs: int, sign: str = "") -> str:
    """``mean ± std`` with decimals fitting the magnitude (fractions 4, degrees and percents 2); a single run has
    no spread, so it shows the value alone rather than a misleading ``± 0``."""
    decimals = 4 if abs(mean) < 10 and not sign else 2 if abs(mean) < 1000 else 0
    value = f"{mean:{sign}.{decimals}f}"
    return value if runs < 2 else f"{value} ± {std:.{decimals}f}"


@dataclass
class Table:
    """The comparison as rows of strings (Markdown) and of numbers (CSV)."""

    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    csv_rows: list[list]

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def build_table(configurations: Sequence[Configuration]) -> Table:
    """One row per configuration: seeds, metrics as mean ± std, Δm% mean ± std, mean rank; sorted by Δm%."""
    runs = configurations[0].runs
    higher = runs[0].higher_is_better
    names = metric_names(runs)
    ranks = mean_ranks(configurations, names, higher)
    arrows = {True: "↑", False: "↓"}
    header = ["configuration", "seeds", *(f"{t}/{m} {arrows[higher[t][m]]}" for t, m in names), "Δm% ↓", "mean rank ↓"]
    csv_header = ["configuration", "seeds", "runs"]
    for task, name in names:
        csv_header += [f"{task}/{name} mean", f"{task}/{name} std"]
    csv_header += ["delta_m mean", "delta_m std", "mean rank", "overrides"]
    order = sorted(
        range(len(configurations)),
        key=lambda i: (configurations[i].delta_m is None, statistics.fmean(configurations[i].delta_m or [0]), ranks[i]),
    )
    rows, csv_rows = [], []
    for index in order:
        configuration = configurations[index]
        seeds = ",".join("?" if run.seed is None else str(run.seed) for run in configuration.runs)
        stats = [mean_std(configuration.values(name)) for name in names]
        delta = mean_std(configuration.delta_m) if configuration.delta_m else None
        rows.append(
            [
                configuration.label,
                seeds,
                *(_format(mean, std, len(configuration.runs)) for mean, std in stats),
                "–" if delta is None else _format(*delta, len(configuration.delta_m), sign="+"),
                f"{ranks[index]:.2f}",
            ]
        )
        csv_rows.append(
            [
                configuration.label,
                seeds,
                len(configuration.runs),
                *(value for pair in stats for value in pair),
                *(delta if delta else ("", "")),
                ranks[index],
                " ".join(f"{key}={value}" for key, value in configuration.overrides.items()),
            ]
        )
    return Table(header, rows, csv_header, csv_rows)


# ----------------------------------------------------------------------------- plots
def read_curves(run: Run, tags: Iterable[str]) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` from the run's TensorBoard event files (the last value wins on repeated steps)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run.path), size_guidance={"scalars": 0})
    accumulator.Reload()
    available = set(accumulator.Tags().get("scalars", []))
    return {tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in tags if tag in available}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(name: MetricName) -> str:
    return f"{name[0]}_{name[1]}"


def _direction(higher: Mapping[str, Mapping[str, bool]], name: MetricName) -> str:
    return "higher is better" if higher[name[0]][name[1]] else "lower is better"


def _save(figure, axes, path: Path, legend_size: int) -> Path:
    """Grid and legend; write ``path`` (cropped to its contents) and free the figure."""
    axes.grid(alpha=0.3)
    axes.legend(fontsize=legend_size)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_curves(configurations: Sequence[Configuration], out: Path) -> list[Path]:
    """One PNG per task metric: the val curve of each configuration (mean over seeds, band = ± std)."""
    plt = _pyplot()
    names = metric_names(configurations[0].runs)
    tags = {name: f"val/{name[0]}/{name[1]}" for name in names}
    curves = {id(run): read_curves(run, tags.values()) for c in configurations for run in c.runs}
    written = []
    for name in names:
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for configuration in configurations:
            per_run = [curves[id(run)].get(tags[name], {}) for run in configuration.runs]
            steps = sorted(set.intersection(*(set(curve) for curve in per_run)))
            if not steps:
                continue
            stats = [mean_std([curve[step] for curve in per_run]) for step in steps]
            means = [mean for mean, _ in stats]
            (line,) = axes.plot(steps, means, marker="o", markersize=3, label=configuration.label)
            low = [mean - std for mean, std in stats]
            high = [mean + std for mean, std in stats]
            axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        if not axes.lines:
            plt.close(figure)
            continue
        direction = _direction(configurations[0].runs[0].higher_is_better, name)
        axes.set(xlabel="step", ylabel=tags[name], title=f"{tags[name]} ({direction}; band: ± std over seeds)")
        written.append(_save(figure, axes, out / f"curve_{_slug(name)}.png", legend_size=7))
    return written


def pareto_front(points: Sequence[tuple[float, float]], maximize: tuple[bool, bool]) -> list[int]:
    """Indices of the points no other point dominates (at least as good in both, better in one)."""
    signs = [1.0 if flag else -1.0 for flag in maximize]
    scored = [(signs[0] * x, signs[1] * y) for x, y in points]

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] >= b[1] and a != b

    return [i for i, p in enumerate(scored) if not any(dominates(q, p) for q in scored)]


def plot_pareto(configurations: Sequence[Configuration], pair: tuple[MetricName, MetricName], out: Path) -> Path:
    """Scatter of two metrics (mean ± std over seeds per configuration) with the Pareto front marked."""
    plt = _pyplot()
    higher = configurations[0].runs[0].higher_is_better
    stats = [[mean_std(c.values(name)) for name in pair] for c in configurations]
    points = [(x[0], y[0]) for x, y in stats]
    front = pareto_front(points, (higher[pair[0][0]][pair[0][1]], higher[pair[1][0]][pair[1][1]]))
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for index, ((x, x_std), (y, y_std)) in enumerate(stats):
        on_front = index in front
        axes.errorbar(
            x,
            y,
            xerr=x_std,
            yerr=y_std,
            fmt="*" if on_front else "o",
            markersize=11 if on_front else 6,
            capsize=2,
            color="tab:red" if on_front else "tab:blue",
        )
        axes.annotate(configurations[index].label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ordered = sorted(front, key=lambda i: points[i][0])
    axes.plot(
        [points[i][0] for i in ordered], [points[i][1] for i in ordered], "--", color="tab:red", label="Pareto front"
    )
    x_label, y_label = (f"{task}/{metric} ({_direction(higher, (task, metric))})" for task, metric in pair)
    axes.set(xlabel=x_label, ylabel=y_label, title="configurations (mean ± std over seeds)")
    return _save(figure, axes, out / f"pareto_{_slug(pair[0])}__{_slug(pair[1])}.png", legend_size=8)


def parse_pair(text: str | None, names: Sequence[MetricName]) -> tuple[MetricName, MetricName]:
    """``task/metric,task/metric`` → two metric names; by default the first metric of the first two tasks."""
    if text is None:
        tasks = list(dict.fromkeys(task for task, _ in names))
        if len(tasks) > 1:
            return (tasks[0], next(m for t, m in names if t == tasks[0])), (
                tasks[1],
                next(m for t, m in names if t == tasks[1]),
            )
        if len(names) < 2:
            raise ValueError(f"the Pareto plot needs two metrics but the runs have only {names}")
        return names[0], names[1]
    parts = [part.strip() for part in text.split(",")]
    pair = [tuple(part.split("/", 1)) for part in parts]
    unknown = [part for part, name in zip(parts, pair, strict=True) if name not in names]
    if len(pair) != 2 or unknown:
        available = ", ".join(f"{task}/{name}" for task, name in names)
        raise ValueError(
            f"--metrics must be two of task/metric separated by a comma (got {text!r}); available: {available}"
        )
    return pair[0], pair[1]


# ----------------------------------------------------------------------------- TensorBoard
def log_delta_m(configurations: Sequence[Configuration]) -> int:
    """Write each run's Δm% as ``val/delta_m`` into its own TensorBoard directory (HParams can then sort by it)."""
    from torch.utils.tensorboard import SummaryWriter

    count = 0
    for configuration in configurations:
        for run, value in zip(configuration.runs, configuration.delta_m or [], strict=False):
            writer = SummaryWriter(log_dir=str(run.path), filename_suffix=".mtl-compare")
            writer.add_scalar(DELTA_M_TAG, value, run.step)
            writer.close()
            count += 1
    return count


# ----------------------------------------------------------------------------- command line
def compare(
    directories: Sequence[str | Path],
    out: str | Path | None = None,
    baseline: str | None = None,
    metrics: str | None = None,
    tensorboard: bool = False,
    echo: Callable[[str], None] = print,
) -> Path:
    """Read the runs, write ``results.md``, ``results.csv`` and the PNGs into ``out``; returns ``out``."""
    runs = find_runs(directories)
    configurations = group_runs(runs)
    names = metric_names(runs)
    pair = parse_pair(metrics, names)
    note = assign_baselines(configurations, baseline)
    out = Path(out) if out is not None else Path(directories[0]) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(configurations)
    protocols = {json.dumps(run.protocol, sort_keys=True) for run in runs if run.protocol}
    skipped = unfinished_runs(directories)
    summary = [
        f"{len(runs)} runs in {len(configurations)} configurations from {', '.join(map(str, directories))}.",
        note,
        "Metrics: mean ± sample std over seeds"
        + (f"; evaluation protocol {', '.join(sorted(protocols))}." if protocols else "."),
    ]
    if skipped:
        summary.append(f"Skipped {len(skipped)} run directories without metrics.json: {', '.join(map(str, skipped))}.")
    markdown = "\n".join(summary) + "\n\n" + table.markdown() + "\n"
    (out / "results.md").write_text(markdown)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.csv_header)
        writer.writerows(table.csv_rows)
    plots = [*plot_curves(configurations, out), plot_pareto(configurations, pair, out)]
    echo(markdown)
    echo(f"wrote {out / 'results.md'}, {out / 'results.csv'} and {len(plots)} plots in {out}")
    if tensorboard:
        echo(f"wrote val/delta_m into {log_delta_m(configurations)} run directories")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtl-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", metavar="DIR", help="run or multirun directories")
    parser.add_argument(
        "--baseline",
        help="single-task metrics JSON, an independent run's directory, or a shipped "
        "name (nyuv2_stl, cityscapes_stl); default: the strategy=independent runs among the inputs",
    )
    parser.add_argument("--out", help="output directory (default: DIR/compare of the first DIR)")
    parser.add_argument("--metrics", help="the two metrics of the Pareto scatter, e.g. seg/miou,depth/abs_err")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each run's Δm%% as val/delta_m into its TensorBoard files (HParams sorting)",
    )
    args = parser.parse_args(argv)
    try:
        compare(args.directories, args.out, args.baseline, args.metrics, args.tensorboard)
    except (FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mtl-compare: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
