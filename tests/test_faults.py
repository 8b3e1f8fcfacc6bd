"""Faults a user (or someone tampering) makes in a run folder: edited and deleted outputs, files no stage made,
leftovers of interrupted writes, a signal during a forced rerun, a checkpoint resumed with another process count."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SMOKE, run_smoke

from pipeline.cli import main
from pipeline.core.accel import make_accelerator
from pipeline.core.checkpoint import resume, save_checkpoint
from pipeline.core.config import ConfigError, load_config
from pipeline.core.store import StoreError
from pipeline.dag import clean, run_lock, stage_status, stray_files
from stages import STAGES as REGISTRY


def _status(run: Path, stage: str) -> tuple[str, str]:
    return stage_status(REGISTRY, stage, load_config(SMOKE), run)


def test_an_edited_teacher_score_is_redone_and_never_reported(smoke_copy: Path, capsys) -> None:
    path = smoke_copy / "teachers" / "sst2" / "metrics.json"
    original = json.loads(path.read_text())
    path.write_text(json.dumps({**original, "score": 99.9}))
    state, why = _status(smoke_copy, "teachers")
    assert state == "stale" and "teachers/sst2/metrics.json (checksum differs)" in why
    capsys.readouterr()
    assert run_smoke(smoke_copy)[0] == "teachers"
    out = capsys.readouterr().out
    assert "mrpc: already trained for this config, kept" in out and "sst2: already trained" not in out
    assert json.loads(path.read_text())["score"] == original["score"]
    assert "99.9" not in (smoke_copy / "report.md").read_text()


def test_a_deleted_teacher_score_is_redone(smoke_copy: Path) -> None:
    (smoke_copy / "teachers" / "rte" / "metrics.json").unlink()
    assert "teachers/rte/metrics.json (missing)" in _status(smoke_copy, "teachers")[1]
    assert run_smoke(smoke_copy)[0] == "teachers"
    assert (smoke_copy / "teachers" / "rte" / "metrics.json").is_file()
    assert all(_status(smoke_copy, s)[0] == "done" for s in REGISTRY)


def test_files_no_stage_made_are_extras_never_outputs(smoke_copy: Path, capsys) -> None:
    planted = [
        smoke_copy / "student" / "pytorch_model.bin",  # never loaded; never ours either
        smoke_copy / "teachers" / "sst2" / "weights.pkl",
        smoke_copy / "distill" / "sst2" / ".train.npy.x1y2.tmp",  # an interrupted atomic write
        smoke_copy / "student.previous" / "log.jsonl",  # a rerun's set-aside copy
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    assert run_smoke(smoke_copy, "--student.epochs=2", stage="student") == ["student"]
    recorded = json.loads((smoke_copy / "manifests" / "student.json").read_text())["files"]
    assert "student/pytorch_model.bin" not in recorded and "student/model/model.safetensors" in recorded
    cfg = load_config(SMOKE, ["--student.epochs=2"])
    found = {p.relative_to(smoke_copy).as_posix() for p in stray_files(REGISTRY, cfg, smoke_copy)}
    assert found == {
        "student/pytorch_model.bin", "teachers/sst2/weights.pkl", "distill/sst2/.train.npy.x1y2.tmp",
        "student.previous",
    }  # fmt: skip
    assert main(["status", "--config", str(SMOKE), "--out", str(smoke_copy), "--student.epochs=2"]) == 0
    assert "extras (no stage made them; status --clean removes them):\n  distill/sst2/.train.npy.x1y2.tmp" in (
        capsys.readouterr().out
    )
    assert main(["status", "--config", str(SMOKE), "--out", str(smoke_copy), "--student.epochs=2", "--clean"]) == 0
    assert not any(p.exists() for p in planted) and not (smoke_copy / "student.previous").exists()
    assert stray_files(REGISTRY, cfg, smoke_copy) == []
    assert all(stage_status(REGISTRY, s, cfg, smoke_copy)[0] == "done" for s in ("teachers", "distill", "student"))


def test_a_folder_in_use_is_not_cleaned_or_run(smoke_copy: Path) -> None:
    (smoke_copy / "student.previous").mkdir()
    with run_lock(smoke_copy):
        with pytest.raises(StoreError, match="in use by another call"):
            clean(REGISTRY, load_config(SMOKE), smoke_copy)
    assert (smoke_copy / "student.previous").exists()
    assert clean(REGISTRY, load_config(SMOKE), smoke_copy) == [smoke_copy / "student.previous"]


LONG_STUDENT = ["--student.epochs=24", "--student.checkpoint_every=40", "--student.log_every=20"]


@pytest.mark.slow
def test_a_signal_during_a_forced_student_run_keeps_its_checkpoint(smoke_copy: Path) -> None:
    """SIGTERM after the forced run's first checkpoint: the checkpoint it says it saved is there, the previous
    outputs are gone (they were being replaced), and the next run resumes from that step."""
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(SMOKE), "--out", str(smoke_copy),
           "--stage", "student", "--force", *LONG_STUDENT]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = smoke_copy / "student" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and not list(ckpts.glob("step-*/state.json")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 143, stderr[-2000:]
    saved = sorted(p.parent.name for p in ckpts.glob("step-*/state.json"))
    assert saved and f"saved {ckpts / saved[-1]}" in stderr  # the message names a checkpoint that exists
    assert "its progress is kept" in stdout and not (smoke_copy / "student.previous").exists()
    result = subprocess.run(cmd[: cmd.index("--force")] + LONG_STUDENT, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from {saved[-1]}" in result.stdout


def test_a_forced_run_that_fails_before_any_progress_puts_the_previous_outputs_back(smoke_copy: Path) -> None:
    before = (smoke_copy / "student" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="not sentence-pair tasks"):  # refused by the student once it has the data
        run_smoke(smoke_copy, "--student.swap_pairs=['sst2']", stage="student", force=True)
    assert (smoke_copy / "student" / "model" / "model.safetensors").read_bytes() == before
    assert not (smoke_copy / "student.previous").exists()
    assert json.loads((smoke_copy / "manifests" / "student.json").read_text())["files"]


def test_a_checkpoint_of_another_process_count_is_refused(tmp_path: Path) -> None:
    acc = make_accelerator()
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(tmp_path / "checkpoints", 5, model, optimizer, acc, {"digest": "d"}, 2)
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "world_size": 2}))  # as two processes write it
    with pytest.raises(StoreError, match=r"2 process\(es\), this one has 1.*--num_processes 2.*to start this stage"):
        resume(tmp_path, "d", model, optimizer, acc, "[student]", 10)
    (path / "state.json").write_text(json.dumps(state))
    assert resume(tmp_path, "d", model, optimizer, acc, "[student]", 10)[0] == 5


def test_an_unknown_stage_is_an_error_listing_the_stages(tmp_path: Path, capsys) -> None:
    assert main(["run", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--stage", "studnet"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'studnet'; choose from data, teachers, distill, student, evaluate, report" in err


def test_a_max_length_beyond_the_models_positions_stops_before_any_stage(tmp_path: Path, capsys) -> None:
    argv = ["run", "--config", str(ROOT / "configs" / "glue-small.yaml"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--data.max_length=100000"]) == 2
    assert "'data.max_length' 100000 is more than the model's 512 position embeddings" in capsys.readouterr().err
    assert not (tmp_path / "run" / "manifests").exists()


def test_the_student_command_has_its_own_help() -> None:
    result = subprocess.run([sys.executable, "-m", "student", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m student")
    assert "--report-to" in result.stdout and "--stage " not in result.stdout


def test_help_and_argument_errors_load_no_torch() -> None:
    """`--help` answers without importing torch, transformers or the stages (they load once a command runs)."""
    code = (
        "import sys\nfrom pipeline.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['nope']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'accelerate', 'stages') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "heavy: []" in result.stdout, result.stdout + result.stderr
    assert "invalid choice: 'nope' (choose from 'run', 'status', 'config'" in result.stderr


def test_every_error_the_cli_reports_is_a_pipeline_error(capsys) -> None:
    """A bad --variants (an experiments error) is reported as `error: …` with status 2, not a traceback."""
    assert main(["reproduce-glue", "--config", str(SMOKE), "--out", "unused", "--variants", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: --variants: unknown ['nope']")
