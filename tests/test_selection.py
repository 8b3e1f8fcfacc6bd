"""Dev evaluation during training (`eval_every`) and the choice of the weights kept (`select`): both loops, the
checkpoint round trip, the digests at the defaults, the dev curve in the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_smoke

from pipeline.core.accel import make_accelerator
from pipeline.core.checkpoint import resume, save_checkpoint
from pipeline.core.config import load_config
from pipeline.core.plots import plot_training_curves
from pipeline.core.selection import DevSelection
from stages import STAGES


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _expected_choice(dev_records: list[dict], total_steps: int) -> int:
    """The rule: the first evaluation with the highest mean score before the end; the last weights when they
    score at least as well."""
    means = {r["step"]: np.mean(list(r["score"].values())) for r in dev_records}
    inner = {s: m for s, m in means.items() if s < total_steps}
    best = max(inner, key=lambda s: (inner[s], -s))
    return total_steps if means[total_steps] >= inner[best] else best


class Scripted:
    """A stand-in loop: a one-weight model set to the step number, and dev scores read from a script."""

    def __init__(self, scores: dict[int, float]) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.scores, self.logged = scores, []

    def step_to(self, step: int) -> None:
        with torch.no_grad():
            self.model.weight.fill_(float(step))

    def selection(self, select: str, every: int = 2) -> DevSelection:
        current = lambda model: {"dev": {"step": int(model.weight.item())}}  # noqa: E731
        score = lambda dev: {"task": self.scores[dev["dev"]["step"]]}  # noqa: E731
        return DevSelection(every, select, make_accelerator(), current, score, self.logged.append)


@pytest.mark.parametrize(
    ("scores", "select", "kept"),
    [
        ({2: 50.0, 4: 70.0, 6: 60.0, 8: 65.0}, "best", 4),  # the best evaluation before the end
        ({2: 50.0, 4: 70.0, 6: 70.0, 8: 65.0}, "best", 4),  # a tie before the end: the earlier one
        ({2: 50.0, 4: 70.0, 6: 60.0, 8: 70.0}, "best", 8),  # a tie with the last: the last
        ({2: 50.0, 4: 70.0, 6: 60.0, 8: 65.0}, "last", 8),
    ],
)
def test_the_weights_kept_are_those_of_the_chosen_step(scores: dict[int, float], select: str, kept: int) -> None:
    loop = Scripted(scores)
    selection = loop.selection(select)
    for step in range(1, 9):
        loop.step_to(step)
        selection.after_step(loop.model, step, total_steps=8)
    dev, step = selection.finish(loop.model, 8, {"dev": {"step": 8}})
    assert step == kept and loop.model.weight.item() == kept and dev == {"dev": {"step": kept}}
    # every evaluation is logged (every 2 steps, the last one by finish), with its per-task scores
    assert [(r["step"], r["score"]["task"]) for r in loop.logged] == [(s, scores[s]) for s in (2, 4, 6, 8)]


def test_a_resumed_run_makes_the_choice_an_uninterrupted_one_makes(tmp_path: Path) -> None:
    """The best weights so far and their record travel in the checkpoint: resumed after step 6 (best: step 4),
    the run still keeps step 4's weights, which it no longer has in memory."""
    scores = {2: 50.0, 4: 70.0, 6: 60.0, 8: 65.0}
    acc = make_accelerator()
    first = Scripted(scores)
    selection = first.selection("best")
    optimizer = torch.optim.SGD(first.model.parameters(), lr=0.1)
    for step in range(1, 7):
        first.step_to(step)
        selection.after_step(first.model, step, total_steps=8)
    state = {"digest": "d", **selection.checkpoint_state()}
    save_checkpoint(tmp_path / "checkpoints", 6, first.model, optimizer, acc, state, 2, selection.checkpoint_tensors())

    again = Scripted(scores)
    optimizer = torch.optim.SGD(again.model.parameters(), lr=0.1)
    step, _, found = resume(tmp_path, "d", again.model, optimizer, acc, "[test]", 8)
    assert step == 6 and again.model.weight.item() == 6.0
    resumed = again.selection("best")
    resumed.restore(found)
    for step in (7, 8):
        again.step_to(step)
        resumed.after_step(again.model, step, total_steps=8)
    assert resumed.finish(again.model, 8, {"dev": {"step": 8}})[1] == 4
    assert again.model.weight.item() == 4.0


