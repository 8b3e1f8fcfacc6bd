"""Bad input given to the CLI stops the pipeline with a message that says where (file, line, column, key) and
what was expected, and leaves every earlier artifact of the run as it was: GLUE TSV files, task names, model
loading, config files, soft targets made from other data, incompatible run folders.

Each case drives the CLI in-process (`pipeline.cli.main` returns 2 and prints `error: ...` on a handled error)
against a private copy of the session's finished smoke run, snapshot every file of the run folder before the
failing call and compare after it. The TSV cases point the data stage at tiny GLUE-layout folders in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bad_input_helpers import STAGES
from conftest import SMOKE

from pipeline.core.config import load_config
from pipeline.core.store import file_sha256
from pipeline.dag import stage_order, stage_status
from stages import STAGES as REGISTRY

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
