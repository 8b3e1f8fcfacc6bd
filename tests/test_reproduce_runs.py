"""reproduce-glue on the smoke config, Single and BAM on two seeds (`repro`, run once per test session): shared
teachers, the table built from the runs' own metrics, resuming and the dry run's estimates, results.json alone,
submission files, migrating an older results.json. Tuning on dev: test_reproduce_tuning.py."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, SMOKE
from reproduce_helpers import SPECS, TASKS

from pipeline.cli import main
from pipeline.core.accel import make_accelerator
from pipeline.core.config import load_config
from pipeline.core.submission import write_submission
from pipeline.core.tasks import get_glue_task
from pipeline.experiments.choices import variant_config


def test_runs_and_shared_teachers(repro: Path) -> None:
    results = json.loads((repro / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in results["runs"]) == [
        ("bam", 1), ("bam", 2), ("single", 1), ("single", 2)
    ]  # fmt: skip
    for seed in (1, 2):
        base, bam = repro / "runs" / f"seed-{seed}" / "teachers", repro / "runs" / f"seed-{seed}" / "bam"
        # the variant's teachers are the seed's teachers (hard links), not retrained
        for task in TASKS:
            weights = f"teachers/{task}/model/model.safetensors"
            assert os.path.samefile(base / weights, bam / weights)
        config = json.loads((base / "manifests" / "teachers.json").read_text())["config"]
        assert config["teachers"]["seed"] == seed
    # different seeds train different teachers
    w1 = (repro / "runs/seed-1/teachers/teachers/sst2/model/model.safetensors").read_bytes()
    w2 = (repro / "runs/seed-2/teachers/teachers/sst2/model/model.safetensors").read_bytes()
    assert w1 != w2
    import torch

    for run in results["runs"]:
        assert {"variant", "seed", "average", "tasks", "wall_s", "config"} <= set(run)
        assert run["config"]["student"]["seed"] == run["seed"]
        # where its wall time was spent: the student's training, or each task's teacher's
        parts = list(run["compute"].values()) if run["variant"] == "single" else [run["compute"]]
        assert len(parts) == (len(TASKS) if run["variant"] == "single" else 1)
        for part in parts:
            assert part == {"device": "cpu", "processes": 1, "threads": torch.get_num_threads(), "precision": "no",
                            "resumed_from_step": 0}  # fmt: skip


def test_medians_come_from_each_runs_own_metrics(repro: Path) -> None:
    results = json.loads((repro / "results.json").read_text())
    summary = results["summary"]
    for task in TASKS:
        spec = get_glue_task(task)
        own = {"single": [], "bam": []}
        for seed in (1, 2):  # read the run folders directly, not results.json's copies
            base = repro / "runs" / f"seed-{seed}"
            teacher = json.loads((base / "teachers/teachers" / task / "metrics.json").read_text())
            own["single"].append(teacher["dev"]["dev"][spec.main_metric])
            student = json.loads((base / "bam/metrics.json").read_text())["tasks"][task]["student"]["dev"]
            own["bam"].append(student[spec.main_metric])
        for variant, values in own.items():
            assert summary[variant]["median"][task] == pytest.approx(statistics.median(values))
            assert summary[variant]["min"][task] == pytest.approx(min(values))
        gain = statistics.median(own["bam"]) - statistics.median(own["single"])
        assert summary["bam"]["vs_single"]["gain"][task] == pytest.approx(gain)
    averages = [np.mean([r["tasks"][t]["score"] for t in TASKS]) for r in results["runs"] if r["variant"] == "bam"]
    assert summary["bam"]["median"]["average"] == pytest.approx(statistics.median(averages))


def test_table_layout(repro: Path) -> None:
    table = (repro / "table.md").read_text()
    summary = json.loads((repro / "results.json").read_text())["summary"]
    assert "## Table 1: Single, Multi, Single→Multi" in table
    header = next(line for line in table.splitlines() if line.startswith("| Model | Avg"))
    assert header.split(" | ")[2:6] == ["SST-2", "MRPC", "STS-B", "RTE"]
    bam_row = next(line for line in table.splitlines() if line.startswith("| Single→Multi (BAM"))
    cells = [c.strip() for c in bam_row.strip("|").split("|")]
    assert len(cells) == len(header.strip("|").split("|"))
    assert cells[1].startswith(f"{summary['bam']['median']['average']:.1f} [")  # median [min–max]
    f1 = statistics.median(
        json.loads((repro / f"runs/seed-{s}/bam/metrics.json").read_text())["tasks"]["mrpc"]["student"]["dev"]["f1"]
        for s in (1, 2)
    )
    assert cells[3].startswith(f"{f1:.1f}/{summary['bam']['median']['mrpc']:.1f}")  # MRPC: F1/accuracy
    assert cells[-3] == f"{summary['bam']['vs_single']['gain']['average']:+.1f}"  # Δ Single
    assert cells[-1] == "2"  # seeds
    assert "## Paired tests per task" in table
    for name in ("scores.png", "training.png"):
        png = (repro / "plots" / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    # the plotted seed's student runs keep their training curves, so the plots outlive the run folders; the other
    # seeds' are never drawn and are not kept
    from pipeline.core.plots import training_curve
    from pipeline.experiments.plots import write_plots

    results = json.loads((repro / "results.json").read_text())
    bam = next(r for r in results["runs"] if r["variant"] == "bam" and r["seed"] == 1)
    assert bam["curve"] == training_curve(repro / "runs" / "seed-1" / "bam" / "student" / "log.jsonl")
    seed_2 = [r for r in results["runs"] if r["seed"] == 2]
    assert seed_2 and (repro / "runs" / "seed-2" / "bam" / "student" / "log.jsonl").is_file()
    assert not any("curve" in r for r in seed_2)
    bare = repro.parent / "bare-plots"
    for run in results["runs"]:
        run["run_dir"] = str(bare / "gone")
    write_plots(results, bare)
    png = (bare / "plots" / "training.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_second_call_runs_nothing_and_dry_run_says_done(repro: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"  # a copy: the session's other tests read `repro` as it was made
    shutil.copytree(repro, out, symlinks=True)
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")}
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert main([*argv, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "0 of 4 steps to run" in printed and "to run:" not in printed
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")} == before
    # a third seed is planned with a measured time estimate, and nothing runs in a dry run
    assert main([*argv[:-4], "--seeds", "3", "--variants", "single,bam", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "2 of 6 steps to run" in printed and "(measured at " in printed
    assert not (out / "runs" / "seed-3").exists()


def test_dry_run_scales_the_measured_time_by_each_options_cost(repro: Path) -> None:
    from pipeline.core.config import to_dict
    from pipeline.experiments.plan import cost_factor, plan

    cfg = load_config(SMOKE)
    factors = {v: cost_factor(to_dict(variant_config(cfg, v, repro).student)) for v in ("bam", "fgm", "pgd", "pcgrad")}
    assert factors == {"bam": 1.0, "fgm": 2.0, "pgd": 4.0, "pcgrad": 2.5}  # PGD: K = 3 extra passes + the clean one
    assert cost_factor(to_dict(load_config(SMOKE, ["--student.adversarial=pgd", "--student.adv_steps=5"]).student)) == 6
    steps = {s["variant"]: s for s in plan(cfg, repro, [1, 2], ["single", "bam", "fgm", "pgd"])}
    bam_walls = [json.loads((repro / f"runs/seed-{s}/bam/student/summary.json").read_text())["wall_s"] for s in (1, 2)]
    assert steps["pgd"]["seconds"] == pytest.approx(4 * statistics.median(bam_walls))
    assert steps["fgm"]["seconds"] == pytest.approx(2 * statistics.median(bam_walls))
    assert "× 4 for its option" in steps["pgd"]["how"]


def test_dry_run_estimates_from_runs_at_this_calls_torch_threads(repro: Path, tmp_path: Path) -> None:
    """Wall time depends on torch's threads: the estimate takes the runs made at this call's threads when there are
    any, else all of them, and says which."""
    import torch

    from pipeline.experiments.plan import plan

    now = torch.get_num_threads()
    results = json.loads((repro / "results.json").read_text())
    out = tmp_path / "threads"
    out.mkdir()

    def estimate(threads: dict[int, int]) -> dict[str, Any]:
        for run in results["runs"]:
            if run["variant"] == "bam":
                run["wall_s"], run["compute"]["threads"] = 100.0 * run["seed"], threads[run["seed"]]
        (out / "results.json").write_text(json.dumps(results))
        steps = plan(load_config(SMOKE), out, [1, 2, 3], ["single", "bam"])
        return next(s for s in steps if s["seed"] == 3 and s["variant"] == "bam")

    mixed = estimate({1: now + 1, 2: now})
    assert mixed["seconds"] == pytest.approx(200.0) and f"measured at {now} torch thread" in mixed["how"]
    other = estimate({1: now + 1, 2: now + 2})
    assert other["seconds"] == pytest.approx(150.0) and f"other torch threads than this call's {now} " in other["how"]


def test_results_json_alone_keeps_finished_runs(repro: Path, tmp_path: Path, capsys) -> None:
    """A results.json without the run folders (e.g. committed, on a fresh machine) counts its runs as done."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "results.json").write_bytes((repro / "results.json").read_bytes())
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert main([*argv, "--dry-run"]) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out
    assert main(argv) == 0
    assert not (out / "runs").exists()
    before, after = (json.loads((d / "results.json").read_text()) for d in (repro, out))
    assert after["runs"] == before["runs"] and after["summary"] == before["summary"]
    # a run recorded under another config does not count: with another student lr the bam runs (and the teachers
    # they need, whose folders are gone) are planned again, while Single's records still hold
    assert main([*argv, "--dry-run", "--student.lr=0.001"]) == 0
    printed = capsys.readouterr().out
    assert "4 of 4 steps to run" in printed and printed.count("bam           to run") == 2


