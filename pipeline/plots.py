"""PNG plots of runs: dev scores per task, and the student's training curves (matplotlib, Agg, no display).

Both functions write atomically (a temporary file in the same folder, then `os.replace`) and return the path, so a
plot being rewritten while someone looks at it is never half a file.
"""

from __future__ import annotations

import json
from itertools import cycle
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.store import atomic_path

LINE_STYLES = ("-", "--", ":", "-.")


def plot_scores(scores: dict[str, dict[str, float]], path: Path, title: str, ylabel: str = "dev score") -> Path:
    """Grouped bar chart: one group of bars per task, one colour per entry of `scores` (e.g. teacher / student).

    Args:
        scores: name → {task: score}; tasks are shown in first-seen order, "avg" last, set apart by a line.
            A task missing from one entry leaves a gap in its group.
        path: where the PNG goes.
        title: figure title.
        ylabel: label of the score axis.
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
    values = [v for row in scores.values() for v in row.values()]
    for i, (name, row) in enumerate(scores.items()):
        xs = [k + (i - (groups - 1) / 2) * width for k, task in enumerate(tasks) if task in row]
        bars = ax.bar(xs, [row[task] for task in tasks if task in row], width, label=name)
        # Upright labels fit above bars up to three per task; more bars need them turned to stay readable.
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8, rotation=90 if groups > 3 else 0)
    ax.set_xticks(range(len(tasks)), tasks)
    if tasks[-1] == "avg" and len(tasks) > 1:
        ax.axvline(len(tasks) - 1.5, color="grey", linestyle=":", linewidth=1)
    low, high = min(0.0, min(values)), max(values)
    # Head room for the value labels (turned ones need more) and for the legend above the bars.
    ax.set_ylim(low - (5 if low < 0 else 0), high + (high - low) * (0.3 if groups > 3 else 0.18))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", ncols=min(groups, 4), fontsize=9, frameon=False)
    return _save(fig, path)


def plot_training_curves(logs: dict[str, Path], path: Path) -> Path:
    """Training curves of one or more students, from their `student/log.jsonl` (label → path).

    Top: training loss per task over the training examples seen (colour = task, line style = label; students that
    take steps of different sizes, e.g. `summed`'s one batch of every task, line up), on a log scale since
    regression and classification losses differ by orders of magnitude. Bottom: learning rate (left axis) and
    λ (right axis), one line style per label. Logs without example counts are drawn over optimizer steps. Lines
    that are not training records (the final dev metrics) and lines cut short by a crash are skipped.
    """
    runs = {label: _training_records(log) for label, log in logs.items()}
    if not any(runs.values()):
        raise ValueError(f"plot_training_curves: no training records in {', '.join(map(str, logs.values()))}")
    by_examples = all("examples_seen" in r for records in runs.values() for r in records)

    def x(r: dict) -> float:
        return sum(r["examples_seen"].values()) / 1000 if by_examples else r["step"]

    tasks = list(dict.fromkeys(task for records in runs.values() for r in records for task in r["loss"]))
    colours = dict(zip(tasks, cycle(f"C{i}" for i in range(10))))
    styles = dict(zip(runs, cycle(LINE_STYLES)))
    fig = Figure(figsize=(9.0, 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, lr_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    lam_ax = lr_ax.twinx()
    positive = True
    for label, records in runs.items():
        for task in tasks:
            points = [(x(r), r["loss"][task]) for r in records if task in r["loss"]]
            if not points:
                continue
            steps, losses = zip(*points)
            positive &= all(y > 0 for y in losses)
            loss_ax.plot(steps, losses, color=colours[task], linestyle=styles[label], linewidth=0.8, alpha=0.3)
            window = max(1, len(losses) // 25)
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            loss_ax.plot(steps[window - 1 :], smooth, color=colours[task], linestyle=styles[label], linewidth=1.5)
        steps = [x(r) for r in records]
        lr_ax.plot(steps, [r["lr"] for r in records], color="C0", linestyle=styles[label], linewidth=1.2)
        lam_ax.plot(steps, [r["lambda"] for r in records], color="C3", linestyle=styles[label], linewidth=1.2)
    if positive:
        loss_ax.set_yscale("log")
    loss_ax.set_ylabel("training loss per task")
    fig.suptitle("Student training (faint: logged loss; solid: moving average)")
    loss_ax.grid(alpha=0.3)
    # Legends sit above the plot: the loss lines fill the whole area.
    handles = [Line2D([], [], color=colours[t], label=t) for t in tasks]
    legend = dict(fontsize=8, frameon=False, bbox_to_anchor=(0, 1, 1, 0.1))
    task_legend = loss_ax.legend(handles=handles, loc="lower left", ncols=min(len(tasks), 5), **legend)
    if len(runs) > 1:
        loss_ax.add_artist(task_legend)  # a second legend would replace the first otherwise
        handles = [Line2D([], [], color="black", linestyle=styles[label], label=label) for label in runs]
        loss_ax.legend(handles=handles, loc="lower right", ncols=min(len(runs), 3), **legend)
    lr_ax.set_xlabel("training examples seen (thousands)" if by_examples else "optimizer step")
    lr_ax.set_ylabel("learning rate (heads)", color="C0")
    lr_ax.tick_params(axis="y", colors="C0")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    lam_ax.set_ylabel("λ (weight of the gold label)", color="C3")
    lam_ax.tick_params(axis="y", colors="C3")
    lam_ax.set_ylim(-0.05, 1.05)
    lr_ax.set_title("Learning rate and teacher annealing λ")
    lr_ax.grid(alpha=0.3)
    return _save(fig, path)


def _training_records(log: Path) -> list[dict]:
    """The step records of a student log: those with a per-task loss, in file order."""
    records = []
    for line in Path(log).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a log still being written, or cut by a crash
            continue
        if isinstance(record.get("loss"), dict):
            records.append(record)
    return records


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
