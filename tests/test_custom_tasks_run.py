"""Your own tasks end to end: a smoke run mixing two custom tasks with a generated GLUE task in one student (its
metrics, the task specs in the run and in saved models, changed files making the data stale), and the shipped
example."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from custom_tasks_helpers import delimited, jsonl, write

from pipeline.core.config import load_config
from pipeline.core.glue import DataError
from stages import STAGES as REGISTRY

# ------------------------------------------------------------------------------------- a mixed run, end to end


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory) -> tuple[Path, Path]:
    """Two custom tasks (five-class sentences in CSV with an index column and a test file; sentence pairs scored in
    JSON Lines) beside the generated SST-2, one tiny student; returns (config, run folder)."""
    from pipeline.core.accel import make_accelerator
    from pipeline.core.synthetic import NEUTRAL
    from pipeline.dag import run_stages

    root = tmp_path_factory.mktemp("custom")
    rng = np.random.default_rng(0)
    grades = ["awful", "bad", "fine", "good", "great"]

    def sentences(n: int) -> list[tuple[str, str]]:
        rows = []
        for i in range(n):
            text = " ".join(rng.permutation([*rng.choice(NEUTRAL, 4), grades[i % 5]]))
            rows.append((text.replace(" ", ", ", 1), grades[i % 5]))  # a comma: the field is quoted
        return rows

    def pairs(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            a, b = list(rng.choice(NEUTRAL, 5)), list(rng.choice(NEUTRAL, 5))
            rows.append({"left": " ".join(a), "right": " ".join(b), "score": len(set(a) & set(b)) * 2 - 1})
        return rows

    for split, n in (("train", 40), ("dev", 15), ("test", 10)):
        write(root / "data" / f"grades-{split}.csv", delimited(sentences(n), ",", ("sentence", "grade"), index=True))
        write(root / "data" / f"pairs-{split}.jsonl", jsonl(pairs(n)))
    config = {
        "data": {
            "source": "synthetic",
            "tasks": ["grades", "sst2", "pairs"],
            "max_length": 24,
            "custom_tasks": {
                "grades": {"train": "data/grades-train.csv", "dev": "data/grades-dev.csv",
                           "test": "data/grades-test.csv", "text": ["sentence"], "label": "grade",
                           "metrics": ["mcc", "accuracy", "f1"]},
                "pairs": {"train": "data/pairs-train.jsonl", "dev": "data/pairs-dev.jsonl", "text": ["left", "right"],
                          "label": "score", "kind": "regression", "metrics": ["pearson"]},
            },
        },
        "model": {"name_or_path": "tiny-random", "tiny_hidden_size": 16, "tiny_layers": 1, "tiny_heads": 2},
        "teachers": {"epochs": 1, "batch_size": 16, "lr": 2e-3},
        "student": {"epochs": 1, "batch_size": 16, "lr": 2e-3, "log_every": 5},
    }  # fmt: skip
    path = Path(write(root / "mixed.yaml", yaml.safe_dump(config)))
    out = root / "run"
    ran = run_stages(REGISTRY, load_config(path), out, make_accelerator())
    assert ran == ["data", "teachers", "distill", "student", "evaluate", "report"]
    return path, out


def test_mixed_run_reports_every_task_with_its_metrics(mixed_run: tuple[Path, Path]) -> None:
    _, run = mixed_run
    metrics = json.loads((run / "metrics.json").read_text())
    declared = {"grades": ["mcc", "accuracy", "f1"], "sst2": ["accuracy"], "pairs": ["pearson"]}
    assert set(metrics["tasks"]) == set(declared)
    for name, keys in declared.items():
        task = metrics["tasks"][name]
        splits = ["dev", "test"] if name == "grades" else ["dev"]
        assert task["metric"] == keys[0]
        for who in ("teacher", "student"):
            assert sorted(task[who]) == splits and all(sorted(task[who][s]) == sorted(keys) for s in splits)
        assert task["student_score"] == task["student"]["dev"][keys[0]]
    report = (run / "report.md").read_text()
    assert all(f"| {name} | {keys[0]} |" in report for name, keys in declared.items())
    sizes = json.loads((run / "data" / "sizes.json").read_text())
    assert {k: sorted(v) for k, v in sizes.items()} == {"grades": ["dev", "test", "train"], "sst2": ["dev", "train"],
                                                        "pairs": ["dev", "train"]}  # fmt: skip
    assert sizes["grades"]["train"]["rows"] == 40


def test_loading_a_config_reads_no_data_and_the_specs_are_the_runs_own(mixed_run: tuple[Path, Path], tmp_path) -> None:
    """A config loads without its tasks' files (they are read by the data stage, which learns the labels and writes
    data/tasks.json), and loading another config changes nothing a run already knows about its tasks."""
    from pipeline.core.accel import make_accelerator
    from pipeline.core.tasks import read_task_specs
    from pipeline.dag import run_stages

    config, run = mixed_run
    specs = {t.name: t for t in read_task_specs(run)}
    assert [t.name for t in read_task_specs(run)] == ["grades", "sst2", "pairs"]  # config order
    assert specs["grades"].labels == ("awful", "bad", "fine", "good", "great")  # inferred from the training file
    assert specs["pairs"].kind == "regression" and specs["grades"].dev_splits == ("dev", "test")
    moved = tmp_path / "elsewhere.yaml"
    moved.write_text(config.read_text())  # its relative paths now point at files that do not exist
    cfg = load_config(moved, ["--data.custom_tasks.grades.labels=['x','y']"])
    assert cfg.data.tasks == ("grades", "sst2", "pairs")
    assert read_task_specs(run, ["pairs", "grades"]) == [specs["pairs"], specs["grades"]]  # unchanged by that load
    with pytest.raises(DataError, match=r"data/(grades|pairs)-train\.\w+: no such file"):
        run_stages(REGISTRY, cfg, tmp_path / "run", make_accelerator(), target="data")
    assert not (tmp_path / "run" / "data" / "tasks.json").exists()


def test_saved_models_keep_the_task_specs(mixed_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    from pipeline.cli import main

    config, run = mixed_run
    heads = json.loads((run / "student" / "model" / "heads.json").read_text())["heads"]
    assert heads["grades"]["task"]["labels"] == ["awful", "bad", "fine", "good", "great"]
    train_scores = [json.loads(line)["score"] for line in (config.parent / "data" / "pairs-train.jsonl").open()]
    assert heads["pairs"]["task"]["label_range"] == [min(train_scores), max(train_scores)]
    teacher = json.loads((run / "teachers" / "grades" / "model" / "heads.json").read_text())["heads"]
    assert teacher["grades"]["task"] == heads["grades"]["task"]
    inputs = write(tmp_path / "in.jsonl", jsonl([{"sentence": "great film"}, {"text_a": "awful, dull"}]))
    pair_inputs = write(tmp_path / "pairs.csv", "left,right\nthe cat,the cat\n")
    for task, path in (("grades", inputs), ("pairs", pair_inputs)):
        capsys.readouterr()
        assert main(["predict", "--model", str(run / "student" / "model"), "--task", task, "--input", path]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        if task == "grades":
            assert len(rows) == 2 and all(r["label"] in heads["grades"]["task"]["labels"] for r in rows)
            assert all(list(r["probabilities"]) == heads["grades"]["task"]["labels"] for r in rows)
        else:
            assert len(rows) == 1 and isinstance(rows[0]["score"], float)


def test_changed_files_or_declarations_make_the_data_stale(mixed_run: tuple[Path, Path]) -> None:
    from pipeline.core.accel import make_accelerator
    from pipeline.dag import run_stages, stage_status

    config, run = mixed_run
    assert run_stages(REGISTRY, load_config(config), run, make_accelerator()) == []
    dev = config.parent / "data" / "pairs-dev.jsonl"
    original = dev.read_bytes()
    try:
        dev.write_bytes(original + b'{"left": "a", "right": "b", "score": 0}\n')
        state, why = stage_status(REGISTRY, "data", load_config(config), run)
        assert state == "stale" and f"input '{dev}' changed" in why
        dev.write_bytes(original)
        assert stage_status(REGISTRY, "data", load_config(config), run)[0] == "done"
        same_size = original.replace(b"a", b"e", 1)  # hashes are remembered per process: by size and mtime too
        assert same_size != original and len(same_size) == len(original)
        dev.write_bytes(same_size)
        assert stage_status(REGISTRY, "data", load_config(config), run)[0] == "stale"
    finally:
        dev.write_bytes(original)
    assert stage_status(REGISTRY, "data", load_config(config), run)[0] == "done"
    state, why = stage_status(REGISTRY, "data", load_config(config, ["--data.custom_tasks.grades.metrics=['f1']"]), run)
    assert state == "stale" and "data.custom_tasks.grades.metrics" in why


def test_shipped_example_reads_every_split(tmp_path: Path) -> None:
    import shutil

    from conftest import ROOT

    from pipeline.core.accel import make_accelerator
    from pipeline.core.synthetic import write_custom_examples
    from pipeline.dag import run_stages

    # the shipped config as it stands in a checkout, its samples written as examples/custom-tasks/generate.py does
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "custom-tasks.yaml", tmp_path / "configs")
    written = write_custom_examples(tmp_path / "examples" / "custom-tasks")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in write_custom_examples(tmp_path / "again")]
    cfg = load_config(tmp_path / "configs" / "custom-tasks.yaml")
    assert run_stages(REGISTRY, cfg, tmp_path / "run", make_accelerator(), target="data") == ["data"]
    sizes = json.loads((tmp_path / "run" / "data" / "sizes.json").read_text())
    assert {name: sizes[name]["dev"]["rows"] for name in ("reviews", "questions", "similarity")} == {
        "reviews": 50, "questions": 50, "similarity": 50,
    }  # fmt: skip
