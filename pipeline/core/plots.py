"""PNG plots of runs: dev scores per task, and the student's training curves (matplotlib, Agg, no display).

Both functions write atomically (a temporary file in the same folder, then `os.replace`) and return the path, so a
plot being rewritten while someone looks at it is never half a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, FuncFormatter

from pipeline.core.store import atomic_path


def plot_scores(
    scores: dict[str, dict[str, float]],
    path: Path,
    title: str,
    ylabel: str = "dev score",
    spread: dict[str, dict[str, tuple[float, float]]] | None = None,
) -> Path:
    """Grouped bar chart: one group of bars per task, one colour per entry of `scores` (e.g. teacher / student).

    Args:
        scores: name → {task: score}; tasks are shown in first-seen order, "avg" last, set apart by a line.
            A task missing from one entry leaves a gap in its group.
        path: where the PNG goes.
        title: figure title.
        ylabel: label of the score axis.
        spread: name → {task: (low, high)}, e.g. the min and max over seeds: a whisker on the bar (none where
            low == high, e.g. a single seed).
    """
    tasks = list(dict.fromkeys(task for row in scores.values() for task in row if task != "avg"))
    if any("avg" in row for row in scores.values()):
        tasks.append("avg")
    if not tasks:
        raise ValueError("plot_scores: no scores to plot")
    groups = len(scores)
    width = 0.8 / groups
    fig = Figure(figsize=(max(6.0, 1.0 + len(tasks) * (0.5 + 0.35 * groups)), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    spread = spread or {}
    values = [v for row in scores.values() for v in row.values()]
    values += [v for row in spread.values() for pair in row.values() for v in pair]
    for i, (name, row) in enumerate(scores.items()):
        xs = [k + (i - (groups - 1) / 2) * width for k, task in enumerate(tasks) if task in row]
        heights = [row[task] for task in tasks if task in row]
        ax.bar(xs, heights, width, label=name)
        ranges = [spread.get(name, {}).get(task) for task in tasks if task in row]
        whiskers = [(x, h, r) for x, h, r in zip(xs, heights, ranges, strict=True) if r is not None and r[0] < r[1]]
        if whiskers:
            wx, wh, wr = zip(*whiskers, strict=True)
            below, above = (
                [h - r[0] for h, r in zip(wh, wr, strict=True)],
                [r[1] - h for h, r in zip(wh, wr, strict=True)],
            )
            ax.errorbar(wx, wh, yerr=[below, above], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        # Upright labels fit above bars up to three per task; more bars need them turned to stay readable. A label
        # goes past the bar's end, or its whisker's.
        for x, h, r in zip(xs, heights, ranges, strict=True):
            end = h if r is None else (max(h, r[1]) if h >= 0 else min(h, r[0]))
            ax.annotate(f"{h:.1f}", (x, end), xytext=(0, 2 if h >= 0 else -2), textcoords="offset points",
                        ha="center", va="bottom" if h >= 0 else "top", fontsize=8,
                        rotation=90 if groups > 3 else 0)  # fmt: skip
    ax.set_xticks(range(len(tasks)), tasks)
    if tasks[-1] == "avg" and len(tasks) > 1:
        ax.axvline(len(tasks) - 1.5, color="grey", linestyle=":", linewidth=1)
    low, high = min(0.0, min(values)), max(values)
    # Head room for the value labels (turned ones need more) and for the legend above the bars.
    room = (high - low) * (0.3 if groups > 3 else 0.18)
    ax.set_ylim(low - (room if low < 0 else 0), high + room)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", ncols=min(groups, 4), fontsize=9, frameon=False)
    return _save(fig, path)


def _two_five(y: float, _: int) -> str:
    """A minor tick's label on a log axis spanning more than a decade: at 2 and 5 times a power of ten only, so the
    labels do not run into each other."""
    mantissa = round(y / 10 ** math.floor(math.log10(y) + 1e-9))
    return f"{y:.2g}" if mantissa in (2, 5) else ""


def plot_training_curves(logs: dict[str, Path | dict], path: Path, share_of: Sequence[str] = ()) -> Path:
    """Training curves of one or more students, from their `student/log.jsonl` (label → path) or a curve kept in
    results.json (label → `training_curve`'s columns).

    One panel per task: its training loss (faint: as logged; solid: moving average; dotted: the moving average of
    the loss at the adversarial embeddings, for students trained with an adversarial option), one colour per label,
    on a log scale when every loss is positive; then the learning rate (solid, left axis) and λ (dashed, right
    axis); with a gradient probe's records (`grad_norm`), the share of the squared gradient at the heads' input
    (`share_panels`: each task's, of the first such label; or, with several such labels, one panel per task of
    `share_of`, e.g. the regression tasks, with a line per label); with dev evaluations during training
    (`eval_every`), a panel of each task's main dev metric and their mean, of the first label that has at least two.
    The x-axis is the training examples seen, so students that take steps of different sizes (`summed`'s one batch
    of every task) line up; logs without example counts are drawn over optimizer steps. Lines cut short by a crash
    are skipped.
    """
    runs = {
        label: _training_records(log) if isinstance(log, (str, Path)) else _records(log) for label, log in logs.items()
    }
    if not any(runs.values()):
        raise ValueError(f"plot_training_curves: no training records in {', '.join(map(str, logs.values()))}")
    by_examples = all("examples_seen" in r for records in runs.values() for r in records)

    def x(r: dict) -> float:
        return sum(r["examples_seen"].values()) / 1000 if by_examples else r["step"]

    tasks = list(dict.fromkeys(task for records in runs.values() for r in records for task in r["loss"]))
    colours = run_colours(list(runs))
    probed = [label for label, records in runs.items() if any("grad_norm" in r for r in records)]
    shares = share_panels(probed, tasks, share_of)
    devs = {label: _dev_records(log) for label, log in logs.items() if isinstance(log, (str, Path))}
    curve = next((label for label, records in devs.items() if len(records) >= 2), None)
    panels = len(tasks) + 1 + len(shares) + (curve is not None)
    columns = min(3, panels)
    rows = -(-panels // columns)
    fig = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        _plot_losses(ax, task, runs, colours, x)
    _plot_schedule(axes[len(tasks)], runs, colours, x)
    for ax, (task, label) in zip(axes[len(tasks) + 1 :], shares):
        if task is None:
            _plot_gradient_shares(ax, runs[label], tasks, x, label if len(runs) > 1 else "")
        else:
            _plot_task_share(ax, {label: runs[label] for label in probed}, task, x, colours)
    if curve is not None:
        steps, xs = [r["step"] for r in runs[curve]], [x(r) for r in runs[curve]]
        at = partial(np.interp, xp=[0, *steps], fp=[0, *xs])  # a dev record's step on the training records' x-axis
        _plot_dev_curve(axes[panels - 1], devs[curve], at, curve if len(runs) > 1 else "")
    for ax in axes[panels:]:
        ax.set_visible(False)
    for i in range(max(0, panels - columns), panels):  # the lowest panel of each column
        axes[i].set_xlabel("training examples seen (thousands)" if by_examples else "optimizer step")
        axes[i].xaxis.set_tick_params(labelbottom=True)
    handles = [Line2D([], [], color=colours[label], label=label) for label in runs]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(runs), 6), fontsize=9, frameon=False)
    adversarial = any("adv_loss" in r for records in runs.values() for r in records)
    dotted = "; dotted: at the adversarial embeddings" if adversarial else ""
    fig.suptitle(f"Student training (faint: logged loss; solid: moving average{dotted})")
    return _save(fig, path)


def run_colours(labels: list[str]) -> dict[str, object]:
    """A colour per run: matplotlib's ten default ones, or the twenty of tab20 when there are more runs, so that no
    two lines of up to twenty runs share a colour."""
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    return {label: colormaps["tab20"](i % 20) for i, label in enumerate(labels)}


def share_panels(probed: list[str], tasks: list[str], share_of: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """The gradient-share panels of `plot_training_curves`, as (task, None): that task's share, a line per probed
    label; or (None, label): every task's share in that label's run. Several probed labels and tasks of `share_of`
    among `tasks`: one panel per such task; else the first probed label's; no probed label: none."""
    if not probed:
        return []
    focus = [t for t in share_of if t in tasks]
    if len(probed) > 1 and focus:
        return [(task, None) for task in focus]
    return [(None, probed[0])]


def _plot_losses(ax, task: str, runs: dict[str, list[dict]], colours: dict[str, str], x) -> None:
    """One task's training loss per label: faint as logged, solid its moving average, dotted the adversarial one."""
    positive = True
    for label, records in runs.items():
        points = [(x(r), r["loss"][task]) for r in records if task in r["loss"]]
        if not points:
            continue
        xs, losses = zip(*points)
        positive &= all(y > 0 for y in losses)
        ax.plot(xs, losses, color=colours[label], linewidth=0.6, alpha=0.25)
        ax.plot(*_moving_average(xs, losses), color=colours[label], linewidth=1.4)
        adv = [(x(r), r["adv_loss"][task]) for r in records if task in r.get("adv_loss", {})]
        if adv:
            positive &= all(y > 0 for _, y in adv)
            ax.plot(*_moving_average(*zip(*adv)), color=colours[label], linewidth=1.2, linestyle=":")
    if positive:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        low, high = ax.get_ylim()
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g") if high / low <= 10 else FuncFormatter(_two_five))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_title(f"{task}: training loss", fontsize=10)
    ax.grid(alpha=0.3)


def _plot_schedule(lr_ax, runs: dict[str, list[dict]], colours: dict[str, str], x) -> None:
    """The learning rate (solid, left axis) and λ (dashed, right axis) of every label."""
    lam_ax = lr_ax.twinx()
    for label, records in runs.items():
        xs = [x(r) for r in records]
        lr_ax.plot(xs, [r["lr"] for r in records], color=colours[label], linewidth=1.2)
        lam_ax.plot(xs, [r["lambda"] for r in records], color=colours[label], linewidth=1.2, linestyle="--")
    lr_ax.set_title("learning rate (solid), λ (dashed)", fontsize=10)
    lr_ax.set_ylabel("learning rate (heads)")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    lam_ax.set_ylabel("λ (weight of the gold label)")
    lam_ax.set_ylim(-0.05, 1.05)
    lr_ax.grid(alpha=0.3)


def _shares(records: list[dict], task: str, x) -> tuple[list[float], list[float]]:
    """(x, `task`'s share of the squared gradient at the heads' input) at each probed record."""
    points = [r for r in records if r.get("grad_norm")]
    totals = [sum(v**2 for v in r["grad_norm"].values()) or 1.0 for r in points]
    return [x(r) for r in points], [r["grad_norm"].get(task, 0.0) ** 2 / t for r, t in zip(points, totals)]


def _plot_task_share(ax, runs: dict[str, list[dict]], task: str, x, colours: dict[str, str]) -> None:
    """One task's gradient share in every probed label's run (moving average): which setting starves it."""
    for label, records in runs.items():
        ax.plot(*_moving_average(*_shares(records, task, x)), color=colours[label], linewidth=1.2)
    ax.set_title(f"{task}: gradient share at the heads' input", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def _plot_gradient_shares(ax, records: list[dict], tasks: list[str], x, label: str) -> None:
    """Each task's share of the squared gradient at the heads' input (`grad_norm`, student/probe.py), moving
    average: a task near 0 is starved."""
    for i, task in enumerate(tasks):
        ax.plot(*_moving_average(*_shares(records, task, x)), color=f"C{i % 10}", linewidth=1.2, label=task)
    ax.set_title("gradient share at the heads' input" + (f" ({label})" if label else ""), fontsize=10)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)


def _plot_dev_curve(ax, records: list[dict], at, label: str) -> None:
    """Each task's main dev metric at each evaluation (`score`, pipeline/core/selection.py), and their mean."""
    xs = [float(at(r["step"])) for r in records]
    tasks = list(dict.fromkeys(t for r in records for t in r["score"]))
    for i, task in enumerate(tasks):
        ax.plot(xs, [r["score"].get(task, np.nan) for r in records], color=f"C{i % 10}", marker=".", label=task)
    if len(tasks) > 1:
        means = [np.mean(list(r["score"].values())) for r in records]
        ax.plot(xs, means, color="black", linestyle="--", marker=".", label="mean")
    ax.set_title("dev score (main metric)" + (f" ({label})" if label else ""), fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)


def _dev_records(log: Path) -> list[dict]:
    """The dev evaluations of a log (records with per-task `score`s), in file order."""
    return [r for r in _log_lines(log) if isinstance(r.get("score"), dict)]


def _moving_average(xs: tuple, ys: tuple) -> tuple[tuple, np.ndarray]:
    """A moving average over about 1/25 of the points, with the x of each window's last point."""
    window = max(1, len(ys) // 25)
    return xs[window - 1 :], np.convolve(ys, np.ones(window) / window, mode="valid")


CURVE_POINTS = 120  # a curve kept in results.json: at most this many of the log's records, evenly spaced
CURVE_KEYS = ("loss", "examples_seen", "adv_loss", "grad_norm")  # the per-task columns of a kept curve


def training_curve(log: Path) -> dict:
    """A student log's training records as columns (`step`, `lr`, `lambda`, and per task `loss`, `examples_seen`
    and, from an adversarial student, `adv_loss`; null where a record lacks the task), thinned to CURVE_POINTS
    records with the last one kept: what `plot_training_curves` needs, small enough for results.json, where it
    outlives the run folder."""
    records = _training_records(log)
    if len(records) > CURVE_POINTS:
        records = [records[round(i * (len(records) - 1) / (CURVE_POINTS - 1))] for i in range(CURVE_POINTS)]
    tasks = list(dict.fromkeys(t for r in records for t in r["loss"]))
    columns: dict = {key: [r.get(key) for r in records] for key in ("step", "lr", "lambda")}
    for key in CURVE_KEYS:
        if key in ("loss", "examples_seen") or any(key in r for r in records):
            columns[key] = {t: [r.get(key, {}).get(t) for r in records] for t in tasks}
    return columns


def _records(columns: dict) -> list[dict]:
    """`training_curve`'s columns back as log records."""
    records = []
    for i, step in enumerate(columns["step"]):
        record = {key: columns[key][i] for key in ("step", "lr", "lambda")}
        for key in (k for k in CURVE_KEYS if k in columns):
            values = {t: v[i] for t, v in columns[key].items() if v[i] is not None}
            if values or key == "loss":
                record[key] = values
        records.append(record)
    return records


def _training_records(log: Path) -> list[dict]:
    """The step records of a student log: those with a per-task loss, in file order."""
    return [r for r in _log_lines(log) if isinstance(r.get("loss"), dict)]


def _log_lines(log: Path) -> list[dict]:
    records = []
    for line in Path(log).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a log still being written, or cut by a crash
            continue
    return records


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
