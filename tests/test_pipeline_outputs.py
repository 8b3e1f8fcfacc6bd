"""End to end on the smoke config: the files each stage writes, the metrics and the report, the student's log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import TASKS, expected_files, manifest, training_lines


def test_each_stage_writes_exactly_its_files(smoke_run: Path) -> None:
    expected = expected_files()
    for stage, files in expected.items():
        assert set(manifest(smoke_run, stage)["files"]) == files, stage
    on_disk = {p.relative_to(smoke_run).as_posix() for p in smoke_run.rglob("*") if p.is_file()}
    made = set().union(*expected.values())
    extra = on_disk - made - {"config.yaml", ".lock"} - {f"manifests/{s}.json" for s in expected}  # .lock: `run_lock`
    assert not extra, f"files no stage declared: {sorted(extra)}"
    assert not any(p.suffix == ".tmp" for p in smoke_run.rglob("*"))


def test_metrics_and_report(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert sorted(metrics["tasks"]) == sorted(TASKS)
    for name, m in metrics["tasks"].items():
        assert m["gain"] == pytest.approx(m["student_score"] - m["teacher_score"])
        teacher = json.loads((smoke_run / "teachers" / name / "metrics.json").read_text())
        assert m["teacher"] == teacher["dev"]
    scores = [m["student_score"] for m in metrics["tasks"].values()]
    assert metrics["average"]["student"] == pytest.approx(np.mean(scores))
    report = (smoke_run / "report.md").read_text()
    for name in TASKS:
        assert f"| {name} |" in report
    assert f"{metrics['average']['student']:.1f}" in report
    assert "This run exercises the code, not the method" in report  # a tiny random model on generated data
    # the synthetic sentiment task is easy: the teacher must have learnt it
    assert metrics["tasks"]["sst2"]["teacher_score"] > 75


def test_student_log_records_lambda_and_task_losses(smoke_run: Path) -> None:
    log = [json.loads(x) for x in (smoke_run / "student" / "log.jsonl").read_text().splitlines()]
    summary = json.loads((smoke_run / "student" / "summary.json").read_text())
    total = summary["total_steps"]
    assert log[-1] == {"step": total, "dev": summary["dev"], "score": {t: log[-1]["score"][t] for t in TASKS}}
    assert summary["selected_step"] == total  # select: last
    lines = training_lines(smoke_run)
    assert lines[-1]["step"] == total
    steps = [x["step"] for x in lines]
    assert steps == sorted(steps)
    for x in lines:  # λ is logged for the step just taken: (step - 1) / total
        assert x["lambda"] == pytest.approx((x["step"] - 1) / total)
        assert set(x["loss"]) <= set(TASKS) and x["lr"] >= 0
    assert sum(summary["examples_per_task"].values()) == total * summary["batch_size"]
    assert lines[-1]["examples_seen"] == summary["examples_per_task"]
