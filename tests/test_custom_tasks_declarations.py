"""What you declare of your own tasks: label sets and regression ranges, metrics against sklearn / scipy, a Hub
dataset (faked), and the config (paths relative to it, every problem of a declaration named)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from custom_tasks_helpers import declare, jsonl, read_dev, write
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pipeline.core.config import ConfigError, CustomTaskConfig, load_config
from pipeline.core.custom import read_custom_split, resolve_task
from pipeline.core.data import scaled_labels, unscale
from pipeline.core.glue import DataError, Example
from pipeline.core.metrics import compute_metrics

# ------------------------------------------------------------------------------------------------ labels and ranges


def test_inferred_labels_are_sorted_numbers_or_names(tmp_path: Path) -> None:
    numbers = write(tmp_path / "n.jsonl", jsonl([{"sentence": "x", "label": y} for y in (10, 2, "9", 2, -1)]))
    assert resolve_task("n", declare(numbers, numbers)).labels == ("-1", "2", "9", "10")
    names = write(tmp_path / "s.csv", "sentence,label\nx,pos\ny,neg\nz,Neutral\nw,pos\n")
    spec = resolve_task("s", declare(names, names))
    assert spec.labels == ("Neutral", "neg", "pos") and spec.kind == "classification" and spec.num_labels == 3
    assert spec.metrics == ("accuracy",) and spec.main_metric == "accuracy" and spec.dev_splits == ("dev",)


def test_declared_labels_keep_their_order_and_integers_match_text(tmp_path: Path) -> None:
    train = write(tmp_path / "train.jsonl", jsonl([{"sentence": "x", "label": 1}, {"sentence": "y", "label": 0}]))
    dev = write(tmp_path / "dev.csv", "sentence,label\nx,1\ny,0\n")
    decl = declare(train, dev, labels=(1, 0), metrics=("f1", "accuracy"))
    spec = resolve_task("mine", decl)
    assert spec.labels == ("1", "0") and spec.main_metric == "f1"
    assert [e.label for e in read_custom_split(spec, decl, "dev")] == [0, 1]
    assert [e.label for e in read_custom_split(spec, decl, "train")] == [0, 1]


@pytest.mark.parametrize("declared", [None, ("neg", "pos")])
def test_dev_label_outside_the_set_is_an_error(tmp_path: Path, declared: tuple | None) -> None:
    train = write(tmp_path / "train.csv", "sentence,label\nx,pos\ny,neg\n")
    dev = write(tmp_path / "dev.csv", "sentence,label\nx,pos\ny,maybe\n")
    with pytest.raises(DataError) as info:
        read_dev(declare(train, dev, labels=declared))
    message = str(info.value)
    assert f"{dev}: line 3: column 'label': label 'maybe'" in message and "('neg', 'pos')" in message
    assert (
        "declared under data.custom_tasks.mine.labels" if declared else f"inferred from the train split, {train}"
    ) in message


def test_a_single_training_class_is_an_error(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", "sentence,label\nx,pos\ny,pos\n")
    with pytest.raises(DataError, match=r"train\.csv: column 'label': every training example has the label 'pos'"):
        resolve_task("mine", declare(train, train))


def test_regression_range_inferred_or_declared(tmp_path: Path) -> None:
    train = write(tmp_path / "train.jsonl", jsonl([{"a": "x", "b": "y", "score": s} for s in (-2, 7.5, "3")]))
    dev = write(tmp_path / "dev.tsv", "a\tb\tscore\nx\ty\t9\n")
    decl = declare(train, dev, text=("a", "b"), label="score", kind="regression")
    spec = resolve_task("sim", decl)
    assert spec.kind == "regression" and spec.label_range == (-2.0, 7.5) and spec.metrics == ("spearman", "pearson")
    assert [e.label for e in read_custom_split(spec, decl, "dev")] == [9.0]  # an inferred range only scales
    scores = np.array([-2.0, 0.0, 7.5])
    np.testing.assert_allclose(scaled_labels(spec, scores), [0.0, 2 / 9.5, 1.0])
    np.testing.assert_allclose(unscale(spec, scaled_labels(spec, scores)[:, None]), scores)
    declared = declare(train, dev, text=("a", "b"), label="score", kind="regression", range=(-5, 8))
    assert resolve_task("sim", declared).label_range == (-5.0, 8.0)
    with pytest.raises(DataError, match=r"dev\.tsv: line 2: column 'score': score 9\.0 is outside the range \[-5"):
        read_custom_split(resolve_task("sim", declared), declared, "dev")


# ---------------------------------------------------------------------------------------------------------- metrics


def test_declared_metrics_match_sklearn_and_scipy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 5))
    logits[np.arange(300), labels] += 1.0
    predicted = logits.argmax(1)
    path = write(tmp_path / "five.csv", "sentence,stars\n" + "".join(f"x,{s}\n" for s in range(1, 6)))
    five = resolve_task("five", declare(path, path, label="stars", metrics=("mcc", "f1", "accuracy")))
    assert compute_metrics(five, logits, labels) == pytest.approx(
        {
            "mcc": 100 * matthews_corrcoef(labels, predicted),
            "f1": 100 * f1_score(labels, predicted, average="macro"),
            "accuracy": 100 * accuracy_score(labels, predicted),
        }
    )
    binary = resolve_task("two", declare(path, path, label="stars", labels=(1, 2), metrics=("f1",)))
    two_labels, two_logits = labels % 2, logits[:, :2]
    assert compute_metrics(binary, two_logits, two_labels) == pytest.approx(
        {"f1": 100 * f1_score(two_labels, two_logits.argmax(1))}
    )
    scores = rng.uniform(-3, 3, 300)
    predictions = scores + rng.normal(size=300)
    sim = resolve_task("sim", declare(path, path, label="stars", kind="regression", metrics=("pearson", "spearman")))
    assert compute_metrics(sim, predictions, scores) == pytest.approx(
        {
            "pearson": 100 * stats.pearsonr(predictions, scores)[0],
            "spearman": 100 * stats.spearmanr(predictions, scores)[0],
        }
    )


# -------------------------------------------------------------------------------------------------------------- Hub


def test_hub_task_through_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []
    features = datasets.Features(
        {"q1": datasets.Value("string"), "q2": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["not_duplicate", "duplicate"])}
    )  # fmt: skip
    tables = {
        "train": {"q1": ["a?", "b?", "c?"], "q2": ["a!", "x?", "c!"], "label": [1, 0, 1]},
        "validation": {"q1": ["d?"], "q2": ["d!"], "label": [1]},
    }

    def load_dataset(path: str, name: str | None = None, split: str | None = None) -> object:
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(tables[split], features=features)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    decl = CustomTaskConfig(hub="someone/pairs", hub_config="en", train="train", dev="validation", text=("q1", "q2"))
    spec = resolve_task("pairs", decl)
    assert spec.labels == ("not_duplicate", "duplicate")  # the ClassLabel's own order
    assert read_custom_split(spec, decl, "dev") == [Example("pairs:dev:0", "d?", "d!", 1)]
    assert calls == [("someone/pairs", "en", "train"), ("someone/pairs", "en", "validation")]
    with pytest.raises(DataError, match=r"Hub dataset someone/pairs \(en\) split 'train': no column 'question'"):
        read_custom_split(spec, dataclasses.replace(decl, text=("question",)), "train")


# ----------------------------------------------------------------------------------------------------------- config


def test_relative_paths_follow_the_config_file_and_overrides_the_cwd(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "project" / "data"
    write(data / "train.csv", "text,label\nx,a\ny,b\n")
    write(data / "dev.csv", "text,label\nx,a\n")
    config = tmp_path / "project" / "configs" / "mine.yaml"
    declaration = {"train": "../data/train.csv", "dev": "../data/dev.csv", "text": ["text"]}
    write(config, yaml.safe_dump({"data": {"tasks": ["mine"], "custom_tasks": {"mine": declaration}}}))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config, ["--data.custom_tasks.mine.dev='project/data/dev.csv'"])
    assert cfg.data.custom_tasks["mine"].train == str(data / "train.csv")
    assert cfg.data.custom_tasks["mine"].dev == str(data / "dev.csv")
    saved = write(tmp_path / "elsewhere" / "config.yaml", yaml.safe_dump({"data": {"custom_tasks": {"mine": {
        k: getattr(cfg.data.custom_tasks["mine"], k) for k in ("train", "dev")} | {"text": ["text"]}}}}))  # fmt: skip
    assert load_config(saved, ["--data.tasks=['mine']"]).data.custom_tasks == cfg.data.custom_tasks


def test_declaration_problems_are_all_named(tmp_path: Path) -> None:
    custom = {
        "SST-2": {"train": "a.csv", "dev": "b.csv", "text": ["t"]},
        "reg": {"train": "a.csv", "dev": "b.txt", "text": ["t"], "kind": "regression", "metrics": ["accuracy"],
                "range": [5, 0], "labels": ["a"]},
        "cls": {"dev": "b.csv", "text": ["a", "b", "c"], "label": "a", "columns": ["a", "a"], "range": [0, 1]},
    }  # fmt: skip
    path = write(tmp_path / "bad.yaml", yaml.safe_dump({"data": {"tasks": ["sst2", "nope"], "custom_tasks": custom}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for fragment in (
        "'data.tasks': unknown GLUE task 'nope'",
        "declare it under data.custom_tasks",
        "'data.custom_tasks.SST-2': the name is the GLUE task 'sst2'",
        "'data.custom_tasks.reg.dev': no format for",
        "'data.custom_tasks.reg.metrics': a regression task reports some of ['pearson', 'spearman']",
        "'data.custom_tasks.reg.range' must be [low, high] with low < high",
        "'data.custom_tasks.reg.labels' is for classification",
        "'data.custom_tasks.cls.train' is required",
        "'data.custom_tasks.cls.text' names one text column or two",
        "'data.custom_tasks.cls.label': column 'a' is also a text column",
        "'data.custom_tasks.cls.columns' names a column twice",
        "'data.custom_tasks.cls.range' is for regression",
    ):
        assert fragment in message, f"{fragment!r} not in:\n{message}"
