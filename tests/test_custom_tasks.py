"""Your own tasks: files in every format read the same, label sets and ranges, metrics against sklearn / scipy, a
Hub dataset (faked), the config (paths, checks), clear errors for bad files, and a smoke run mixing two custom tasks
with a generated GLUE task in one student."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pipeline.core.config import ConfigError, CustomTaskConfig, load_config
from pipeline.core.custom import read_custom_split, resolve_task
from pipeline.core.data import scaled_labels, unscale
from pipeline.core.glue import DataError, Example
from pipeline.core.metrics import compute_metrics
from stages import STAGES as REGISTRY

# Texts that need quoting in CSV and TSV: the delimiters, quotes, a line break.
ROWS = [
    ("a plain sentence", "pos"),
    ("commas, and more, commas", "neg"),
    ('she said "hello" twice', "pos"),
    ("a\ttab inside", "neu"),
    ("two\nlines", "neg"),
    ("  padded  ", "neu"),
]
EXPECTED = [Example(f"mine:dev:{i}", text.strip(), None, ["neg", "neu", "pos"].index(y)) for i, (text, y) in
            enumerate(ROWS)]  # fmt: skip


def write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return str(path)


def delimited(rows: list[tuple], delimiter: str, header: tuple | None = ("sentence", "label"), index: bool = False):
    """Rows as CSV / TSV text, quoted where needed (csv module), optionally with a pandas-style index column."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    if header is not None:
        writer.writerow(("", *header) if index else header)
    writer.writerows((i, *row) if index else row for i, row in enumerate(rows))
    return out.getvalue()


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def declare(train: str, dev: str, **kwargs) -> CustomTaskConfig:
    return CustomTaskConfig(**{"train": train, "dev": dev, "text": ("sentence",), "label": "label", **kwargs})


def read_dev(decl: CustomTaskConfig, name: str = "mine") -> list[Example]:
    return read_custom_split(resolve_task(name, decl), decl, "dev")


# --------------------------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    "variant",
    ["csv", "csv-index-column", "csv-no-header", "tsv", "tsv-index-column", "jsonl", "jsonl-declared-format"],
)
def test_every_format_reads_the_same_examples(tmp_path: Path, variant: str) -> None:
    fmt = variant.split("-")[0]
    suffix = "txt" if variant == "jsonl-declared-format" else fmt
    kwargs = {"format": fmt} if suffix == "txt" else {}
    if fmt == "jsonl":
        text = "\n" + jsonl([{"sentence": t, "label": y, "id": i} for i, (t, y) in enumerate(ROWS)]) + "\n\n"
    else:
        header = None if variant.endswith("no-header") else ("sentence", "label")
        text = delimited(ROWS, "," if fmt == "csv" else "\t", header, index=variant.endswith("index-column"))
        if header is None:
            kwargs["columns"] = ("sentence", "label")
        if variant.endswith("index-column"):
            assert text.startswith(("," if fmt == "csv" else "\t") + "sentence")  # the index column has no name
    path = write(tmp_path / f"dev.{suffix}", text)
    assert read_dev(declare(path, path, **kwargs)) == EXPECTED


def test_quoted_csv_as_written_by_hand(tmp_path: Path) -> None:
    text = 'id,sentence,label\r\n7,"a, b",pos\r\n8,"say ""hi""",neg\r\n9,plain,pos\r\n'
    path = write(tmp_path / "dev.csv", "\ufeff" + text)  # a byte-order mark and Windows line ends, too
    assert [(e.text_a, e.label) for e in read_dev(declare(path, path))] == [("a, b", 1), ('say "hi"', 0), ("plain", 1)]


def test_unquoted_tsv_keeps_quotes_as_text(tmp_path: Path) -> None:
    text = 'sentence\tlabel\n"an opening quote only\tpos\nhe said "hi\tneg\n'
    path = write(tmp_path / "dev.tsv", text)
    examples = read_dev(declare(path, path, quoting=False))
    assert [e.text_a for e in examples] == ['"an opening quote only', 'he said "hi']
    with pytest.raises(DataError, match=r"dev\.tsv: line 2: .*set quoting: false"):
        read_dev(declare(path, path))  # with quoting, the first quote never closes


def test_sentence_pairs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dev.jsonl", jsonl([{"q1": " a? ", "q2": "b?", "dup": 1}, {"q1": "c", "q2": "d", "dup": 0}])
    )
    examples = read_dev(declare(path, path, text=("q1", "q2"), label="dup"))
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("a?", "b?", 1), ("c", "d", 0)]


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


# -------------------------------------------------------------------------------------------------------- bad files