def test_a_narrower_call_keeps_the_other_recorded_runs(repro: Path, tmp_path: Path) -> None:
    """Calling for fewer variants or seeds (e.g. the options alone, into the same OUT) must not drop the runs
    results.json holds for the others."""
    out = tmp_path / "narrow"
    out.mkdir()
    (out / "results.json").write_bytes((repro / "results.json").read_bytes())
    assert main(["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "1", "--variants", "bam"]) == 0
    before, after = (json.loads((d / "results.json").read_text()) for d in (repro, out))
    assert sorted((r["variant"], r["seed"]) for r in after["runs"]) == [
        ("bam", 1), ("bam", 2), ("single", 1), ("single", 2)
    ]  # fmt: skip
    assert after["summary"] == before["summary"]
    assert set(after["variants"]) == {"single", "bam"}
    assert "Single (teachers)" in (out / "table.md").read_text()
    # under another student config the recorded BAM runs are not this config's: dropped, not mixed in; Single's stay
    from pipeline.experiments.run import write_results

    other = write_results(load_config(SMOKE, ["--student.lr=0.001"]), out, [1], ["single"], "cmd")
    assert sorted((r["variant"], r["seed"]) for r in other["runs"]) == [("single", 1), ("single", 2)]


def test_submission_files(repro: Path, tmp_path: Path) -> None:
    glue = tmp_path / "glue"
    (glue / "SST-2").mkdir(parents=True)
    (glue / "SST-2" / "test.tsv").write_text("index\tsentence\n0\tgood great film\n1\tbad dull story\n")
    (glue / "STS-B").mkdir()
    (glue / "STS-B" / "test.tsv").write_text(
        "index\tgenre\tsentence1\tsentence2\n0\tnews\tthe dog runs\tthe dog runs\n1\tnews\ta cat\tthe river\n"
    )
    results = json.loads((repro / "results.json").read_text())
    assert not any(Path(r["run_dir"]).is_absolute() for r in results["runs"])  # run folders relative to OUT
    model = repro / next(r for r in results["runs"] if r["variant"] == "bam")["run_dir"] / "student" / "model"
    models = {task: model for task in TASKS}
    written = write_submission(models, SPECS, glue, tmp_path / "submission", make_accelerator(), max_length=32)
    assert written == ["SST-2.tsv", "STS-B.tsv"]
    sst = (tmp_path / "submission" / "SST-2.tsv").read_text().splitlines()
    assert sst[0] == "index\tprediction" and [line.split("\t")[0] for line in sst[1:]] == ["0", "1"]
    assert all(line.split("\t")[1] in ("0", "1") for line in sst[1:])
    for line in (tmp_path / "submission" / "STS-B.tsv").read_text().splitlines()[1:]:
        assert 0.0 <= float(line.split("\t")[1]) <= 5.0


def test_migrating_a_results_json_rewrites_its_keys_only(repro: Path, tmp_path: Path, capsys) -> None:
    """scripts/migrate_results.py gives every run, tuning run and tuning record the key today's code computes from
    its stored config, and changes nothing else; the runs are then found done."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from migrate_results import migrate
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    today = json.loads((repro / "results.json").read_text())
    older = json.loads(json.dumps(today))
    for run in older["runs"]:
        run["key"] = "a key of an earlier format"
    del older["task_specs"]
    assert migrate(older, None) == len(today["runs"])
    assert json.loads(json.dumps(older)) == today
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(older))
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert main([*argv, "--dry-run"]) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out