def test_evaluating_during_training_changes_no_digest_unless_it_chooses() -> None:
    """At select: last, eval_every only logs: the stages' digests (and every committed run key) stay as they were;
    select: best changes which weights a stage keeps, so it makes the stage another one."""
    base = load_config(SMOKE)
    for section in ("teachers", "student"):
        subset = STAGES[section].config_subset
        logging = load_config(SMOKE, [f"--{section}.eval_every=5"])
        choosing = load_config(SMOKE, [f"--{section}.eval_every=5", f"--{section}.select=best"])
        assert subset(logging) == subset(base)
        assert subset(choosing) != subset(base)


@pytest.fixture(scope="module")
def chosen(smoke_run: Path, tmp_path_factory) -> Path:
    """The smoke run's teachers and student again, each evaluated every 10 steps and keeping its best weights."""
    import shutil

    out = tmp_path_factory.mktemp("chosen") / "run"
    shutil.copytree(smoke_run, out)
    overrides = ["--teachers.eval_every=10", "--teachers.select=best", "--student.eval_every=10",
                 "--student.select=best"]  # fmt: skip
    assert run_smoke(out, *overrides) == ["teachers", "distill", "student", "evaluate", "report"]
    return out


def test_the_student_keeps_its_best_evaluated_weights(chosen: Path) -> None:
    summary = json.loads((chosen / "student" / "summary.json").read_text())
    total = summary["total_steps"]
    dev = [r for r in _log(chosen / "student" / "log.jsonl") if "score" in r]
    assert [r["step"] for r in dev] == [*range(10, total, 10), total]
    assert summary["selected_step"] == _expected_choice(dev, total)
    # the saved model is the chosen step's: the evaluate stage, which reloads it, measures that step's scores
    at_choice = next(r for r in dev if r["step"] == summary["selected_step"])
    measured = json.loads((chosen / "metrics.json").read_text())["tasks"]
    for task, score in at_choice["score"].items():
        assert measured[task]["student_score"] == pytest.approx(score, abs=1e-6), task
    assert summary["dev"] == at_choice["dev"]
    assert "Weights chosen on dev" in (chosen / "report.md").read_text()
    assert not (chosen / "student" / "checkpoints").exists()


def test_each_teacher_keeps_its_best_evaluated_weights(chosen: Path) -> None:
    for folder in sorted((chosen / "teachers").iterdir()):
        metrics = json.loads((folder / "metrics.json").read_text())
        dev = [r for r in _log(folder / "log.jsonl") if "score" in r]
        assert [r["step"] for r in dev] == [*range(10, metrics["steps"], 10), metrics["steps"]]
        assert metrics["selected_step"] == _expected_choice(dev, metrics["steps"]), folder.name
        at_choice = next(r for r in dev if r["step"] == metrics["selected_step"])
        assert metrics["score"] == at_choice["score"][folder.name]


def test_the_training_plot_draws_the_dev_curve(chosen: Path, smoke_run: Path, tmp_path: Path, monkeypatch) -> None:
    """A log with dev evaluations gets a panel of each task's score at each evaluation; one without, none."""
    import pipeline.core.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plot_training_curves({"run": chosen / "student" / "log.jsonl"}, tmp_path / "a.png")
    plot_training_curves({"run": smoke_run / "student" / "log.jsonl"}, tmp_path / "b.png")
    titles = [[ax.get_title() for ax in fig.axes if ax.get_visible()] for fig in figures]
    assert "dev score (main metric)" in titles[0] and "dev score (main metric)" not in titles[1]
    assert "Weights chosen on dev" not in (smoke_run / "report.md").read_text()  # the default keeps the last
    panel = next(ax for ax in figures[0].axes if ax.get_title() == "dev score (main metric)")
    dev = [r for r in _log(chosen / "student" / "log.jsonl") if "score" in r]
    for line in panel.get_lines():
        if line.get_label() in dev[0]["score"]:
            assert list(line.get_ydata()) == [r["score"][line.get_label()] for r in dev]
    assert {line.get_label() for line in panel.get_lines()} == {*dev[0]["score"], "mean"}


def test_evaluation_time_is_counted_apart_from_training(monkeypatch) -> None:
    """The loops' ex/s leave out dev evaluations: `seconds` holds their time, and only theirs."""
    loop = Scripted({2: 50.0, 4: 70.0, 6: 60.0, 8: 65.0})
    clock = iter(range(0, 1000, 5))  # each perf_counter call 5 s after the last
    monkeypatch.setattr("pipeline.core.selection.time.perf_counter", lambda: next(clock))
    sel = loop.selection("last", every=2)
    for step in range(1, 9):
        loop.step_to(step)
        sel.after_step(loop.model, step, 8)
    assert sel.seconds == 3 * 5  # evaluations at steps 2, 4 and 6 (8 is the end's, made by `finish`)
    never = loop.selection("last", every=0)
    never.after_step(loop.model, 2, 8)
    assert never.seconds == 0