BAD_FILES = {  # case: (file name, content, what the message must say besides the file)
    "missing column": ("dev.csv", "sentence,lab\nx,pos\n", ["line 1", "lacks column 'label'", "['sentence', 'lab']"]),
    "missing field": ("dev.jsonl", '{"sentence": "x", "label": "a"}\n{"sentence": "y"}', ["line 2", "no field"]),
    "bad label": ("dev.tsv", "sentence\tlabel\nx\tpos\ny\t\n", ["line 3", "column 'label'", "expected a label name"]),
    "empty file": ("dev.csv", "", ["line 1", "the file is empty", "['sentence', 'label']"]),
    "header only": ("dev.csv", "sentence,label\n\n", ["line 3", "expected data rows after the header"]),
    "empty jsonl": ("dev.jsonl", "\n \n", ["line 1", "the file is empty"]),
    "ragged row": ("dev.csv", "sentence,label\nx,pos\ny,neg,extra\n", ["line 3", "expected 2 comma-separated fields"]),
    "unclosed quote": ("dev.csv", 'sentence,label\nx,pos\n"y,neg\nz,pos\n', ["line 3", "set quoting: false"]),
    "not json": ("dev.jsonl", '{"sentence": "x", "label": "pos"\n', ["line 1", "not valid JSON"]),
    "not an object": ("dev.jsonl", '["x", "pos"]\n', ["line 1", "expected a JSON object"]),
    "text not text": ("dev.jsonl", '{"sentence": null, "label": "a"}\n', ["line 1", "'sentence'", "expected text"]),
    "not utf-8": ("dev.csv", b"sentence,label\nx,pos\n\xff,neg\n", ["line 3", "not valid UTF-8"]),
    "no such file": ("missing.csv", None, ["no such file"]),
    "empty text": ("dev.csv", "sentence,label\nx,pos\n  ,neg\n", ["line 3", "'sentence'", "the text is empty"]),
    "quoted empty text": ("dev.tsv", 'sentence\tlabel\nx\tpos\n""\tneg\n', ["line 3", "the text is empty"]),
    "empty text in json": ("dev.jsonl", '{"sentence": " ", "label": "a"}\n', ["line 1", "the text is empty"]),
    "number as text": ("dev.jsonl", '{"sentence": 5, "label": "a"}\n', ["line 1", "expected text, got 5"]),
    "lone surrogate": ("dev.jsonl", '{"sentence": "a\\ud800", "label": "a"}\n', ["line 1", "not a character"]),
    "utf-16": ("dev.csv", "sentence,label\nx,pos\n".encode("utf-16"), ["line 1", "NUL byte", "save it as UTF-8"]),
    "huge integer": ("dev.jsonl", '{"sentence": "x", "label": 1' + "0" * 5000 + "}\n", ["line 1", "refuses"]),
    "deep nesting": ("dev.jsonl", '{"sentence": "x", "label": ' + "[" * 5000 + "\n", ["line 1", "refuses"]),
    "long line": ("dev.jsonl", '["' + "x" * 100_000 + '"]\n', ["line 1", "expected a JSON object", "100004 char"]),
    "cr-only json": ("dev.jsonl", '{"sentence": "x", "label": "a"}\r["y"]\r', ["line 2", "expected a JSON object"]),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_names_file_line_and_what_was_expected(tmp_path: Path, case: str) -> None:
    name, content, fragments = BAD_FILES[case]
    train = write(tmp_path / "train.csv", "sentence,label\nx,pos\ny,neg\n")
    dev = str(tmp_path / name) if content is None else write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read_dev(declare(train, dev))
    message = str(info.value)
    assert message.startswith(dev), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) < len(dev) + 400, f"the message quotes too much of the file: {message[:500]!r}..."


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_cr_only_line_ends_read_the_same(tmp_path: Path, fmt: str) -> None:
    """Files saved with old-Mac line ends (a lone \\r) read as with \\n, quoted line breaks kept."""
    if fmt == "jsonl":
        text = jsonl([{"sentence": t, "label": y} for t, y in ROWS]).replace("\n", "\r")  # JSON escapes its own
    else:
        out = io.StringIO()
        csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\r", quoting=csv.QUOTE_ALL).writerows(
            [("sentence", "label"), *ROWS]
        )
        text = out.getvalue()
    path = write(tmp_path / f"dev.{fmt}", text)
    assert "\n" not in text.replace("two\nlines", "")
    assert read_dev(declare(path, path)) == EXPECTED


def test_huge_integer_score_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"a": "x", "score": 1}\n{"a": "y", "score": 1' + "0" * 400 + "}\n")
    with pytest.raises(DataError, match=r"train\.jsonl: line 2: column 'score': score 1000.* is not a finite") as info:
        resolve_task("sim", declare(path, path, text=("a",), label="score", kind="regression"))
    assert len(str(info.value)) < len(path) + 400


def test_bad_score_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "a\tb\tscore\nx\ty\t1\nx\ty\thigh\n")
    with pytest.raises(DataError, match=r"train\.tsv: line 3: column 'score': score 'high' is not a finite decimal"):
        resolve_task("sim", declare(path, path, text=("a", "b"), label="score", kind="regression"))


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
