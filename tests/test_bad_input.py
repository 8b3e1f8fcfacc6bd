"""Bad input stops the pipeline with a message that says where (file, line, column, key) and what was expected,
and leaves every earlier artifact of the run as it was.

Most cases drive the CLI in-process (`pipeline.cli.main` returns 2 and prints `error: ...` on a handled error)
against a private copy of the session's finished smoke run, snapshot every file of the run folder before the
failing call and compare after it. The TSV cases point the data stage at tiny GLUE-layout folders in tmp_path.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import SMOKE, run_smoke
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.config import ConfigError, RunConfig, load_config
from pipeline.core.store import StoreError, file_sha256
from pipeline.dag import stage_order, stage_status
from stages import STAGES as REGISTRY

STAGES = ["data", "teachers", "distill", "student", "evaluate", "report"]


# ------------------------------------------------------------------------------------------------------- helpers


def snapshot(run: Path) -> dict[str, str]:
    """sha256 of every file in the run folder (manifests, outputs, config.yaml), by relative path."""
    return {p.relative_to(run).as_posix(): file_sha256(p) for p in sorted(run.rglob("*")) if p.is_file()}


def _manifests_first(rel: str) -> tuple[bool, str]:
    return (not rel.startswith("manifests/"), rel)


def assert_intact(run: Path, before: dict[str, str]) -> None:
    """Every file that existed before is still there, byte for byte (new files, e.g. temp folders, are allowed)."""
    after = snapshot(run)
    missing = sorted((rel for rel in before if rel not in after), key=_manifests_first)
    changed = sorted((rel for rel in before if rel in after and after[rel] != before[rel]), key=_manifests_first)
    assert not missing and not changed, (
        f"earlier artifacts of the run were not left intact: {len(missing)} missing {missing[:8]}, "
        f"{len(changed)} changed {changed[:8]}"
    )


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `python -m pipeline ...` in-process; returns (exit code, the `error: ...` text or all of stderr)."""
    from pipeline.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except Exception as err:  # the point is that nothing but a clean message may come out
        pytest.fail(f"cli.main let a traceback escape instead of a clean 'error: ...' (rc 2): {err!r}")
    err = capsys.readouterr().err
    return rc, err[err.index("error: ") :] if "error: " in err else err


