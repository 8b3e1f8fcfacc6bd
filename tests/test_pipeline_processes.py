"""End to end on the smoke config, as it is run: a student interrupted by a signal resumes to the same weights,
two processes match one, bf16 runs and counts in the digests, and a launch asking for another precision is
refused."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SMOKE, run_smoke
from pipeline_helpers import TASKS, expected_files, manifest, training_lines
from safetensors.numpy import load_file

from pipeline.core.config import load_config
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY


def _student_weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "student" / "model" / "model.safetensors"))


LONG_STUDENT = ["--student.epochs=24", "--student.checkpoint_every=40", "--student.log_every=20"]


@pytest.fixture(scope="module")
def uninterrupted_student(smoke_run: Path, tmp_path_factory) -> Path:
    import shutil

    whole = tmp_path_factory.mktemp("whole") / "run"
    shutil.copytree(smoke_run, whole)
    assert run_smoke(whole, *LONG_STUDENT) == ["student", "evaluate", "report"]
    return whole


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_interrupted_student_resumes_to_the_same_weights(
    smoke_run: Path, uninterrupted_student: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """Kill the student after its first checkpoint (SIGTERM: it saves one more and exits); the rerun does only
    the remaining steps and ends where an uninterrupted run ends."""
    import shutil

    killed = tmp_path / "killed"
    shutil.copytree(smoke_run, killed)
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(SMOKE), "--out", str(killed),
           "--stage", "student", *LONG_STUDENT]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = killed / "student" / "checkpoints"
    deadline = time.time() + 600  # generous for a loaded machine; a healthy run stops waiting early
    while time.time() < deadline and not list(ckpts.glob("step-*/state.json")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    saved = sorted(int(p.parent.name.split("-")[1]) for p in ckpts.glob("step-*/state.json"))
    assert saved, f"the student finished or died before its first checkpoint:\n{stderr[-2000:]}"
    state_path = ckpts / f"step-{saved[-1]:06d}" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["elapsed_s"] > 0
    # pretend the killed process had trained for 1000 s: the resumed run's wall_s must count them
    elapsed = state["elapsed_s"] + 1000.0
    state_path.write_text(json.dumps({**state, "elapsed_s": elapsed}))
    assert stage_status(REGISTRY, "student", load_config(SMOKE, LONG_STUDENT), killed)[0] != "done"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Run the same command again to resume" in stderr
        assert f"after step {saved[-1]}/" in stderr

    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"resuming from step-{saved[-1]:06d}" in result.stdout
    a, b = _student_weights(uninterrupted_student), _student_weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    log = training_lines(killed)
    assert [x["step"] for x in log] == sorted({x["step"] for x in log}), "resumed log repeats steps"
    whole_log = training_lines(uninterrupted_student)
    assert [(x["step"], x["lambda"], x["examples_seen"]) for x in log] == [
        (x["step"], x["lambda"], x["examples_seen"]) for x in whole_log
    ], "the resumed run saw other examples or another λ schedule"
    summaries = [json.loads((r / "student" / "summary.json").read_text()) for r in (uninterrupted_student, killed)]
    assert summaries[0]["examples_per_task"] == summaries[1]["examples_per_task"]
    assert summaries[0]["compute"]["resumed_from_step"] == 0
    assert summaries[1]["compute"]["resumed_from_step"] == saved[-1]  # its wall time is two processes'
    # wall_s is the training time over both processes: the killed one's seconds up to its checkpoint count too
    rerun = json.loads((killed / "manifests" / "student.json").read_text())["wall_s"]
    assert elapsed < summaries[1]["wall_s"] <= elapsed + rerun


@pytest.mark.slow
def test_two_processes_match_one(smoke_run: Path, tmp_path: Path) -> None:
    """The whole pipeline under `accelerate launch` with 2 gloo ranks: same data, same teacher-output rows,
    same student plan and task counts, metrics on exactly the dev sets."""
    two = tmp_path / "two"
    with socket.socket() as probe:  # a free port: not 29500, which another job on the machine may hold
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
           "-m", "pipeline", "run", "--config", str(SMOKE), "--out", str(two)]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert manifest(two, "data")["files"] == manifest(smoke_run, "data")["files"]  # byte-identical data
    for task in TASKS:
        for split in ("train", "dev"):
            ids = json.loads((two / "distill" / task / f"{split}.ids.json").read_text())
            assert ids == json.loads((smoke_run / "data" / task / split / "ids.json").read_text())
            assert np.load(two / "distill" / task / f"{split}.npy").shape[0] == len(ids)
    one_summary = json.loads((smoke_run / "student" / "summary.json").read_text())
    two_summary = json.loads((two / "student" / "summary.json").read_text())
    assert two_summary["processes"] == 2 and one_summary["processes"] == 1
    assert two_summary["compute"]["processes"] == 2 and one_summary["compute"]["processes"] == 1
    assert two_summary["examples_per_task"] == one_summary["examples_per_task"]
    assert two_summary["total_steps"] == one_summary["total_steps"]
    assert two_summary["dev_examples"] == one_summary["dev_examples"] == {t: {"dev": 48} for t in TASKS}
    # only the main process wrote: one line per logged step, no duplicates
    steps = [x["step"] for x in training_lines(two)]
    assert steps == sorted(set(steps))
    assert set(manifest(two, "report")["files"]) == expected_files()["report"]


def test_bf16_runs_end_to_end_and_counts_in_every_digest_after_the_data(smoke_run: Path, tmp_path: Path) -> None:
    """model.precision bf16: the whole pipeline runs under autocast (soft targets still stored as float32); the
    teachers', soft targets', student's and evaluation's digests change, the data's does not; an Accelerator of
    another precision is refused rather than run under the wrong digest."""
    from accelerate.state import AcceleratorState

    from pipeline.core.accel import make_accelerator
    from pipeline.core.config import ConfigError
    from pipeline.dag import run_stages
    from stages import STAGES

    fp32, bf16 = load_config(SMOKE), load_config(SMOKE, ["--model.precision=bf16"])
    for name, stage in STAGES.items():
        assert ("precision" in json.dumps(stage.config_subset(fp32))) == (name not in ("data", "evaluate", "report")), (
            name
        )
        assert (stage.config_subset(bf16) != stage.config_subset(fp32)) == (
            name not in ("data", "evaluate", "report")
        ), name
    out = tmp_path / "bf16"
    AcceleratorState._reset_state(True)  # one precision per process: the other tests' Accelerators are fp32
    try:
        acc = make_accelerator(precision="bf16")
        assert acc.mixed_precision == "bf16"
        with pytest.raises(ConfigError, match="model.precision 'fp32'"):
            run_stages(REGISTRY, fp32, tmp_path / "fp32", acc)
        assert run_stages(REGISTRY, bf16, out, acc) == ["data", "teachers", "distill", "student", "evaluate", "report"]
    finally:
        AcceleratorState._reset_state(True)
    assert not (tmp_path / "fp32" / "manifests").exists()
    for task in TASKS:
        logits = np.load(out / "distill" / task / "train.npy")
        assert logits.dtype == np.float32 and np.isfinite(logits).all()
        assert not np.array_equal(logits, np.load(smoke_run / "distill" / task / "train.npy"))
    # the same data, so the fp32 run's data stage is the bf16 run's; its teachers are not
    data = json.loads((out / "manifests" / "data.json").read_text())["digest"]
    assert data == json.loads((smoke_run / "manifests" / "data.json").read_text())["digest"]
    assert stage_status(REGISTRY, "teachers", bf16, smoke_run)[0] == "stale"
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]
    assert all(np.isfinite(metrics[t]["student"]["dev"][k]) for t in TASKS for k in metrics[t]["student"]["dev"])


def test_accelerate_launch_asking_for_another_precision_is_refused(monkeypatch) -> None:
    from pipeline.core.accel import make_accelerator
    from pipeline.core.config import ConfigError

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ConfigError, match=r"model.precision is 'fp32'.*--model.precision=bf16"):
        make_accelerator(precision="fp32")
