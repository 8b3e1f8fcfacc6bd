"""reproduce-glue's variants: their names, the paired statistics, the multitask options (configs, table, plot,
shared teachers), the derived variants (Single→Single, Multi→Multi, BAM + fine-tuning) on one seed, your own tasks
beside a GLUE one, and scripts/export_run.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SMOKE
from reproduce_helpers import SPECS, TASKS
from safetensors.numpy import load_file

from pipeline.cli import build_parser, main
from pipeline.core.accel import make_accelerator
from pipeline.core.config import load_config, validate
from pipeline.core.metrics import main_score
from pipeline.core.tasks import get_glue_task
from pipeline.experiments.choices import variant_config
from pipeline.experiments.stats import holm, paired_p
from pipeline.experiments.table import render_table
from pipeline.experiments.variants import DERIVED, EVERY, OPTIONS, VARIANTS, ReproduceError, parse_variants


def test_holm_matches_a_hand_computation() -> None:
    # sorted p: 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04, raised to 0.06 to stay monotone)
    adjusted = holm({"a": 0.04, "b": 0.01, "c": 0.03, "d": None})
    assert adjusted["b"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["a"] == pytest.approx(0.06)
    assert adjusted["d"] is None
    assert holm({"a": 0.6, "b": 0.5})["a"] == 1.0  # capped at 1


def test_paired_p_is_scipys_paired_t_test() -> None:
    from scipy import stats

    a, b = [71.0, 73.5, 70.2], [70.0, 71.0, 70.1]
    assert paired_p(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert paired_p([1.0], [0.0]) is None  # one seed: no test
    assert paired_p([2.0, 3.0], [1.0, 2.0]) is None  # constant difference: t undefined


def test_parse_variants() -> None:
    assert parse_variants(None)[:3] == ["single", "multi", "bam"]
    assert parse_variants(None) == list(VARIANTS)  # the paper's variants only, not the multitask options
    assert parse_variants("bam, single") == ["single", "bam"]  # table order
    assert parse_variants("siamese,pgd,bam") == ["bam", "pgd", "siamese"]
    assert "multi-multi" not in parse_variants(None)  # the derived variants cost more runs: asked for by name
    assert parse_variants("bam-ft,single-single,multi-multi") == ["single-single", "multi-multi", "bam-ft"]
    with pytest.raises(ReproduceError, match="unknown"):
        parse_variants("bam,teacher-annealing")


def test_the_command_lines_help_names_every_variant() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in commands.choices["reproduce-glue"]._actions if a.dest == "variants")
    named = set(re.findall(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", action.help))
    assert set(EVERY) <= named, sorted(set(EVERY) - named)


def test_option_variants_are_valid_configs_that_change_only_the_student(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "glue-small.yaml")
    for name, (_, changes) in OPTIONS.items():
        option = variant_config(cfg, name, tmp_path)
        assert not validate(option), name
        assert option.student != cfg.student and dataclasses.replace(option, student=cfg.student) == cfg, name
        assert {k: getattr(option.student, k) for k in changes} == changes


def test_options_table_sets_each_option_beside_bam() -> None:
    def run(variant: str, score: float) -> dict:
        tasks = {t: {"score": score, "f1": score + 5, "accuracy": score} for t in TASKS}
        return {"variant": variant, "seed": 1, "average": score, "tasks": tasks}

    runs = [run("single", 60.0), run("bam", 70.0), run("fgm", 71.0), run("siamese", 68.5)]
    table = render_table(runs, SPECS, "python -m pipeline reproduce-glue ...", "machine")
    section = table.split("## Multitask options (one seed is enough)\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Model")]
    assert [r.split(" | ")[0][2:] for r in rows] == [VARIANTS["bam"][0], OPTIONS["fgm"][0], OPTIONS["siamese"][0]]
    assert rows[1].split(" | ")[1] == "71.0" and rows[1].split(" | ")[-3] == "+11.0"  # Δ Single
    assert "## Multitask options" not in render_table(runs[:2], SPECS, "cmd", "machine")


def test_options_get_their_own_plot(tmp_path: Path) -> None:
    from pipeline.experiments.plots import write_plots
    from pipeline.experiments.stats import summarise

    def run(variant: str, score: float) -> dict:
        tasks = {t: {"score": score, "f1": score, "accuracy": score} for t in TASKS}
        return {"variant": variant, "seed": 1, "average": score, "tasks": tasks, "run_dir": str(tmp_path / "none")}

    runs = [run("single", 60.0), run("bam", 70.0)]
    write_plots({"tasks": TASKS, "runs": runs, "summary": summarise(runs, TASKS)}, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a" / "plots").iterdir()) == ["scores.png"]
    runs += [run("fgm", 71.0), run("siamese", 68.5)]
    write_plots({"tasks": TASKS, "runs": runs, "summary": summarise(runs, TASKS)}, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b" / "plots").iterdir()) == ["options.png", "scores.png"]
    assert (tmp_path / "b" / "plots" / "scores.png").read_bytes() == (
        tmp_path / "a" / "plots" / "scores.png"
    ).read_bytes()


def test_option_variants_share_the_seeds_teachers(tmp_path: Path, capsys) -> None:
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path), "--seeds", "1", "--dry-run"]
    assert main([*argv, "--variants", "bam,pcgrad,siamese,unfreeze"]) == 0
    printed = capsys.readouterr().out
    assert [line.split()[2] for line in printed.splitlines() if line.startswith("  seed 1")] == [
        "teachers", "bam", "pcgrad", "siamese", "unfreeze"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def derived(tmp_path_factory) -> Path:
    """Single→Single, Multi→Multi and BAM + fine-tuning on one seed; Multi and BAM run first as their parents."""
    out = tmp_path_factory.mktemp("derived") / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "1"]
    assert main([*argv, "--variants", "single,single-single,multi-multi,bam-ft"]) == 0
    return out


def test_multi_multi_is_taught_by_the_multi_model(derived: Path) -> None:
    seed = derived / "runs" / "seed-1"
    multi = load_file(str(seed / "multi" / "student" / "model" / "model.safetensors"))
    multi_dev = json.loads((seed / "multi" / "metrics.json").read_text())["tasks"]
    for task in TASKS:
        teacher = seed / "multi-multi" / "teachers" / task
        # epochs 0: each teacher is the Multi model itself (encoder and the task's head), so it scores what Multi did
        weights = load_file(str(teacher / "model" / "model.safetensors"))
        assert weights.keys() == multi.keys() and all(np.array_equal(weights[k], multi[k]) for k in multi)
        metrics = json.loads((teacher / "metrics.json").read_text())
        assert metrics["steps"] == 0
        for split, scores in multi_dev[task]["student"].items():
            assert metrics["dev"][split] == pytest.approx(scores)
    manifest = json.loads((seed / "multi-multi" / "manifests" / "student.json").read_text())
    assert manifest["config"]["student"]["fixed_lambda"] is None  # an annealed BAM student


def test_bam_fine_tuning_starts_from_bam_and_reports_its_teachers(derived: Path) -> None:
    seed = derived / "runs" / "seed-1"
    results = {r["variant"]: r for r in json.loads((derived / "results.json").read_text())["runs"]}
    config = json.loads((seed / "bam-ft" / "manifests" / "teachers.json").read_text())["config"]["teachers"]
    assert config["lr"] == 1e-5 and "init_from" not in config  # init_from counts by content, as a source
    inputs = json.loads((seed / "bam-ft" / "manifests" / "teachers.json").read_text())["inputs"]
    assert "teachers.init_from" in inputs
    for task in TASKS:
        metrics = json.loads((seed / "bam-ft" / "teachers" / task / "metrics.json").read_text())
        assert metrics["steps"] > 0
        assert results["bam-ft"]["tasks"][task]["score"] == pytest.approx(metrics["score"])
    assert not (seed / "bam-ft" / "student").exists()
    # it started from BAM's weights: after fine-tuning at lr 1e-5 it is far nearer to BAM than to the seed's teacher
    weights = "model/model.safetensors"
    tuned, bam = (load_file(str(p)) for p in (seed / "bam-ft/teachers/rte" / weights, seed / "bam/student" / weights))
    teacher = load_file(str(seed / "teachers/teachers/rte" / weights))

    def distance(a: dict, b: dict) -> float:
        return float(sum(np.square(a[k] - b[k]).sum() for k in a))

    assert distance(tuned, bam) < 0.01 * distance(tuned, teacher)


def test_single_single_trains_one_student_per_task_from_its_own_teacher(derived: Path) -> None:
    seed = derived / "runs" / "seed-1"
    results = {r["variant"]: r for r in json.loads((derived / "results.json").read_text())["runs"]}
    for task in TASKS:
        run = seed / "single-single" / task
        config = json.loads((run / "manifests" / "student.json").read_text())["config"]
        assert config["tasks"] == [task]
        # the seed's teacher, kept (hard-linked), not retrained
        weights = f"teachers/{task}/model/model.safetensors"
        assert os.path.samefile(seed / "teachers" / weights, run / weights)
        dev = json.loads((run / "metrics.json").read_text())["tasks"][task]["student"]["dev"]
        assert results["single-single"]["tasks"][task]["score"] == main_score(get_glue_task(task), dev)
    table = (derived / "table.md").read_text().split("## Table 1")[1].split("\n## ")[0]
    names = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ") and "Model" not in line]
    assert names == [VARIANTS["single"][0], DERIVED["single-single"][0], DERIVED["multi-multi"][0],
                     DERIVED["bam-ft"][0]]  # fmt: skip


def test_a_teacher_is_adopted_only_when_it_is_the_one_the_run_would_train(derived: Path, tmp_path: Path) -> None:
    """Single→Single takes the seed's teacher (the same per-task digest), never one of other settings; the adopted
    teacher is kept by the teachers stage."""
    from pipeline.dag import run_stages
    from pipeline.experiments.folders import adopt_teacher
    from pipeline.experiments.variants import seed_config, task_config
    from stages import STAGES

    acc, cfg = make_accelerator(), seed_config(load_config(SMOKE), 1)
    src = derived / "runs" / "seed-1" / "teachers"
    record = json.loads((src / "teachers" / "rte" / "done.json").read_text())
    tcfg = task_config(cfg, "rte")
    run_stages(STAGES, tcfg, tmp_path / "dst", acc, target="data")
    assert adopt_teacher(cfg, src, tcfg, tmp_path / "dst", "rte")
    weights = "teachers/rte/model/model.safetensors"
    assert os.path.samefile(src / weights, tmp_path / "dst" / weights)
    assert json.loads((tmp_path / "dst" / "teachers/rte/done.json").read_text())["digest"] == record["digest"]
    assert run_stages(STAGES, tcfg, tmp_path / "dst", acc, target="teachers") == ["teachers"]
    assert os.path.samefile(src / weights, tmp_path / "dst" / weights)  # kept, not retrained
    other = dataclasses.replace(tcfg, teachers=dataclasses.replace(tcfg.teachers, lr=0.5))
    run_stages(STAGES, other, tmp_path / "other", acc, target="data")
    assert not adopt_teacher(cfg, src, other, tmp_path / "other", "rte")
    assert not (tmp_path / "other" / "teachers").exists()
    # asked as another config's teacher (src's would be stale there), refused
    stale = dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, lr=0.5))
    stale_rte = task_config(stale, "rte")
    run_stages(STAGES, stale_rte, tmp_path / "stale", acc, target="data")
    assert not adopt_teacher(stale, src, stale_rte, tmp_path / "stale", "rte")
    assert not (tmp_path / "stale" / "teachers").exists()


def test_export_of_a_reproduce_folder_with_its_options(tmp_path: Path) -> None:
    """scripts/export_run.py: table, results and plots, RUN.md with every finished run, and --options-to: the
    options' table beside BAM with what is still to run."""
    import subprocess
    import sys

    def run(variant: str, score: float, compute: dict | None = None) -> dict:
        tasks = {t: {"score": score, "f1": score, "accuracy": score} for t in TASKS}
        return {"variant": variant, "seed": 1, "average": score, "tasks": tasks, "wall_s": 60.0 * score,
                **({"compute": compute} if compute is not None else {})}  # fmt: skip

    src = tmp_path / "repro"
    src.mkdir()  # no runs/: an OUT whose runs all come from a committed results.json is exported the same way
    teachers = {t: {"threads": 1 if t == "rte" else 2} for t in TASKS}
    runs = [run("single", 60.0, teachers), run("bam", 70.0, {"threads": 2}), run("fgm", 71.0)]  # fgm's: not recorded
    (src / "results.json").write_text(json.dumps({"command": "the command", "machine": "the machine", "runs": runs}))
    (src / "table.md").write_text(render_table(runs, SPECS, "the command", "the machine"))
    script = ROOT / "scripts" / "export_run.py"
    argv = [sys.executable, str(script), "--run", str(src), "--to", str(tmp_path / "to"), "--options-to",
            str(tmp_path / "options")]  # fmt: skip
    subprocess.run(argv, check=True, cwd=ROOT, capture_output=True)
    assert (tmp_path / "to" / "table.md").read_text() == (src / "table.md").read_text()
    rows = [line for line in (tmp_path / "to" / "RUN.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0][2:] for r in rows] == ["single", "bam", "fgm"]
    assert [r.rstrip(" |").split(" | ")[-1] for r in rows] == ["1, 2", "2", "?"]  # the torch threads of each run
    readme = (tmp_path / "options" / "README.md").read_text()
    assert f"| {OPTIONS['fgm'][0]} | 71.0 |" in readme and f"| {VARIANTS['bam'][0]} | 70.0 |" in readme
    assert "Student wall time (min): fgm 71.0." in readme
    assert "Not run yet: " + ", ".join(v for v in OPTIONS if v != "fgm") + "." in readme
    assert "Table 1" not in readme and "`../to/results.json`" in readme


def test_reproduce_on_custom_tasks(tmp_path: Path, capsys) -> None:
    """reproduce-glue on your own tasks beside a GLUE one (configs/custom-tasks.yaml): each task's spec is the one
    its runs' data stage wrote, and the table and results.json hold every task, also when drawn again from
    results.json alone."""
    from pipeline.core.synthetic import write_custom_examples

    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "custom-tasks.yaml", tmp_path / "configs")
    write_custom_examples(tmp_path / "examples" / "custom-tasks")
    config = str(tmp_path / "configs" / "custom-tasks.yaml")
    fast = ["--teachers.epochs=2", "--student.epochs=2"]
    argv = ["reproduce-glue", "--config", config, "--seeds", "1", "--variants", "single,bam", *fast, "--out"]
    assert main([*argv, str(tmp_path / "out")]) == 0
    tasks = ["sst2", "reviews", "questions", "similarity"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["tasks"] == tasks and [spec["name"] for spec in results["task_specs"]] == tasks
    assert [(r["variant"], sorted(r["tasks"])) for r in results["runs"]] == [("single", sorted(tasks)),
                                                                            ("bam", sorted(tasks))]  # fmt: skip
    assert set(results["summary"]["bam"]["median"]) == {*tasks, "average"}
    table = (tmp_path / "out" / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Model | Avg"))
    assert header.split(" | ")[2:6] == ["SST-2", "reviews", "questions", "similarity"]
    bam = next(line for line in table.splitlines() if line.startswith("| Single→Multi (BAM"))
    f1 = results["runs"][1]["tasks"]["questions"]["f1"]
    assert bam.split(" | ")[4] == f"{f1:.1f}/{results['summary']['bam']['median']['questions']:.1f}"  # F1/accuracy
    assert "Scores: SST-2 accuracy, reviews F1/accuracy, questions F1/accuracy, similarity Spearman;" in table

    bare = tmp_path / "bare"  # no run folders: the specs come from results.json
    bare.mkdir()
    (bare / "results.json").write_bytes((tmp_path / "out" / "results.json").read_bytes())
    assert main([*argv, str(bare)]) == 0
    assert not (bare / "runs").exists()
    assert (bare / "table.md").read_text().split("## Table 1")[1] == table.split("## Table 1")[1]