@pytest.fixture
def finished_run(smoke_copy: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A copy of the finished smoke run, run once more through the CLI (runs nothing, records config.yaml)."""
    rc, err = cli(["run", "--config", SMOKE, "--out", smoke_copy], capsys)
    assert rc == 0, err
    assert (smoke_copy / "config.yaml").is_file()
    return smoke_copy


def glue_folder(root: Path, task_dir: str, files: dict[str, str]) -> Path:
    """A GLUE-layout folder `root/<task_dir>/<split>.tsv` with the given contents; returns root."""
    (root / task_dir).mkdir(parents=True)
    for split, text in files.items():
        (root / task_dir / f"{split}.tsv").write_text(text, encoding="utf-8")
    return root


SST2_GOOD = "sentence\tlabel\na fine film \t1\na dull film \t0\nwarm and fun \t1\n"
STSB_HEADER = "index\tgenre\tsentence1\tsentence2\tscore\n"
STSB_GOOD = STSB_HEADER + "0\tx\ta cat sits\ta cat sat\t4.2\n1\tx\ta dog runs\tthe sun\t0.4\n"


def run_data_stage(run: Path, data_dir: Path, task: str, capsys, spelling: str = "override") -> tuple[int, str]:
    """Only the data stage of the smoke config, reading `task` from the GLUE TSV folder `data_dir`."""
    where = ["--data-dir", data_dir] if spelling == "--data-dir" else [f"--data.data_dir={data_dir}"]
    argv = ["run", "--config", SMOKE, "--out", run, "--stage", "data", "--data.source=glue", *where]
    return cli([*argv, f"--data.tasks=['{task}']"], capsys)


# ------------------------------------------------------------------------------------------- 1-5: GLUE TSV files


@pytest.mark.parametrize("spelling", ["--data-dir", "override"])
@pytest.mark.parametrize(
    "split, bad_line, text",
    [
        ("train", 3, "sentence\tlabel\ngood one \t1\ntoo\tmany\tfields\nlast \t0\n"),
        ("dev", 2, "sentence\tlabel\nno label field at all\n"),
    ],
    ids=["extra-fields", "missing-field"],
)
def test_row_with_wrong_field_count_names_file_and_line(
    finished_run: Path, tmp_path: Path, capsys, spelling: str, split: str, bad_line: int, text: str
) -> None:
    files = {"train": SST2_GOOD, "dev": SST2_GOOD, split: text}
    glue = glue_folder(tmp_path / "glue", "SST-2", files)
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "sst2", capsys, spelling)
    assert rc == 2, err
    assert str(glue / "SST-2" / f"{split}.tsv") in err
    assert f"line {bad_line}:" in err
    assert "expected 2 tab-separated fields" in err
    assert_intact(finished_run, before)


def test_label_outside_label_set_names_file_line_and_value(finished_run: Path, tmp_path: Path, capsys) -> None:
    glue = glue_folder(tmp_path / "glue", "SST-2", {"train": SST2_GOOD + "so so \tpositive\n", "dev": SST2_GOOD})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "sst2", capsys)
    assert rc == 2, err
    assert str(glue / "SST-2" / "train.tsv") in err
    assert "line 5:" in err
    assert "'positive'" in err
    assert "'0', '1'" in err  # what was expected
    assert_intact(finished_run, before)


@pytest.mark.parametrize("value", ["high", "", "nan", "NaN", "inf", "-inf", "1e999", "5.5"])
def test_bad_regression_label_names_file_line_and_column(
    finished_run: Path, tmp_path: Path, capsys, value: str
) -> None:
    dev = STSB_GOOD + f"2\tx\tone more\tand another\t{value}\n"
    glue = glue_folder(tmp_path / "glue", "STS-B", {"train": STSB_GOOD, "dev": dev})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "stsb", capsys)
    assert rc == 2, err
    assert str(glue / "STS-B" / "dev.tsv") in err
    assert "line 4:" in err
    assert "column 'score'" in err
    assert repr(value) in err
    assert "finite decimal number in [0.0, 5.0]" in err
    assert_intact(finished_run, before)


@pytest.mark.parametrize(
    "content", ["sentence\tlabel\n", "sentence\tlabel\n\n\n", ""], ids=["header", "blank", "empty"]
)
def test_empty_split_names_the_file(finished_run: Path, tmp_path: Path, capsys, content: str) -> None:
    glue = glue_folder(tmp_path / "glue", "SST-2", {"train": SST2_GOOD, "dev": content})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "sst2", capsys)
    assert rc == 2, err
    assert str(glue / "SST-2" / "dev.tsv") in err
    assert "empty split" in err
    assert_intact(finished_run, before)


def test_missing_header_column_names_column_and_file(finished_run: Path, tmp_path: Path, capsys) -> None:
    bad = STSB_GOOD.replace("\tscore\n", "\tsimilarity\n", 1)
    glue = glue_folder(tmp_path / "glue", "STS-B", {"train": bad, "dev": STSB_GOOD})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "stsb", capsys)
    assert rc == 2, err
    assert str(glue / "STS-B" / "train.tsv") in err
    assert "line 1:" in err
    assert "column 'score'" in err
    assert_intact(finished_run, before)


def test_cr_only_line_ends_give_a_short_error_that_names_them(finished_run: Path, tmp_path: Path, capsys) -> None:
    """A TSV saved with a lone \\r at each line end is one line of 60 KB to a reader that splits on \\n: the message
    quotes 200 characters of it, not the whole file, and says what the carriage returns are."""
    rows = "".join(f"sentence number {i} is here \t{i % 2}\r" for i in range(2000))
    glue = glue_folder(tmp_path / "glue", "SST-2", {"train": "sentence\tlabel\r" + rows, "dev": SST2_GOOD})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, "sst2", capsys)
    assert rc == 2, err
    assert str(glue / "SST-2" / "train.tsv") in err and "line 1:" in err
    assert "carriage returns" in err and "CR-only" in err
    assert len(err) < 1000, f"{len(err)} characters of error message"
    assert_intact(finished_run, before)


@pytest.mark.parametrize(
    "task_dir, task, dev, line, column",
    [
        ("SST-2", "sst2", "sentence\tlabel\na fine film\t1\n   \t0\n", 3, "sentence"),
        ("STS-B", "stsb", STSB_HEADER + "0\tx\ta cat sits\ta cat sat\t4.2\n1\tx\ta dog runs\t\t0.4\n", 3, "sentence2"),
    ],
    ids=["single", "pair"],
)
def test_empty_sentence_is_an_error_naming_the_line(
    finished_run: Path, tmp_path: Path, capsys, task_dir: str, task: str, dev: str, line: int, column: str
) -> None:
    """An empty sentence is refused, not trained or scored on as [CLS] [SEP]: the message names file, line, column."""
    good = SST2_GOOD if task == "sst2" else STSB_GOOD
    glue = glue_folder(tmp_path / "glue", task_dir, {"train": good, "dev": dev})
    before = snapshot(finished_run)
    rc, err = run_data_stage(finished_run, glue, task, capsys)
    assert rc == 2, err
    assert f"{glue / task_dir / 'dev.tsv'}: line {line}: column '{column}': the text is empty" in err
    assert_intact(finished_run, before)


# ------------------------------------------------------------------------------------------------ 6: task names


def test_unknown_task_is_named_with_the_known_tasks(finished_run: Path, capsys) -> None:
    from pipeline.core.tasks import TASKS

    before = snapshot(finished_run)
    rc, err = cli(["run", "--config", SMOKE, "--out", finished_run, "--data.tasks=['sst2','nope']"], capsys)
    assert rc == 2, err
    assert "'nope'" in err
    assert all(name in err for name in TASKS), f"known tasks not listed: {err}"
    assert_intact(finished_run, before)


# --------------------------------------------------------------------------------------------- 7: model loading


@pytest.mark.parametrize("name", ["/nonexistent/folder", "org/not-a-model"])
def test_unloadable_model_names_it_and_says_how_to_use_a_local_folder(
    finished_run: Path, capsys, monkeypatch, name: str
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    before = snapshot(finished_run)
    argv = ["run", "--config", SMOKE, "--out", finished_run, "--stage", "data", f"--model.name_or_path={name}"]
    rc, err = cli(argv, capsys)
    assert rc == 2, err
    assert f"'{name}'" in err and "model.name_or_path" in err
    if name.startswith("/"):  # refused before any stage: the config names a folder that is not there
        assert "the folder '/nonexistent/folder' does not exist" in err
    else:
        assert "tokenizer" in err and "set model.name_or_path to a local folder" in err
    assert_intact(finished_run, before)


# ----------------------------------------------------------------------------------------- 8, 12: config files


def _smoke_yaml(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "where, key, yaml_change, override",
    [
        ("yaml", "student.lrr", lambda d: d["student"].update(lrr=0.1), None),
        ("yaml", "data.max_length", lambda d: d["data"].update(max_length="long"), None),
        ("yaml", "modle", lambda d: d.update(modle={"pooling": "cls"}), None),
        ("override", "student.lrr", None, "--student.lrr=0.1"),
        ("override", "data.max_length", None, "--data.max_length=long"),
        ("override", "teachers.epochs", None, "--teachers.epochs=[3]"),
    ],
    ids=["yaml-unknown", "yaml-type", "yaml-section", "override-unknown", "override-type", "override-list"],
)
def test_unknown_or_mistyped_config_key_is_named(
    finished_run: Path, tmp_path: Path, capsys, where: str, key: str, yaml_change, override: str | None
) -> None:
    config = _smoke_yaml(tmp_path, yaml_change) if where == "yaml" else SMOKE
    before = snapshot(finished_run)
    rc, err = cli(["run", "--config", config, "--out", finished_run, *([override] if override else [])], capsys)
    assert rc == 2, err
    assert f"'{key}'" in err
    if where == "yaml":
        assert str(config) in err
    assert_intact(finished_run, before)


@pytest.mark.parametrize(
    "text",
    ["student:\n  lr: [1, 2\n", "data:\n\ttasks: [sst2]\n", "data: {tasks: [sst2]\nmodel: x\n", "a: b: c\n"],
    ids=["unclosed-list", "tab", "unclosed-map", "nested-colon"],
)
def test_malformed_yaml_names_the_file(finished_run: Path, tmp_path: Path, capsys, text: str) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(text, encoding="utf-8")
    before = snapshot(finished_run)
    for command in ("run", "status"):
        rc, err = cli([command, "--config", config, "--out", finished_run], capsys)
        assert rc == 2, err
        assert str(config) in err and "not valid YAML" in err
    assert_intact(finished_run, before)


# ---------------------------------------------------------------------- 9: soft targets made from other data


@pytest.mark.parametrize("max_length", [24, 12])
def test_other_max_length_makes_data_and_later_stale_and_the_soft_targets_are_made_anew(
    finished_run: Path, capsys, max_length: int
) -> None:
    """24 truncates no smoke example (the longest has 19 tokens), 12 truncates most. The soft targets join by the
    examples themselves (the same rows under any tokenisation), so it is the DAG that must not reuse them: after the
    data stage reruns, distill is stale and runs again, and the store then records the new data."""
    from pipeline.core.data import load_split

    override = f"--data.max_length={max_length}"
    cfg = load_config(SMOKE, [override])
    memo: dict = {}
    status = {name: stage_status(REGISTRY, name, cfg, finished_run, memo) for name in stage_order(REGISTRY, cfg)}
    assert {name: state for name, (state, _) in status.items()} == dict.fromkeys(STAGES, "stale")
    assert f"data.max_length: 32 → {max_length}" in status["data"][1]
    assert "needs 'data' is stale" in status["teachers"][1]

    old = {task: load_split(finished_run, task, "train") for task in ("sst2", "mrpc", "stsb", "rte")}
    rc, err = cli(["run", "--config", SMOKE, "--out", finished_run, "--stage", "data", override], capsys)
    assert rc == 0, err
    memo = {}
    assert stage_status(REGISTRY, "data", cfg, finished_run, memo)[0] == "done"
    assert all(stage_status(REGISTRY, name, cfg, finished_run, memo)[0] == "stale" for name in STAGES[1:])
    for task, before in old.items():
        new = load_split(finished_run, task, "train")
        assert new.examples_fingerprint == before.examples_fingerprint  # the same examples, other token ids or not
        assert new.fingerprint != before.fingerprint  # the max length is part of the tokenised split's
    rc, err = cli(["run", "--config", SMOKE, "--out", finished_run, "--stage", "distill", override], capsys)
    assert rc == 0, err
    assert stage_status(REGISTRY, "distill", cfg, finished_run, {})[0] == "done"  # made anew from the new data


# ------------------------------------------------------------------------------ 10: incompatible run folders


def _plant_future_manifest(run: Path, stage: str) -> Path:
    from pipeline.core.store import read_json, write_json

    path = run / "manifests" / f"{stage}.json"
    write_json(path, {**read_json(path), "format_version": 999})
    return path


@pytest.mark.parametrize("command", ["status", "run"])
def test_manifest_of_an_incompatible_format_is_named_with_the_way_out(finished_run: Path, capsys, command: str) -> None:
    path = _plant_future_manifest(finished_run, "teachers")
    before = snapshot(finished_run)
    rc, err = cli([command, "--config", SMOKE, "--out", finished_run], capsys)
    assert rc == 2, err
    assert str(path) in err
    assert "format 999" in err
    assert "new --out" in err and "--force" in err
    assert_intact(finished_run, before)


def test_incompatible_manifest_is_replaced_by_force_as_the_message_says(finished_run: Path, capsys) -> None:
    """The error's own advice ('rerun with --force') must work: a forced run of that stage redoes it."""
    _plant_future_manifest(finished_run, "data")
    rc, err = cli(["run", "--config", SMOKE, "--out", finished_run, "--stage", "data", "--force"], capsys)
    assert rc == 0, err
    assert stage_status(REGISTRY, "data", load_config(SMOKE), finished_run)[0] == "done"


# ----------------------------------------------------------------------------------------- 11: no pickle, ever


def test_pickled_weights_in_a_run_folder_are_refused(smoke_copy: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from pipeline.core.model import ModelLoadError, load_model

    model_dir = smoke_copy / "teachers" / "sst2" / "model"
    torch.save(load_file(str(model_dir / "model.safetensors")), model_dir / "pytorch_model.bin")  # a pickle
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as info:
        load_model(model_dir)
    assert str(model_dir) in str(info.value)
    state, why = stage_status(REGISTRY, "teachers", load_config(SMOKE), smoke_copy)
    assert state == "stale"
    assert "teachers/sst2/model/model.safetensors (missing)" in why


class _Trap:
    """Unpickling this creates `marker` (what a malicious pickle would do with os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_pickle_is_never_opened(smoke_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = smoke_copy / "distill" / "sst2" / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Trap(marker)))
    cfg = load_config(SMOKE)
    memo: dict = {}
    assert all(stage_status(REGISTRY, name, cfg, smoke_copy, memo)[0] == "done" for name in STAGES)
    assert run_smoke(smoke_copy) == []
    from pipeline.core.data import load_split
    from pipeline.core.store import load_soft_targets

    for split in ("train", "dev"):  # the soft-target store's own reader, on the folder holding the pickle
        data = load_split(smoke_copy, "sst2", split)
        load_soft_targets(smoke_copy / "distill" / "sst2", split, data.ids, data.examples_fingerprint)
    assert not marker.exists(), "a code path unpickled distill/sst2/evil.pkl"
    assert evil.is_file()
    pickle.loads(evil.read_bytes())  # the trap is armed: unpickling it does create the marker
    assert marker.exists()


@pytest.mark.parametrize("mmap", [True, False])
def test_object_npy_is_refused(tmp_path: Path, mmap: bool) -> None:
    from pipeline.core.store import read_npy

    path = tmp_path / "train.npy"
    np.save(path, np.array([{"a": 1}, None, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(StoreError, match="not a plain .npy array") as info:
        read_npy(path, mmap=mmap)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------- override strings, properties


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


SECTIONS = {name: f.type for name, f in _fields(RunConfig).items() if name != "name"}
SECTION_CLASSES = {name: type(getattr(RunConfig(), name)) for name in SECTIONS}
KEYS = ["name"] + [f"{s}.{k}" for s, cls in SECTION_CLASSES.items() for k in _fields(cls)]
INT_KEYS = [f"{s}.{k}" for s, cls in SECTION_CLASSES.items() for k, f in _fields(cls).items() if f.type in ("int", int)]

literal = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
).map(repr)
value_text = st.one_of(st.text(), literal, st.sampled_from(["null", "None", "nan", "inf", "-1", "0", "1e-4", "{}"]))


def _config_or_config_error(token: str) -> RunConfig | None:
    try:
        return load_config(None, [token])
    except ConfigError:
        return None


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), st.builds(lambda k, v: f"--{k}={v}", st.text(), value_text)))
def test_any_override_string_gives_a_config_or_a_config_error(token: str) -> None:
    _config_or_config_error(token)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYS), value_text)
def test_an_accepted_override_changes_only_its_own_key(key: str, value: str) -> None:
    cfg = _config_or_config_error(f"--{key}={value}")
    if cfg is None:
        return
    default = RunConfig()
    section, _, leaf = key.partition(".")
    for name in _fields(RunConfig):
        if name != section:
            assert getattr(cfg, name) == getattr(default, name), f"--{key} changed {name}"
    if leaf:
        for name in _fields(SECTION_CLASSES[section]):
            if name != leaf:
                assert getattr(getattr(cfg, section), name) == getattr(getattr(default, section), name)


def _is_int_literal(text: str) -> bool:
    try:
        value = ast.literal_eval(text)
    except Exception:  # anything that is not a literal is not an int
        return False
    return isinstance(value, int) and not isinstance(value, bool)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.builds(
            lambda s, k: (f"{s}.{k}", "1"),
            st.sampled_from(sorted(SECTIONS)),
            st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True),
        ),
        st.tuples(st.sampled_from(INT_KEYS), value_text.filter(lambda v: not _is_int_literal(v))),
    )
)
def test_a_rejected_override_names_its_key(key_value: tuple[str, str]) -> None:
    key, value = key_value
    section, _, leaf = key.partition(".")
    if leaf in _fields(SECTION_CLASSES[section]) and key not in INT_KEYS:
        return  # a real key drawn by the unknown-key branch
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"--{key}={value}"])
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize(
    "value", ["-" * 5000 + "1", "not " * 3000 + "1", "[" * 2000 + "]" * 2000], ids=["minus", "not", "brackets"]
)
def test_deeply_nested_override_value_is_a_config_error_not_a_crash(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"--student.lr={value}"])
    assert "'student.lr'" in str(info.value)


def test_init_from_a_model_with_another_vocabulary_is_an_error(tmp_path: Path) -> None:
    """A teacher started from a model whose tokenizer is not the run's would read the data's token ids as other
    words; the error names teachers.init_from. The same vocabulary loads, with the saved head for the task."""
    import torch

    from pipeline.core.config import ModelConfig
    from pipeline.core.model import build_model, build_model_from, load_tokenizer, save_model
    from pipeline.core.tasks import get_glue_task
    from pipeline.core.tiny import build_tiny_random

    cfg = ModelConfig(tiny_hidden_size=16, tiny_layers=1, tiny_heads=2)
    tasks = [get_glue_task("sst2"), get_glue_task("rte")]
    for name, words in (("ours", "good bad film"), ("other", "cat dog bird fish")):
        build_tiny_random(tmp_path / name, [words], cfg, seed=0)
    saved = tmp_path / "student"
    save_model(build_model(str(tmp_path / "ours"), tasks, cfg, seed=0), load_tokenizer(str(tmp_path / "ours")), saved)
    with pytest.raises(ValueError, match=r"teachers.init_from '.*student': its tokenizer's vocabulary is not"):
        build_model_from(saved, [get_glue_task("rte")], cfg, seed=1, tokenizer=load_tokenizer(str(tmp_path / "other")))
    ours = load_tokenizer(str(tmp_path / "ours"))
    model = build_model_from(saved, [get_glue_task("rte")], cfg, seed=1, tokenizer=ours)
    source = build_model(str(tmp_path / "ours"), tasks, cfg, seed=0)
    assert torch.equal(model.heads["rte"].weight, source.heads["rte"].weight)  # the saved head, not a new one
    # a task without a saved head gets a new one when trained, and is an error when the model is taken as it is
    cola = build_model_from(saved, [get_glue_task("cola")], cfg, seed=1, tokenizer=ours)
    assert cola.heads["cola"].weight.shape[0] == 2
    with pytest.raises(ValueError, match=r"has no head for task 'cola'.*heads: \['rte', 'sst2'\]"):
        build_model_from(saved, [get_glue_task("cola")], cfg, seed=1, tokenizer=ours, need_heads=True)


def test_input_hashes_are_remembered_only_while_the_file_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    import pipeline.core.store as store

    hashed, clock = [], {"later": 0}
    monkeypatch.setattr(store, "file_sha256", lambda p: hashed.append(p) or file_sha256(p))
    monkeypatch.setattr(store, "time", SimpleNamespace(time_ns=lambda: time.time_ns() + clock["later"]))
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na\t1\n")
    first = store.source_sha256(path)
    assert store.source_sha256(path) == first and len(hashed) == 2  # changed in the last 2 s: hashed every time
    clock["later"] = 60 * 10**9  # a minute on
    assert store.source_sha256(path) == first and store.source_sha256(path) == first and len(hashed) == 3
    stamp = path.stat().st_mtime_ns
    path.write_text("sentence\tlabel\nb\t1\n")  # same size; even with the old modification time put back,
    os.utime(path, ns=(stamp, stamp))  # its change time is new
    assert store.source_sha256(path) == file_sha256(path) != first
