"""reproduce-glue's tuning on dev (`--tune`), on the smoke config's Single and BAM on two seeds (`repro`): each
variant's best student setting and each task's best teacher, every seed run with the choice, and the choice kept in
results.json (an OUT rebuilt from it, a wider grid, a call killed before it wrote)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import SMOKE
from reproduce_helpers import TASKS

from pipeline.cli import main
from pipeline.core.metrics import main_score
from pipeline.core.tasks import get_glue_task

ARGV = ["reproduce-glue", "--config", str(SMOKE), "--out", "OUT", "--seeds", "2", "--variants", "single,bam"]
STUDENT_GRID = ["--tune", "student.lr=0.002,0.004"]  # 0.002 is smoke.yaml's own student lr: OUT's run is that setting's
WEIGHTS = "student/model/model.safetensors"


def args(out: Path, *more: str) -> list[str]:
    return [*ARGV[:4], str(out), *ARGV[5:], *more]


def manifests(out: Path) -> dict[Path, int]:
    """Every run's stage manifests with their modification times: unchanged when a call trains nothing."""
    return {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")}


@pytest.fixture(scope="module")
def tuned(repro: Path, tmp_path_factory) -> tuple[Path, int, str]:
    """A copy of `repro` tuned over the student lr, the inode of seed 1's BAM weights before tuning, and what a dry
    run printed before it."""
    out = tmp_path_factory.mktemp("tuned") / "out"
    shutil.copytree(repro, out, symlinks=True)
    untuned = (out / "runs" / "seed-1" / "bam" / WEIGHTS).stat().st_ino
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(args(out, *STUDENT_GRID, "--dry-run")) == 0
    assert main(args(out, *STUDENT_GRID)) == 0
    return out, untuned, printed.getvalue()


def copy_of(tuned: tuple[Path, int, str], tmp_path: Path) -> Path:
    out = tmp_path / "tuned"
    shutil.copytree(tuned[0], out, symlinks=True)
    return out


def test_tuning_picks_each_variants_best_dev_setting_and_runs_every_seed_with_it(tuned) -> None:
    out, untuned, printed = tuned
    seed1 = out / "runs" / "seed-1"
    assert "tune bam lr=0.002 done" in printed and "tune bam lr=0.004 to run" in printed  # the dry run before
    record = json.loads((out / "tuning" / "bam.json").read_text())
    assert record["grid"] == {"lr": [0.002, 0.004]}
    folders = {lr: seed1 / "tune" / "bam" / f"lr={lr}" for lr in (0.002, 0.004)}
    averages = {}
    for lr, folder in folders.items():  # each setting's dev average, from its own run folder
        metrics = json.loads((folder / "metrics.json").read_text())["tasks"]
        averages[lr] = statistics.mean(main_score(get_glue_task(t), metrics[t]["student"]["dev"]) for t in TASKS)
        assert json.loads((folder / "manifests" / "student.json").read_text())["config"]["student"]["lr"] == lr
    best = max(averages, key=averages.get)
    assert record["chosen"] == {"lr": best}
    assert [r["average"] for r in record["runs"]] == pytest.approx([averages[0.002], averages[0.004]])
    # the setting equal to the config's is the run the OUT already had (hard-linked, not trained again)
    assert (folders[0.002] / WEIGHTS).stat().st_ino == untuned
    # seed 1's run is the chosen tuning run itself; every seed runs with the chosen setting
    assert os.path.samefile(seed1 / "bam" / WEIGHTS, folders[best] / WEIGHTS)
    results = json.loads((out / "results.json").read_text())
    assert {r["seed"]: r["config"]["student"]["lr"] for r in results["runs"] if r["variant"] == "bam"} == {
        1: best, 2: best
    }  # fmt: skip
    assert results["tuning"]["bam"]["chosen"] == {"lr": best}
    assert "single" not in results["tuning"]  # the teachers keep the config's settings
    table = (out / "table.md").read_text()
    assert "## Tuned on dev" in table and f"**lr={best}: {averages[best]:.1f}**" in table


def test_a_tuning_choice_holds_without_tune_after_a_lost_record_and_from_results_json_alone(
    tuned, tmp_path: Path, capsys
) -> None:
    out = copy_of(tuned, tmp_path)
    best = json.loads((out / "tuning" / "bam.json").read_text())["chosen"]["lr"]
    before = manifests(out)
    assert main(args(out)) == 0  # without --tune: nothing to run
    assert manifests(out) == before
    # tuning runs finished in their folders but not in results.json (a call killed before it wrote them) are
    # recorded by the next call, which trains nothing
    kept = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text(json.dumps({k: v for k, v in kept.items() if k not in ("tuning", "tuning_runs")}))
    (out / "tuning" / "bam.json").unlink()
    assert main(args(out, *STUDENT_GRID)) == 0
    assert manifests(out) == before
    again = json.loads((out / "results.json").read_text())
    assert sorted(r["key"] for r in again["tuning_runs"]) == sorted(r["key"] for r in kept["tuning_runs"])
    assert again["tuning"]["bam"]["chosen"] == {"lr": best}
    # teachers still to be tuned: the student's record may not hold for the teachers they choose, so its runs show
    capsys.readouterr()
    assert main(args(out, *STUDENT_GRID, "--tune", "teachers.lr=0.002,0.001", "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.001 to run" in printed and "tune bam lr=0.004 to run" in printed
    bare = tmp_path / "bare"  # an OUT with results.json alone
    bare.mkdir()
    (bare / "results.json").write_bytes((out / "results.json").read_bytes())
    assert main(args(bare, "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert f"tuned on seed 1 dev (OUT/tuning/): bam lr={best}" in printed and "0 of 4 steps to run" in printed
    assert not (bare / "tuning").exists()  # a dry run writes nothing
    assert main(args(bare)) == 0
    assert json.loads((bare / "results.json").read_text())["tuning"]["bam"]["chosen"] == {"lr": best}  # still held
    assert not (bare / "runs").exists()  # every run known from results.json: nothing to train


def test_a_wider_student_grid_elsewhere_runs_only_the_new_setting(tuned, tmp_path: Path, capsys) -> None:
    """Each tuning run survives its folder: the first seed's tuned run is known from its tuning run alone."""
    wider = tmp_path / "wider"
    wider.mkdir()
    kept = json.loads((tuned[0] / "results.json").read_text())
    assert {(r["variant"], r["setting"]["lr"]) for r in kept["tuning_runs"]} == {("bam", 0.002), ("bam", 0.004)}
    kept["runs"] = [r for r in kept["runs"] if (r["variant"], r["seed"]) != ("bam", 1)]
    (wider / "results.json").write_text(json.dumps(kept))
    capsys.readouterr()
    assert main(args(wider, "--tune", "student.lr=0.002,0.004,0.008", "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "tune bam lr=0.002 done" in printed and "tune bam lr=0.004 done" in printed
    assert "tune bam lr=0.008 to run" in printed
    assert main(args(wider, "--dry-run")) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out


def test_tuning_the_teachers_picks_each_tasks_best_teacher_for_every_seed(repro: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tuned"
    shutil.copytree(repro, out, symlinks=True)
    seed1 = out / "runs" / "seed-1"
    weights = "model/model.safetensors"
    untuned = {t: (seed1 / "teachers" / "teachers" / t / weights).stat().st_ino for t in TASKS}
    tune = ["--tune", "teachers.lr=0.002,0.001"]  # 0.002: smoke.yaml's own teachers.lr, the teachers OUT has
    assert main(args(out, *tune, "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.002 done" in printed and "tune teachers lr=0.001 to run" in printed
    assert "once the teachers are tuned" in printed and "0 of" not in printed
    assert main(args(out, *tune)) == 0

    record = json.loads((out / "tuning" / "teachers.json").read_text())
    assert record["grid"] == {"lr": [0.002, 0.001]}
    folders = {lr: seed1 / "tune" / "teachers" / f"lr={lr}" / "teachers" for lr in (0.002, 0.001)}
    scores = {}  # each setting's teacher dev score per task, from its own metrics.json
    for lr, folder in folders.items():
        for task in TASKS:
            dev = json.loads((folder / task / "metrics.json").read_text())["dev"]
            scores[lr, task] = main_score(get_glue_task(task), dev[get_glue_task(task).dev_splits[0]])
    # the config's setting is the teachers OUT already had (hard-linked, not trained again)
    assert {t: (folders[0.002] / t / weights).stat().st_ino for t in TASKS} == untuned
    results = json.loads((out / "results.json").read_text())
    for task in TASKS:
        best = max((0.002, 0.001), key=lambda lr: scores[lr, task])  # max keeps the first of equals
        assert record["chosen"][task] == {"lr": best}, task
        # seed 1's teacher is that tuning run's; every seed's teacher of the task trains at that rate
        assert os.path.samefile(seed1 / "teachers" / "teachers" / task / weights, folders[best] / task / weights)
        assert (seed1 / "bam" / "teachers" / task / weights).read_bytes() == (
            folders[best] / task / weights
        ).read_bytes()
        for run in results["runs"]:
            assert run["config"]["teachers"]["per_task"][task]["lr"] == best
        single = next(r for r in results["runs"] if r["variant"] == "single" and r["seed"] == 1)
        assert single["tasks"][task]["score"] == pytest.approx(scores[best, task])
    assert {0.002, 0.001} == {c["lr"] for c in record["chosen"].values()}  # this grid changes some teachers, not all
    seed2 = out / "runs" / "seed-2"
    for task in TASKS:  # seed 2's student learns from seed 2's tuned teachers, not seed 1's
        own = (seed2 / "teachers" / "teachers" / task / weights).read_bytes()
        assert (seed2 / "bam" / "teachers" / task / weights).read_bytes() == own
        assert own != (seed1 / "teachers" / "teachers" / task / weights).read_bytes()
    log = (seed2 / "teachers" / "teachers" / "rte" / "log.jsonl").read_text().splitlines()
    peak = max(r["lr"] for r in map(json.loads, log) if "lr" in r)
    assert record["chosen"]["rte"]["lr"] / 2 < peak <= record["chosen"]["rte"]["lr"]
    assert results["tuning"]["teachers"]["chosen"] == record["chosen"]
    assert "## Teachers tuned on dev" in (out / "table.md").read_text()

    # the choice holds without --tune: nothing runs again
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")}
    assert main(args(out)) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")} == before
    printed = capsys.readouterr().out
    assert "tuned on seed 1 dev (OUT/tuning/): teachers " in printed
    # each setting's teachers are recorded in results.json: a wider grid on another machine trains only the new one
    wider = tmp_path / "wider"
    wider.mkdir()
    (wider / "results.json").write_bytes((out / "results.json").read_bytes())
    assert main(args(wider, "--tune", "teachers.lr=0.002,0.001,0.0005", "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.002 done" in printed and "tune teachers lr=0.001 done" in printed
    assert "tune teachers lr=0.0005 to run" in printed
    # a task's own value of a tuned key gives way to the choice, and the call says so
    assert main(args(out, "--teachers.per_task.rte.lr=0.0005", "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "teachers.per_task.rte.lr (0.0005) is not used: the teachers are tuned over lr [0.002, 0.001]" in printed
    assert "0 of" in printed  # the choice still holds: nothing to run
