"""reproduce-glue: variants × seeds on the smoke config, the table built from the runs' own metrics, resuming."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from pipeline.cli import build_parser, main
from pipeline.core.accel import make_accelerator
from pipeline.core.config import RunConfig, load_config, validate
from pipeline.core.metrics import main_score
from pipeline.core.submission import read_test_split, write_submission
from pipeline.core.tasks import get_glue_task
from pipeline.experiments.choices import variant_config
from pipeline.experiments.stats import holm, paired_p
from pipeline.experiments.table import render_table
from pipeline.experiments.variants import DERIVED, EVERY, OPTIONS, VARIANTS, ReproduceError, parse_variants

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
TASKS = ["sst2", "mrpc", "stsb", "rte"]
SPECS = [get_glue_task(t) for t in TASKS]


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
def repro(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert main(argv) == 0
    return out


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
    # each student run keeps its training curve, so the plots outlive the run folders
    from pipeline.core.plots import training_curve
    from pipeline.experiments.plots import write_plots

    results = json.loads((repro / "results.json").read_text())
    bam = next(r for r in results["runs"] if r["variant"] == "bam" and r["seed"] == 1)
    assert bam["curve"] == training_curve(repro / "runs" / "seed-1" / "bam" / "student" / "log.jsonl")
    bare = repro.parent / "bare-plots"
    for run in results["runs"]:
        run["run_dir"] = str(bare / "gone")
    write_plots(results, bare)
    png = (bare / "plots" / "training.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_second_call_runs_nothing_and_dry_run_says_done(repro: Path, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in (repro / "runs").rglob("manifests/*.json")}
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(repro), "--seeds", "2", "--variants", "single,bam"]
    assert main([*argv, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "0 of 4 steps to run" in printed and "to run:" not in printed
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (repro / "runs").rglob("manifests/*.json")} == before
    # a third seed is planned with a measured time estimate, and nothing runs in a dry run
    assert main([*argv[:-4], "--seeds", "3", "--variants", "single,bam", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "2 of 6 steps to run" in printed and "(measured at " in printed
    assert not (repro / "runs" / "seed-3").exists()


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


def test_tuning_picks_each_variants_best_dev_setting_and_runs_every_seed_with_it(
    repro: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "tuned"
    shutil.copytree(repro, out, symlinks=True)
    seed1 = out / "runs" / "seed-1"
    untuned = (seed1 / "bam" / "student" / "model" / "model.safetensors").stat().st_ino
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert main([*argv, "--tune", "student.lr=0.002,0.004", "--dry-run"]) == 0
    printed = capsys.readouterr().out  # 0.002 is smoke.yaml's own student lr: the run OUT has is that setting's
    assert "tune bam lr=0.002 done" in printed and "tune bam lr=0.004 to run" in printed
    assert main([*argv, "--tune", "student.lr=0.002,0.004"]) == 0

    record = json.loads((out / "tuning" / "bam.json").read_text())
    assert record["grid"] == {"lr": [0.002, 0.004]}
    tuned = {lr: seed1 / "tune" / "bam" / f"lr={lr}" for lr in (0.002, 0.004)}
    averages = {}
    for lr, folder in tuned.items():  # each setting's dev average, from its own run folder
        metrics = json.loads((folder / "metrics.json").read_text())["tasks"]
        averages[lr] = statistics.mean(main_score(get_glue_task(t), metrics[t]["student"]["dev"]) for t in TASKS)
        assert json.loads((folder / "manifests" / "student.json").read_text())["config"]["student"]["lr"] == lr
    best = max(averages, key=averages.get)
    assert record["chosen"] == {"lr": best}
    assert [r["average"] for r in record["runs"]] == pytest.approx([averages[0.002], averages[0.004]])
    # the setting equal to the config's is the run the OUT already had (hard-linked, not trained again)
    assert (tuned[0.002] / "student" / "model" / "model.safetensors").stat().st_ino == untuned
    # seed 1's run is the chosen tuning run itself; every seed runs with the chosen setting
    weights = "student/model/model.safetensors"
    assert os.path.samefile(seed1 / "bam" / weights, tuned[best] / weights)
    results = json.loads((out / "results.json").read_text())
    assert {r["seed"]: r["config"]["student"]["lr"] for r in results["runs"] if r["variant"] == "bam"} == {
        1: best, 2: best
    }  # fmt: skip
    assert results["tuning"]["bam"]["chosen"] == {"lr": best}
    assert "single" not in results["tuning"]  # the teachers keep the config's settings
    table = (out / "table.md").read_text()
    assert "## Tuned on dev" in table and f"**lr={best}: {averages[best]:.1f}**" in table

    # the choice holds without --tune (nothing to run), and for an OUT rebuilt from results.json alone
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")} == before
    # tuning runs finished in their folders but not in results.json (a call killed before it wrote them) are
    # recorded by the next call, which trains nothing
    kept = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text(json.dumps({k: v for k, v in kept.items() if k not in ("tuning", "tuning_runs")}))
    (out / "tuning" / "bam.json").unlink()
    assert main([*argv, "--tune", "student.lr=0.002,0.004"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")} == before
    again = json.loads((out / "results.json").read_text())
    assert sorted(r["key"] for r in again["tuning_runs"]) == sorted(r["key"] for r in kept["tuning_runs"])
    assert again["tuning"]["bam"]["chosen"] == {"lr": best}
    # teachers still to be tuned: the student's record may not hold for the teachers they choose, so its runs show
    assert main([*argv, "--tune", "student.lr=0.002,0.004", "--tune", "teachers.lr=0.002,0.001", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.001 to run" in printed and "tune bam lr=0.004 to run" in printed
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "results.json").write_bytes((out / "results.json").read_bytes())
    assert main([*argv[:4], str(bare), *argv[5:], "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"tuned on seed 1 dev (OUT/tuning/): bam lr={best}" in printed and "0 of 4 steps to run" in printed
    assert not (bare / "tuning").exists()  # a dry run writes nothing
    assert main([*argv[:4], str(bare), *argv[5:]]) == 0
    assert json.loads((bare / "results.json").read_text())["tuning"]["bam"]["chosen"] == {"lr": best}  # still held
    assert not (bare / "runs").exists()  # every run known from results.json: nothing to train

    # each tuning run survives its folder too: a wider grid on another machine runs only the new setting, and the
    # first seed's tuned run is known from its tuning run alone
    wider = tmp_path / "wider"
    wider.mkdir()
    kept = json.loads((out / "results.json").read_text())
    assert {(r["variant"], r["setting"]["lr"]) for r in kept["tuning_runs"]} == {("bam", 0.002), ("bam", 0.004)}
    kept["runs"] = [r for r in kept["runs"] if (r["variant"], r["seed"]) != ("bam", 1)]
    (wider / "results.json").write_text(json.dumps(kept))
    assert main([*argv[:4], str(wider), *argv[5:], "--tune", "student.lr=0.002,0.004,0.008", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tune bam lr=0.002 done" in printed and "tune bam lr=0.004 done" in printed
    assert "tune bam lr=0.008 to run" in printed
    assert main([*argv[:4], str(wider), *argv[5:], "--dry-run"]) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out


def test_tune_argument_errors(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--dry-run", "--tune"]
    for value, message in (
        ("lr=1e-4,2e-4", "expected student.KEY=V1,V2"),
        ("student.seed=1,2", "is set by --seeds"),
        ("student.lr=1e-4,1e-4", "given twice"),
        ("student.lr=1e-4,fast", "'student.lr' expects float, got 'fast'"),
        ("student.warmup=0.1,2", "warmup"),
    ):
        assert main([*base, value]) == 2, value
        assert message in capsys.readouterr().err, value
    assert not (tmp_path / "o").exists()
    # every setting must be valid for every variant it tunes: PCGrad takes no adversarial loss
    assert main([*base, "student.adversarial=none,fgm", "--variants", "bam,pcgrad"]) == 2
    err = capsys.readouterr().err
    assert "adversarial=fgm for the variant pcgrad" in err and "student.adversarial" in err


def test_tune_values_are_read_as_the_config_holds_them(tmp_path: Path) -> None:
    from pipeline.experiments.variants import parse_tune

    cfg = load_config(SMOKE)  # student.epochs is a float: 8 and 8.0 are one setting, the config's own
    assert parse_tune(["student.epochs=8,9", "student.mixing=mixed,summed", "teachers.epochs=20,30"], cfg) == (
        {"epochs": [8.0, 9.0], "mixing": ["mixed", "summed"]}, {"epochs": [20.0, 30.0]}
    )  # fmt: skip
    with pytest.raises(ReproduceError, match="given twice"):
        parse_tune(["student.epochs=8,8.0"], cfg)
    for text in ("teachers.seed=1,2", "teachers.init_from=a,b", "teachers.per_task=1"):  # not a per-task setting
        with pytest.raises(ReproduceError, match="teachers.KEY=V1,V2,... with KEY one of epochs, batch_size, lr"):
            parse_tune([text], cfg)
    with pytest.raises(ReproduceError, match="'teachers.lr' must be a finite number > 0"):
        parse_tune(["teachers.lr=1e-3,0"], cfg)


def test_tuning_the_teachers_picks_each_tasks_best_teacher_for_every_seed(repro: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tuned"
    shutil.copytree(repro, out, symlinks=True)
    seed1 = out / "runs" / "seed-1"
    weights = "model/model.safetensors"
    untuned = {t: (seed1 / "teachers" / "teachers" / t / weights).stat().st_ino for t in TASKS}
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    tune = ["--tune", "teachers.lr=0.002,0.001"]  # 0.002: smoke.yaml's own teachers.lr, the teachers OUT has
    assert main([*argv, *tune, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.002 done" in printed and "tune teachers lr=0.001 to run" in printed
    assert "once the teachers are tuned" in printed and "0 of" not in printed
    assert main([*argv, *tune]) == 0

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
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("manifests/*.json")} == before
    printed = capsys.readouterr().out
    assert "tuned on seed 1 dev (OUT/tuning/): teachers " in printed
    # each setting's teachers are recorded in results.json: a wider grid on another machine trains only the new one
    wider = tmp_path / "wider"
    wider.mkdir()
    (wider / "results.json").write_bytes((out / "results.json").read_bytes())
    assert main([*argv[:4], str(wider), *argv[5:], "--tune", "teachers.lr=0.002,0.001,0.0005", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tune teachers lr=0.002 done" in printed and "tune teachers lr=0.001 done" in printed
    assert "tune teachers lr=0.0005 to run" in printed
    # a task's own value of a tuned key gives way to the choice, and the call says so
    assert main([*argv, "--teachers.per_task.rte.lr=0.0005", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "teachers.per_task.rte.lr (0.0005) is not used: the teachers are tuned over lr [0.002, 0.001]" in printed
    assert "0 of" in printed  # the choice still holds: nothing to run


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


def test_test_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("index\tsentence1\n0\ta\n")
    with pytest.raises(ValueError, match=r"test.tsv: line 1: header lacks column 'sentence2'"):
        read_test_split(get_glue_task("rte"), path)
    path.write_text("index\tsentence1\tsentence2\n0\ta\n")
    with pytest.raises(ValueError, match=r"test.tsv: line 2: 2 fields, expected 3"):
        read_test_split(get_glue_task("rte"), path)


def test_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o")]
    assert main([*base, "--variants", "bam,nope"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main([*base, "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


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


def test_run_keys_count_the_glue_files_by_content_not_by_their_folder(tmp_path: Path) -> None:
    """A results.json made with the GLUE copy in one folder holds for the same files elsewhere (e.g. a committed
    one on another machine), not for edited ones; so do its tuning runs."""
    from pipeline.experiments.choices import variant_key
    from pipeline.experiments.results import record_tuning_run, recorded_tuning_runs
    from pipeline.experiments.runs import finished_run
    from pipeline.experiments.tuning import tuning_run
    from pipeline.experiments.variants import seed_config

    def glue(name: str, dev: str) -> RunConfig:
        for split, text in (("train", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t1.0\n"), ("dev", dev)):
            (tmp_path / name / "STS-B").mkdir(parents=True, exist_ok=True)
            (tmp_path / name / "STS-B" / f"{split}.tsv").write_text(text)
        over = ["--data.source=glue", "--data.tasks=['stsb']", f"--data.data_dir={tmp_path / name}"]
        return seed_config(load_config(SMOKE, over), 1)

    dev = "index\tsentence1\tsentence2\tscore\n0\tc\td\t2.0\n"
    here, moved, edited = glue("here", dev), glue("moved", dev), glue("edited", dev + "1\te\tf\t3.0\n")
    out = tmp_path / "out"
    out.mkdir()
    key = variant_key(here, "bam", out)
    assert variant_key(moved, "bam", out) == key != variant_key(edited, "bam", out)
    assert variant_key(here, "multi", out) != key  # still one key per variant

    run = {"variant": "bam", "seed": 1, "average": 50.0, "tasks": {}, "key": key}
    assert finished_run(moved, out, 1, "bam", {("bam", 1): run}) == run  # found wherever the same files are
    assert finished_run(edited, out, 1, "bam", {("bam", 1): run}) is None

    setting = {"lr": 0.001}
    assert tuning_run(here, out, "bam", setting) is None
    tuned = {"variant": "bam", "seed": 1, "setting": setting, "average": 40.0, "tasks": {},
             "key": variant_key(here, "bam", out, setting=setting)}  # fmt: skip
    record_tuning_run(out, tuned)
    record_tuning_run(out, tuned)  # recorded once
    assert recorded_tuning_runs(out) == [tuned]
    assert tuning_run(moved, out, "bam", setting) == tuned and tuning_run(edited, out, "bam", setting) is None


def test_keys_carry_the_run_folder_format(tmp_path: Path, monkeypatch) -> None:
    """A run key, a tuning-run key and a tuning base of another run-folder format never match: such a results.json
    finds none of its runs done (scripts/migrate_results.py rewrites it)."""
    from pipeline.experiments import choices, results
    from pipeline.experiments.variants import seed_config

    cfg, grid = seed_config(load_config(SMOKE), 1), {"lr": [0.002, 0.001]}
    now = (choices.variant_key(cfg, "bam", tmp_path), choices.tuning_run_key(cfg, "teachers", tmp_path, {"lr": 1.0}),
           choices.tuning_base(cfg, "multi", tmp_path, grid))  # fmt: skip
    monkeypatch.setattr(results, "FORMAT_VERSION", results.FORMAT_VERSION + 1)
    later = (choices.variant_key(cfg, "bam", tmp_path), choices.tuning_run_key(cfg, "teachers", tmp_path, {"lr": 1.0}),
             choices.tuning_base(cfg, "multi", tmp_path, grid))  # fmt: skip
    assert all(a != b for a, b in zip(now, later))


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


def test_multis_key_and_record_hold_when_the_teachers_change(tmp_path: Path, capsys) -> None:
    """Multi (λ = 1) never reads the teachers: other teacher settings leave its key, its recorded run and its tuning
    as they are, while every variant learning from them (or reporting them) gets a new key."""
    from pipeline.core.config import to_dict
    from pipeline.experiments.choices import tuned_choice, tuning_base, tuning_record, variant_key
    from pipeline.experiments.runs import finished_run
    from pipeline.experiments.variants import seed_config

    out = tmp_path / "out"
    out.mkdir()
    cfg = seed_config(load_config(SMOKE), 1)
    other = seed_config(load_config(SMOKE, ["--teachers.lr=0.001", "--teachers.per_task.rte.epochs=2"]), 1)
    assert variant_key(other, "multi", out) == variant_key(cfg, "multi", out)
    for variant in ("single", "bam", "no-annealing", "single-single", "bam-ft"):
        assert variant_key(other, variant, out) != variant_key(cfg, variant, out), variant

    old = {"variant": "multi", "seed": 1, "average": 60.0, "tasks": {}, "wall_s": 60.0, "config": to_dict(cfg)}
    old["key"] = variant_key(cfg, "multi", out)
    assert finished_run(other, out, 1, "multi", {("multi", 1): old}) == old  # whatever the teachers now

    # a tuned Multi: its tuning record holds for other teachers too, while BAM's does not
    grid = {"lr": [0.002, 0.001]}
    (out / "tuning").mkdir()
    for variant in ("multi", "bam"):
        record = {"variant": variant, "grid": grid, "chosen": {"lr": 0.001}, "runs": [],
                  "base": tuning_base(cfg, variant, out, grid)}  # fmt: skip
        (out / "tuning" / f"{variant}.json").write_text(json.dumps(record))
        assert tuned_choice(cfg, variant, out) == {"lr": 0.001}
    assert tuning_record(other, "multi", out) is not None and tuning_record(other, "bam", out) is None
    shutil.rmtree(out / "tuning")  # untuned again

    # a dry run tuning the teachers plans Multi's recorded runs as done, BAM's as to run once they are tuned
    runs = []
    for seed in (1, 2):
        scfg = seed_config(load_config(SMOKE), seed)
        runs += [{**old, "variant": v, "seed": seed, "key": variant_key(scfg, v, out)} for v in ("multi", "bam")]
    (out / "results.json").write_text(json.dumps({"runs": runs}))
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "multi,bam"]
    assert main([*argv, "--tune", "teachers.lr=0.002,0.001", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for seed in (1, 2):
        assert f"seed {seed}  multi         done" in printed
        assert f"seed {seed}  bam           to run" in printed
    assert "multi         to run" not in printed


@contextlib.contextmanager
def lock_held_elsewhere(path: Path, seconds: float = 120):
    """`path` locked by another process (as a concurrent call would hold it) for `seconds` or until the block ends:
    then killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import filelock, time; held = filelock.FileLock({str(path)!r}); held.acquire(); "
         f"print('held', flush=True); time.sleep({seconds})"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_calls_with_their_own_seeds_fill_one_out(tmp_path: Path, capsys) -> None:
    """--only-seeds: each call runs its seeds into the same OUT (one per process or machine); the table counts every
    finished run of the N, the data are tokenised once, and a seed another process holds is refused, not shared."""
    out = tmp_path / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single"]
    assert main([*argv, "--only-seeds", "2"]) == 0
    assert not (out / "runs" / "seed-1").exists()
    first = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in first["runs"]] == [("single", 2)]
    assert main([*argv, "--only-seeds", "1"]) == 0
    both = json.loads((out / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in both["runs"]) == [("single", 1), ("single", 2)]
    assert both["runs"][1] == first["runs"][0]  # seed 2's record as it was
    assert both["summary"]["single"]["seeds"] == [1, 2]
    data = sorted(
        p.relative_to(out / "runs" / "seed-2") for p in (out / "runs" / "seed-2").glob("teachers/data/*/*/*.npy")
    )
    assert data and all(
        os.path.samefile(out / "runs" / "seed-1" / p, out / "runs" / "seed-2" / p) for p in data
    )  # seed 1 took seed 2's tokenised data

    # another process holds seed 2: a call for it stops before touching anything; once that process is gone
    # (killed: the kernel drops its lock), the call goes on
    before = (out / "results.json").read_bytes()
    with lock_held_elsewhere(out / "locks" / "seed-2.lock"):
        capsys.readouterr()
        assert main([*argv, "--only-seeds", "2"]) == 2
        err = capsys.readouterr().err
        assert "seed 2 of" in err and "another call" in err and "seed-2.lock" in err
        assert (out / "results.json").read_bytes() == before
        assert main([*argv, "--only-seeds", "1"]) == 0  # seed 1 is free
    assert main([*argv, "--only-seeds", "2"]) == 0

    # another call is tuning on seed 1: a call for seed 2 would run without the choice, so it waits its turn
    with lock_held_elsewhere(out / "locks" / "tuning.lock"):
        assert main([*argv, "--only-seeds", "2"]) == 2
        assert "another call is tuning on seed 1" in capsys.readouterr().err
    assert main([*argv, "--only-seeds", "2"]) == 0
    # a call that only looks at the tuning lock holds it for a moment: a call started then waits, it does not fail
    with lock_held_elsewhere(out / "locks" / "tuning.lock", seconds=1):
        assert main([*argv, "--only-seeds", "2"]) == 0


def test_only_seeds_arguments(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--seeds", "3"]
    assert main([*base, "--only-seeds", "4"]) == 2
    assert "--only-seeds: [4] not among the seeds 1..3" in capsys.readouterr().err
    assert main([*base, "--only-seeds", "2,x"]) == 2
    assert "expected comma-separated integers, got '2,x'" in capsys.readouterr().err
    assert main([*base, "--only-seeds", "3,2", "--variants", "single,bam", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "seeds 2, 3 of 3" in printed
    assert sorted({line.split()[1] for line in printed.splitlines() if line.startswith("  seed ")}) == ["2", "3"]
    # while a variant's tuning is pending, seed 1 runs too (the other seeds run with its choice)
    assert main([*base, "--only-seeds", "3", "--variants", "bam", "--tune", "student.lr=1e-4,2e-4", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tuning is pending: seed 1 runs first" in printed
    assert {line.split()[1] for line in printed.splitlines() if line.startswith("  seed ")} == {"1", "3"}


def test_a_tuned_choice_without_teachers_is_tuned_again_when_the_teachers_are(tmp_path: Path, capsys) -> None:
    """A student tuned over λ that chose 1.0 (no distillation) still had its grid's other settings learn from the
    teachers: its tuning record counts them, so tuning the teachers plans its tuning and runs anew."""
    from pipeline.core.config import to_dict
    from pipeline.experiments.choices import tuning_base, variant_key
    from pipeline.experiments.variants import seed_config

    out = tmp_path / "out"
    (out / "tuning").mkdir(parents=True)
    cfg, grid = load_config(SMOKE), {"fixed_lambda": [0.5, 1.0]}
    record = {"variant": "bam", "seed": 1, "grid": grid, "chosen": {"fixed_lambda": 1.0}, "runs": [],
              "base": tuning_base(cfg, "bam", out, grid)}  # fmt: skip
    (out / "tuning" / "bam.json").write_text(json.dumps(record))
    runs = [
        {"variant": "bam", "seed": s, "average": 60.0, "tasks": {}, "wall_s": 60.0, "config": to_dict(cfg),
         "key": variant_key(seed_config(cfg, s), "bam", out)}
        for s in (1, 2)
    ]  # fmt: skip
    (out / "results.json").write_text(json.dumps({"runs": runs, "tuning": {"bam": record}}))
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "bam",
            "--tune", "student.fixed_lambda=0.5,1.0", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out  # tuned, and run with the choice: all done
    assert main([*argv, "--tune", "teachers.lr=0.002,0.001"]) == 0
    printed = capsys.readouterr().out
    assert "seed 1  tune bam fixed_lambda=0.5" in printed and "seed 1  tune bam fixed_lambda=1.0" in printed
    assert "bam           done" not in printed and "done" not in printed.split("tune bam", 1)[1]


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
