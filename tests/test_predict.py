"""Predicting with a saved student: files in, JSON Lines out, same answers as during evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

GLUE = {"sst2": "SST-2", "stsb": "STS-B"}


def run_predict(capsys, *args: str) -> tuple[int, list[dict], str]:
    rc = main(["predict", *args])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_reloaded_student_reproduces_its_dev_metrics(smoke_run: Path, capsys) -> None:
    """Saved → reloaded → predicted from the raw TSV gives the dev scores measured in memory."""
    from pipeline.core.glue import read_tsv_split
    from pipeline.core.metrics import compute_metrics
    from pipeline.core.tasks import get_glue_task

    metrics = json.loads((smoke_run / "metrics.json").read_text())
    model = str(smoke_run / "student" / "model")
    for name in ("sst2", "stsb"):
        task = get_glue_task(name)
        tsv = smoke_run / "data" / "synthetic-glue" / GLUE[name] / "dev.tsv"
        rc, rows, err = run_predict(capsys, "--model", model, "--task", name, "--input", str(tsv))
        assert rc == 0, err
        gold = np.array([ex.label for ex in read_tsv_split(task, "dev", smoke_run / "data" / "synthetic-glue")])
        assert len(rows) == len(gold)
        if name == "stsb":
            preds = np.array([r["score"] for r in rows])
        else:
            preds = np.array([[r["probabilities"][label] for label in task.labels] for r in rows])
            assert all(r["label"] == task.labels[int(np.argmax(p))] for r, p in zip(rows, preds))
            np.testing.assert_allclose(preds.sum(1), 1.0, rtol=1e-5)
        got = compute_metrics(task, preds, gold)
        for key, value in metrics["tasks"][name]["student"]["dev"].items():
            assert got[key] == pytest.approx(value, abs=1e-4), (name, key)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "stdin"])
def test_input_formats_give_the_same_predictions(smoke_run: Path, tmp_path: Path, capsys, monkeypatch, fmt) -> None:
    import io

    texts = ["superb happy story", 'a "quoted", awful boring film', "ünïcode brilliant song"]
    model = str(smoke_run / "student" / "model")
    path = tmp_path / "in.tsv"
    path.write_text("sentence\n" + "".join(t + "\n" for t in texts), encoding="utf-8")
    _, reference, _ = run_predict(capsys, "--model", model, "--task", "sst2", "--input", str(path))
    if fmt == "jsonl":
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps({"text_a": t}) + "\n" for t in texts), encoding="utf-8")
        arg = str(path)
    elif fmt == "csv":
        path = tmp_path / "in.csv"
        path.write_text(
            "sentence\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}"\n' for t in texts), encoding="utf-8"
        )
        arg = str(path)
    else:
        monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps({"sentence": t}) + "\n" for t in texts)))
        arg = "-"
    rc, rows, err = run_predict(capsys, "--model", model, "--task", "sst2", "--input", arg)
    assert rc == 0, err
    assert rows == reference and len(rows) == 3


def test_bad_prediction_input_is_a_clear_error(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model = str(smoke_run / "student" / "model")
    path = tmp_path / "in.tsv"
    path.write_text("text\nhello\n", encoding="utf-8")
    rc, _, err = run_predict(capsys, "--model", model, "--task", "sst2", "--input", str(path))
    assert rc == 2 and "in.tsv: line 2" in err and "'sentence'" in err
    rc, _, err = run_predict(capsys, "--model", model, "--task", "cola", "--input", str(path))
    assert rc == 2 and "no head for 'cola'" in err
