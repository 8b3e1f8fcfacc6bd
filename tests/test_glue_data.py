"""The GLUE readers, the task registry and the synthetic data set.

Real-data tests read the GLUE TSV files in `/work/shared/data/glue` (or `$GLUE_DIR`) and skip when absent.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.glue import DataError, Example, read_split, read_tsv_split, split_path
from pipeline.core.synthetic import NEGATIVE, POSITIVE, SYNTHETIC_TASKS, write_synthetic_glue
from pipeline.core.tasks import TASKS, get_glue_task

GLUE_DIR = Path(os.environ.get("GLUE_DIR") or Path(__file__).resolve().parents[2] / "shared/data/glue")

OFFICIAL_SIZES = {
    ("cola", "train"): 8551, ("cola", "dev"): 1043,
    ("sst2", "train"): 67349, ("sst2", "dev"): 872,
    ("mrpc", "train"): 3668, ("mrpc", "dev"): 408,
    ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
    ("qqp", "train"): 363846, ("qqp", "dev"): 40430,
    ("mnli", "train"): 392702, ("mnli", "dev_matched"): 9815, ("mnli", "dev_mismatched"): 9832,
    ("qnli", "train"): 104743, ("qnli", "dev"): 5463,
    ("rte", "train"): 2490, ("rte", "dev"): 277,
    ("wnli", "train"): 635, ("wnli", "dev"): 71,
}  # fmt: skip

# Class counts from the data README, keyed by class index: they pin the TSV -> Hugging Face label mapping.
README_LABEL_COUNTS = {
    ("cola", "train"): {1: 6023, 0: 2528}, ("cola", "dev"): {1: 721, 0: 322},
    ("sst2", "train"): {1: 37569, 0: 29780}, ("sst2", "dev"): {1: 444, 0: 428},
    ("mrpc", "train"): {1: 2474, 0: 1194}, ("mrpc", "dev"): {1: 279, 0: 129},
    ("rte", "train"): {0: 1249, 1: 1241}, ("rte", "dev"): {0: 146, 1: 131},
    ("wnli", "train"): {0: 323, 1: 312}, ("wnli", "dev"): {0: 40, 1: 31},
    ("qnli", "dev"): {1: 2761, 0: 2702},
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- real GLUE


@pytest.mark.parametrize("task_name, split", sorted(OFFICIAL_SIZES))
def test_real_glue_split(task_name: str, split: str) -> None:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"no GLUE data at {GLUE_DIR} (set GLUE_DIR)")
    task = TASKS[task_name]
    if not split_path(task, split, GLUE_DIR).is_file():
        pytest.skip(f"{task.glue_dir}/{split}.tsv not present in {GLUE_DIR}")

    examples = read_tsv_split(task, split, GLUE_DIR)

    assert len(examples) == OFFICIAL_SIZES[task_name, split]
    assert [ex.id for ex in examples] == [f"{task_name}:{split}:{row}" for row in range(len(examples))]
    assert all(ex.text_a for ex in examples)
    if len(task.text_columns) == 2:
        assert all(ex.text_b for ex in examples)
    else:
        assert all(ex.text_b is None for ex in examples)
    if task.kind == "classification":
        assert {ex.label for ex in examples} <= set(range(task.num_labels))
        if (task_name, split) in README_LABEL_COUNTS:
            assert Counter(ex.label for ex in examples) == README_LABEL_COUNTS[task_name, split]
    else:
        assert all(isinstance(ex.label, float) and 0.0 <= ex.label <= 5.0 for ex in examples)
    if task_name == "mrpc":
        assert not any(ex.text_a.startswith("\ufeff") for ex in examples)
    assert read_split(task, split, str(GLUE_DIR)) == examples


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_covers_glue() -> None:
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    for name, task in TASKS.items():
        assert task.name == name
        assert task.main_metric in task.metrics
    assert TASKS["stsb"].kind == "regression" and TASKS["stsb"].num_labels == 1
    assert TASKS["mnli"].num_labels == 3 and TASKS["mnli"].dev_splits == ("dev_matched", "dev_mismatched")
    assert TASKS["cola"].main_metric == "mcc" and TASKS["stsb"].main_metric == "spearman"
    assert TASKS["rte"].labels == ("entailment", "not_entailment")
    assert TASKS["wnli"].labels == ("not_entailment", "entailment")


@pytest.mark.parametrize(
    "alias, name",
    [("SST-2", "sst2"), ("sst2", "sst2"), ("sts-b", "stsb"), ("STS-B", "stsb"), ("CoLA", "cola"), ("MNLI", "mnli")],
)
def test_get_task_aliases(alias: str, name: str) -> None:
    assert get_glue_task(alias) is TASKS[name]


def test_get_task_unknown_names_it_and_lists_known() -> None:
    with pytest.raises(ValueError, match="squad") as info:
        get_glue_task("squad")
    assert "sst2" in str(info.value) and "wnli" in str(info.value)


# ---------------------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    vocab_a = write_synthetic_glue(tmp_path / "a", n_train=40, n_dev=12, seed=3)
    vocab_b = write_synthetic_glue(tmp_path / "b", n_train=40, n_dev=12, seed=3)
    write_synthetic_glue(tmp_path / "c", n_train=40, n_dev=12, seed=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tsv"))
    assert len(files) == 2 * len(SYNTHETIC_TASKS)
    assert vocab_a == vocab_b
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert any((tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes() for rel in files)


def test_synthetic_reads_back_and_follows_its_rules(tmp_path: Path) -> None:
    vocab = write_synthetic_glue(tmp_path)
    assert vocab == sorted(set(vocab)) and 50 <= len(vocab) <= 120
    assert all(word.isalpha() and word.islower() for word in vocab)
    assert (tmp_path / "MRPC/train.tsv").read_bytes().startswith("\ufeffQuality\t".encode())
    assert len((tmp_path / "STS-B/dev.tsv").read_text().splitlines()[0].split("\t")) == 10
    assert "\tnot_entailment\n" in (tmp_path / "RTE/train.tsv").read_text()
    for name in SYNTHETIC_TASKS:
        task = TASKS[name]
        for split, size in (("train", 160), ("dev", 48)):
            examples = read_tsv_split(task, split, tmp_path)
            assert len(examples) == size
            labels = Counter(ex.label for ex in examples)
            if task.kind == "classification":
                assert set(labels) == {0, 1} and min(labels.values()) >= size // 4
            else:
                assert all(0.0 <= score <= 5.0 for score in labels) and len(labels) >= 5
            for ex in examples:
                assert set((ex.text_a + " " + (ex.text_b or "")).split()) <= set(vocab)
                assert ex.label == _synthetic_rule(name, ex)


def _synthetic_rule(name: str, ex: Example) -> int | float:
    """The label each synthetic task promises, recomputed from the text."""
    a, b = ex.text_a.split(), (ex.text_b or "").split()
    if name == "sst2":
        return int(sum(w in POSITIVE for w in a) > sum(w in NEGATIVE for w in a))
    if name == "mrpc":
        return int(len(a) == len(b) and len(set(a) - set(b)) <= 1)
    if name == "stsb":
        return int(5 * 5 * len(set(a) & set(b)) / len(set(a) | set(b)) + 0.5) / 5
    return 0 if set(b) <= set(a) else 1  # rte: 0 = entailment


# ---------------------------------------------------------------------------------------------------- errors


def _write(root: Path, task_name: str, split: str, content: str | bytes) -> Path:
    path = split_path(TASKS[task_name], split, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _error(task_name: str, root: Path, split: str = "train") -> str:
    with pytest.raises(DataError) as info:
        read_tsv_split(TASKS[task_name], split, root)
    return str(info.value)


def test_missing_file_names_task_and_path(tmp_path: Path) -> None:
    message = _error("mrpc", tmp_path)
    assert "'mrpc'" in message and str(tmp_path / "MRPC" / "train.tsv") in message
    assert "<data_dir>/MRPC/train.tsv" in message
    message = _error("mnli", tmp_path, "dev_mismatched")
    assert str(tmp_path / "MNLI" / "dev_mismatched.tsv") in message


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dev_matched"):
        read_tsv_split(TASKS["sst2"], "dev_matched", tmp_path)


@pytest.mark.parametrize(
    "task_name, content, line, fragments",
    [
        ("sst2", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", 3, ["expected 2", "got 3"]),
        ("sst2", "sentence\tlabel\ngood\t1\n\nbad\t0\n", 3, ["expected 2", "got 1"]),
        ("cola", "gj04\t1\t\tfine.\ngj04\t1\tonly three\n", 2, ["expected 4", "got 3"]),
        ("rte", "index\tsentence1\tlabel\n0\ta\tentailment\n", 1, ["'sentence2'", "header lacks"]),
        ("rte", "index\tsentence1\tsentence2\n0\ta\tb\n", 1, ["'label'", "['index', 'sentence1', 'sentence2']"]),
        ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentails\n", 2, ["'label'", "'entails'", "'entailment'"]),
        ("sst2", "sentence\tlabel\ngood\t1\nbad\t2\n", 3, ["'label'", "'2'", "'0', '1'"]),
        ("cola", "gj04\t1\t\tfine.\ngj04\tyes\t*\tbad.\n", 2, ["'label'", "'yes'"]),
        ("stsb", "abc", 2, ["'score'", "'abc'", "number"]),
        ("stsb", "nan", 2, ["'score'", "'nan'"]),
        ("stsb", "inf", 2, ["'score'", "'inf'"]),
        ("stsb", "1e999", 2, ["'score'", "'1e999'"]),
        ("stsb", "5.2", 2, ["'score'", "'5.2'", "[0.0, 5.0]"]),
        ("stsb", "-0.5", 2, ["'score'", "'-0.5'"]),
        ("stsb", "", 2, ["'score'", "''"]),
        ("sst2", "sentence\tlabel\n", 2, ["no", "empty split"]),
        ("sst2", "", 1, ["empty split"]),
        ("sst2", b"sentence\tlabel\ngood\t1\nbad \xff\t0\n", 3, ["UTF-8"]),
    ],
)
def test_bad_file_errors_name_file_line_and_field(
    tmp_path: Path, task_name: str, content: str | bytes, line: int, fragments: list[str]
) -> None:
    if task_name == "stsb":  # content is the score of the first data row
        header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        content = header + f"0\tg\tf\t2012\t0000\tnone\tnone\tA cat.\tA dog.\t{content}\n"
    path = _write(tmp_path, task_name, "train", content)
    message = _error(task_name, tmp_path)
    assert str(path) in message
    assert f"line {line}:" in message
    for fragment in fragments:
        assert fragment in message


def test_tolerated_layout_quirks(tmp_path: Path) -> None:
    """BOM header, CRLF endings, a missing final newline, blank final lines, unbalanced quotes, trailing spaces."""
    _write(tmp_path, "mrpc", "train", '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\t" a\tb "\r\n')
    _write(tmp_path, "cola", "dev", 'gj04\t1\t\tA cat sat .\nw_80\t0\t*\tSat cat "a.')
    _write(tmp_path, "sst2", "train", "sentence\tlabel\nit 's fine . \t1\n\n")
    assert read_tsv_split(TASKS["mrpc"], "train", tmp_path) == [Example("mrpc:train:0", '" a', 'b "', 1)]
    assert read_tsv_split(TASKS["cola"], "dev", tmp_path) == [
        Example("cola:dev:0", "A cat sat .", None, 1),
        Example("cola:dev:1", 'Sat cat "a.', None, 0),
    ]
    assert read_tsv_split(TASKS["sst2"], "train", tmp_path) == [Example("sst2:train:0", "it 's fine .", None, 1)]


# ---------------------------------------------------------------------------------------------------- properties

_HEADERS = {
    "cola": None,
    "sst2": ["sentence", "label"],
    "mrpc": ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "stsb": "index genre filename year old_index source1 source2 sentence1 sentence2 score".split(),
    "rte": ["index", "sentence1", "sentence2", "label"],
}
_NASTY = st.sampled_from(["\t", "\n", "\r", "\r\n", '"', "'", "\ufeff", "\u2028", "\x85", "\x0b", " ", "é", "😀"])
_ANY_TEXT = st.lists(st.one_of(st.text(max_size=8), _NASTY), max_size=40).map("".join)
_LABELISH = st.sampled_from(["0", "1", "2", "entailment", "not_entailment", "5.000", "nan", "-1", " 1", ""])


@st.composite
def _near_tsv(draw: st.DrawFn) -> tuple[str, str]:
    """A task and file content that is often almost valid, so parsing gets past the header."""
    task_name = draw(st.sampled_from(sorted(_HEADERS)))
    header = _HEADERS[task_name]
    width = 4 if header is None else len(header)
    cell = st.one_of(_ANY_TEXT, _LABELISH)
    rows = draw(st.lists(st.lists(cell, min_size=width - 1, max_size=width + 1), max_size=5))
    with_header = header is not None and draw(st.booleans())
    lines = (["\t".join(header)] if with_header else []) + ["\t".join(r) for r in rows]
    return task_name, "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))


_PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(case=st.one_of(st.tuples(st.sampled_from(sorted(_HEADERS)), _ANY_TEXT), _near_tsv()))
def test_arbitrary_content_raises_only_data_error(tmp_path: Path, case: tuple[str, str]) -> None:
    task_name, content = case
    _write(tmp_path, task_name, "train", content.encode("utf-8"))
    try:
        examples = read_tsv_split(TASKS[task_name], "train", tmp_path)
    except DataError:
        return
    assert examples and all(isinstance(ex, Example) for ex in examples)


@_PROPERTY
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_data_error(tmp_path: Path, content: bytes) -> None:
    _write(tmp_path, "sst2", "train", b"sentence\tlabel\n" + content)
    try:
        read_tsv_split(TASKS["sst2"], "train", tmp_path)
    except DataError:
        pass


# One line of text: no tab or line break; quotes, unicode and other separators (\x85, \u2028) allowed.
_CELL = st.text(st.characters(exclude_characters="\t\n\r", exclude_categories=("Cs",)), max_size=20)
_CLEAN = (
    st.one_of(_CELL, st.sampled_from(['"', 'say "hi', "it 's", "naïve — ok", "a\u2028b", "'"]))
    .map(str.strip)
    .filter(bool)  # an empty sentence is an error (test_empty_sentence_is_an_error_naming_the_line)
)


@_PROPERTY
@given(
    task_name=st.sampled_from(["cola", "sst2", "mrpc", "stsb", "rte"]),
    rows=st.lists(st.tuples(_CLEAN, _CLEAN, st.integers(0, 1), st.integers(0, 25)), min_size=1, max_size=8),
)
def test_well_formed_rows_round_trip(tmp_path: Path, task_name: str, rows: list[tuple[str, str, int, int]]) -> None:
    task = TASKS[task_name]
    lines, expected = [], []
    for row, (a, b, label, fifths) in enumerate(rows):
        tsv_label = f"{fifths / 5:.3f}" if task.kind == "regression" else task.tsv_labels[label]
        cells = {
            "cola": ["src", tsv_label, "*", a],
            "sst2": [a, tsv_label],
            "mrpc": [tsv_label, "1", "2", a, b],
            "stsb": [str(row), "g", "f", "2012", "0000", "none", "none", a, b, tsv_label],
            "rte": [str(row), a, b, tsv_label],
        }[task_name]
        lines.append("\t".join(cells))
        text_b = b if len(task.text_columns) == 2 else None
        expected.append(
            Example(f"{task_name}:train:{row}", a, text_b, fifths / 5 if task.kind == "regression" else label)
        )
    header = _HEADERS[task_name]
    content = "\n".join(([] if header is None else ["\t".join(header)]) + lines) + "\n"
    _write(tmp_path, task_name, "train", content.encode("utf-8"))
    assert read_tsv_split(task, "train", tmp_path) == expected


# ---------------------------------------------------------------------------------------------------- Hub reader
# No network here: `datasets.load_dataset` is replaced by an in-memory stand-in with the Hub's column names.


def _fake_hub(monkeypatch: pytest.MonkeyPatch, tables: dict[tuple[str, str], dict[str, list]]) -> list[tuple]:
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(path: str, name: str, split: str) -> object:
        calls.append((path, name, split))
        if (name, split) not in tables:
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")
        return datasets.Dataset.from_dict(tables[name, split])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize("name", SYNTHETIC_TASKS)
def test_hub_reader_matches_tsv_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    task = TASKS[name]
    write_synthetic_glue(tmp_path, n_train=12, n_dev=6)
    tables = {}
    for split, hub_split in (("train", "train"), ("dev", "validation")):
        examples = read_tsv_split(task, split, tmp_path)
        columns = task.hub_text_columns or task.text_columns
        table: dict[str, list] = {columns[0]: [ex.text_a + " " for ex in examples]}  # SST-2 style trailing space
        if len(columns) == 2:
            table[columns[1]] = [ex.text_b for ex in examples]
        table["label"] = [ex.label for ex in examples]
        table["idx"] = list(range(len(examples)))
        tables[task.hub_config, hub_split] = table
    calls = _fake_hub(monkeypatch, tables)

    assert read_split(task, "train", None) == read_tsv_split(task, "train", tmp_path)
    assert read_split(task, "dev", None) == read_tsv_split(task, "dev", tmp_path)
    assert calls == [("nyu-mll/glue", task.hub_config, "train"), ("nyu-mll/glue", task.hub_config, "validation")]


def test_hub_unreachable_says_to_use_a_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_hub(monkeypatch, {})
    with pytest.raises(DataError) as info:
        read_split(TASKS["mnli"], "dev_mismatched", None)
    message = str(info.value)
    assert "could not be reached" in message and "--data-dir" in message and "data.data_dir" in message
    assert "MNLI/dev_mismatched.tsv" in message
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]


def test_hub_label_outside_classes_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_hub(monkeypatch, {("rte", "validation"): {"sentence1": ["a"], "sentence2": ["b"], "label": [-1]}})
    with pytest.raises(DataError, match=r"row 0: column 'label': label -1"):
        read_split(TASKS["rte"], "dev", None)
