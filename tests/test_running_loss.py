"""`student.task_loss: running` (student/options/running_loss.py): each task's loss ÷ a running estimate of its
size, summed over the processes before it moves, and carried through a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_smoke
from safetensors.numpy import load_file

from pipeline.core.config import StudentConfig
from pipeline.core.errors import TrainingInterrupted
from pipeline.core.loss import multitask_loss
from pipeline.core.tasks import get_glue_task
from student import train as student_train
from student.options import get_options
from student.options.running_loss import DECAY, RunningScales, updating

TASKS = [get_glue_task(n) for n in ("sst2", "stsb", "rte")]


def test_a_task_counts_with_one_over_the_bias_corrected_running_mean_of_its_past_losses() -> None:
    scales = RunningScales([1.0, 1.0, 2.0])
    assert list(scales) == [1.0, 1.0, 2.0]  # nothing seen yet: BAM's loss (times the task weights)
    scales.update(np.array([1.2, 0.06, 0.0]), np.array([3, 2, 0]))
    assert scales[0] == pytest.approx(1 / 0.4) and scales[1] == pytest.approx(1 / 0.03)  # the first step's mean
    assert scales[2] == 2.0  # rte was not in the step
    scales.update(np.array([0.6, 0.0, 1.4]), np.array([3, 0, 2]))
    average = DECAY * (1 - DECAY) * 0.4 + (1 - DECAY) * 0.2  # two steps' moving average, from 0
    assert scales.estimate()[0] == pytest.approx(average / (1 - DECAY**2))
    assert scales[0] == pytest.approx((1 - DECAY**2) / average)
    assert scales[1] == pytest.approx(1 / 0.03)  # absent from the second step: its estimate stays
    assert scales[2] == pytest.approx(2.0 / 0.7)


def test_a_tasks_weighted_loss_does_not_depend_on_the_scale_of_its_loss() -> None:
    """The same model on a regression task stated in units 10 times larger (its squared error × 100): under
    `running` each step's weighted loss is the same, where under `mean` it is 100 times larger."""
    rng = np.random.default_rng(0)
    plain, scaled = RunningScales([1.0, 1.0]), RunningScales([1.0, 1.0])
    task_ids = torch.tensor([0, 1, 1, 0, 1])
    tasks = [get_glue_task("sst2"), get_glue_task("stsb")]
    for step in range(20):
        outputs = torch.from_numpy(rng.normal(size=(5, 2))).float()
        labels = torch.tensor([1.0, *rng.uniform(size=2), 0.0, rng.uniform()]).float()
        big = outputs.clone()
        big[task_ids == 1, 0] *= 10
        big_labels = torch.where(task_ids == 1, labels * 10, labels)
        loss_a, rec_a = multitask_loss(outputs, task_ids, labels, tasks, 1.0, None, plain)
        loss_b, rec_b = multitask_loss(big, task_ids, big_labels, tasks, 1.0, None, scaled)
        assert rec_b["stsb"][0] == pytest.approx(100 * rec_a["stsb"][0], rel=1e-4)
        if step == 0:  # no estimate yet: BAM's loss, 100 times larger on stsb
            assert loss_b.item() > 10 * loss_a.item() - 1e-6 or rec_a["stsb"][0] < 1e-6
        else:
            assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-4)
        for s, rec in ((plain, rec_a), (scaled, rec_b)):
            s.update(np.array([rec[n][0] for n in ("sst2", "stsb")]), np.array([rec[n][1] for n in ("sst2", "stsb")]))
    assert scaled[1] == pytest.approx(plain[1] / 100, rel=1e-4) and scaled[0] == pytest.approx(plain[0])


def test_the_estimate_moves_by_the_losses_of_every_process() -> None:
    """Each process sees its own rows; the step's per-task sums are summed over the processes first, so every
    process weighs alike."""
    other_rank = torch.tensor([[3.0, 2.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    accelerator = SimpleNamespace(device=torch.device("cpu"), reduce=lambda t, reduction: t + other_rank)
    logged = [("loss", {"sst2": (1.0, 2)}), ("adv_loss", {"sst2": (50.0, 2)}), ("loss", {"stsb": (0.1, 1)})]
    scales = RunningScales([1.0, 1.0, 1.0])
    backward = updating(lambda *args: logged, scales, [t.name for t in TASKS])
    assert backward(0, None, accelerator, [], None) == logged
    assert scales.estimate() == pytest.approx([4.0 / 4, 0.1, 1.0])  # adversarial passes do not count


def test_the_options_carry_the_running_scales_times_the_task_weights() -> None:
    sc = StudentConfig(task_loss="running", task_weights={"rte": 2.0})
    train = [SimpleNamespace(labels=y) for y in (np.array([0, 1]), np.array([0.5, 4.0]), np.array([1, 0]))]
    opts = get_options(sc, TASKS, train, 1)
    assert isinstance(opts.loss_weights, RunningScales) and list(opts.loss_weights) == [1.0, 1.0, 2.0]
    assert opts.head_affine is None  # the heads stay BAM's
    assert opts.state() == {"running_loss": {"average": [0.0] * 3, "seen": [0] * 3}}
    assert opts.log() == {"loss_weight": {"sst2": 1.0, "stsb": 1.0, "rte": 2.0}}


def _weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "student" / "model" / "model.safetensors"))


def test_a_resumed_running_student_weighs_and_ends_as_an_uninterrupted_one(
    smoke_run: Path, tmp_path: Path, monkeypatch
) -> None:
    """Stopped after step 20 (a checkpoint that holds the estimate), the rerun ends with the weights of a run that
    was never stopped; BAM's loss ends elsewhere, so the option did change the training."""
    overrides = ["--student.task_loss=running", "--student.checkpoint_every=10"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    for out in (whole, stopped):
        shutil.copytree(smoke_run, out)
    assert run_smoke(whole, *overrides, stage="student") == ["student"]

    class StopAt20(student_train.GracefulStop):
        calls = 0

        def should_stop(self, accelerator) -> bool:
            StopAt20.calls += 1
            return StopAt20.calls == 20

    monkeypatch.setattr(student_train, "GracefulStop", StopAt20)
    with pytest.raises(TrainingInterrupted, match="after step 20/"):
        run_smoke(stopped, *overrides, stage="student")
    state = json.loads((stopped / "student" / "checkpoints" / "step-000020" / "state.json").read_text())
    assert all(n > 0 for n in state["running_loss"]["seen"])
    monkeypatch.undo()
    assert run_smoke(stopped, *overrides, stage="student") == ["student"]
    a, b, bam = _weights(whole), _weights(stopped), _weights(smoke_run)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert any(not np.allclose(a[key], bam[key]) for key in a)
    logged = [json.loads(line) for line in (stopped / "student" / "log.jsonl").read_text().splitlines()]
    weights = [r["loss_weight"] for r in logged if "loss_weight" in r]
    assert len(weights) >= 2 and weights[-1]["stsb"] != weights[0]["stsb"]  # each line has the factors of its time
