"""Teacher ensembles (`distill.teachers`): the stored target is the mean of the members' probabilities or outputs,
the record names the members, and a member's files count in the distill stage's digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_smoke

from pipeline.core.config import load_config
from pipeline.core.store import StoreError
from pipeline.core.tasks import get_glue_task
from pipeline.dag import stage_status
from stages import STAGES
from teachers.distill import ensemble

TASKS = ["sst2", "mrpc", "stsb", "rte"]


def test_an_ensemble_target_is_the_mean_probability_or_output() -> None:
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(3)]
    mean = np.mean([torch.softmax(torch.from_numpy(x), -1).numpy() for x in logits], axis=0)
    stored = ensemble(logits, get_glue_task("mnli"))
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(stored), -1).numpy(), mean, atol=1e-6)
    scores = [rng.uniform(size=(5, 1)).astype(np.float32) for _ in range(2)]
    np.testing.assert_allclose(ensemble(scores, get_glue_task("stsb")), (scores[0] + scores[1]) / 2)
    assert ensemble(logits[:1], get_glue_task("mnli")) is logits[0]  # one teacher: its outputs as they are


@pytest.fixture(scope="module")
def other_teachers(tmp_path_factory) -> Path:
    """Another run of the smoke teachers (seed 2), with its own soft targets, to average with the smoke run's."""
    other = tmp_path_factory.mktemp("other") / "run"
    assert run_smoke(other, "--teachers.seed=2", stage="distill") == ["data", "teachers", "distill"]
    return other


def test_the_student_learns_from_the_mean_of_both_teacher_runs(
    smoke_run: Path, smoke_copy: Path, other_teachers: Path
) -> None:
    members = f"--distill.teachers=['{other_teachers}']"
    assert run_smoke(smoke_copy, members) == ["distill", "student", "evaluate", "report"]  # teachers kept
    for task in TASKS:
        both = [np.load(run / "distill" / task / "train.npy") for run in (smoke_run, other_teachers)]
        stored = np.load(smoke_copy / "distill" / task / "train.npy")
        if get_glue_task(task).kind == "regression":
            np.testing.assert_allclose(stored, (both[0] + both[1]) / 2, atol=1e-6)
        else:
            probabilities = [torch.softmax(torch.from_numpy(x), -1).numpy() for x in both]
            got = torch.softmax(torch.from_numpy(stored), -1).numpy()
            np.testing.assert_allclose(got, (probabilities[0] + probabilities[1]) / 2, atol=1e-6)
        record = json.loads((smoke_copy / "distill" / task / "train.record.json").read_text())
        assert [Path(smoke_copy / m).resolve() for m in record["members"]] == [
            (run / "teachers" / task / "model").resolve() for run in (smoke_copy, other_teachers)
        ]
    assert "members" not in json.loads((smoke_run / "distill" / "sst2" / "train.record.json").read_text())
    assert "those of 1 other run(s)" in (smoke_copy / "report.md").read_text()

    # a member's weights changed: the soft targets are stale, and only they (and what follows) are redone
    cfg = load_config(SMOKE, [members])
    assert stage_status(STAGES, "distill", cfg, smoke_copy)[0] == "done"
    changed = shutil.copytree(other_teachers, smoke_copy.parent / "changed")
    moved = load_config(SMOKE, [f"--distill.teachers=['{changed}']"])
    assert stage_status(STAGES, "distill", moved, smoke_copy)[0] == "done"  # a moved copy: the same member
    weights = changed / "teachers" / "rte" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert stage_status(STAGES, "teachers", moved, smoke_copy)[0] == "done"
    assert stage_status(STAGES, "distill", moved, smoke_copy)[0] == "stale"


def test_a_member_without_teachers_is_named(smoke_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no teacher model here \(expected a run folder whose teachers stage"):
        run_smoke(smoke_copy, f"--distill.teachers=['{tmp_path / 'nothing'}']")
    assert (smoke_copy / "distill" / "sst2" / "train.npy").is_file()  # the previous soft targets stay


def test_bam_ensemble_averages_the_seeds_teachers(tmp_path: Path, capsys) -> None:
    """reproduce-glue's bam-ensemble: each seed's student learns from its own and the other seeds' teachers; a call
    for one seed whose partners are not trained says which seeds to run first."""
    from pipeline.cli import main

    out = tmp_path / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "3", "--variants", "bam-ensemble"]
    assert main([*argv[:-4], "--seeds", "2", "--variants", "bam-ensemble"]) == 2
    assert "bam-ensemble averages the teachers of seeds 1–3: run it with --seeds 3" in capsys.readouterr().err
    assert main([*argv, "--only-seeds", "1"]) == 2
    assert "averages the teachers of seeds 2,3 too" in capsys.readouterr().err
    assert main(argv) == 0  # one call: every seed's teachers first, then the ensembles
    runs = {r["seed"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert sorted(runs) == [1, 2, 3] and {r["variant"] for r in runs.values()} == {"bam-ensemble"}
    for seed, run in runs.items():
        others = [f"runs/seed-{s}/teachers" for s in (1, 2, 3) if s != seed]
        assert run["config"]["distill"]["teachers"] == others  # relative to OUT in results.json
        record = json.loads((out / run["run_dir"] / "distill" / "rte" / "train.record.json").read_text())
        named = [(out / run["run_dir"] / m).resolve() for m in record["members"]]
        assert named == [(out / d / "teachers" / "rte" / "model").resolve() for d in (run["run_dir"], *others)]
    assert len({r["key"] for r in runs.values()}) == 3
