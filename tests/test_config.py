"""Configuration: defaults → YAML → `--section.key=value`, strict keys and types, every problem named at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.core.config import ConfigError, RunConfig, load_config, override

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def _yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path | None = None, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# Loading and precedence


def test_defaults_load() -> None:
    cfg = load_config()
    assert cfg == RunConfig()
    assert cfg.student.alpha == 0.75
    assert cfg.student.layer_decay == 0.9
    assert cfg.student.fixed_lambda is None
    assert cfg.model.pooling == "pooler"


def test_override_wins_over_file_wins_over_default(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "student:\n  lr: 0.001\n  epochs: 4\n  batch_size: 64\nteachers:\n  lr: 0.0002\n",
        name="mine.yaml",
    )
    cfg = load_config(path, ["--student.lr=0.01", "--teachers.seed=9"])
    assert cfg.student.lr == 0.01  # override beats file
    assert cfg.student.epochs == 4.0  # file beats default
    assert cfg.student.batch_size == 64
    assert cfg.teachers.lr == 0.0002
    assert cfg.teachers.seed == 9  # override beats default
    assert cfg.student.warmup == RunConfig().student.warmup  # untouched: default
    assert cfg.name == "mine"  # the run's name defaults to the file's stem
    assert load_config(path, ["--name=other"]).name == "other"


def test_overrides_without_file() -> None:
    cfg = load_config(None, ["--student.alpha=0", "--model.pooling='cls'", "--data.data_dir=/data/glue"])
    assert cfg.student.alpha == 0.0
    assert cfg.model.pooling == "cls"
    assert cfg.data.data_dir == "/data/glue"


def test_data_dir_spellings_of_one_folder_give_one_data_digest(tmp_path: Path, monkeypatch) -> None:
    from stages import STAGES

    (tmp_path / "glue").mkdir()
    monkeypatch.chdir(tmp_path / "glue")
    relative = load_config(None, ["--data.data_dir='../glue'"])
    absolute = load_config(None, [f"--data.data_dir='{tmp_path / 'glue'}'"])
    assert relative.data.data_dir == str(tmp_path / "glue")
    assert STAGES["data"].config_subset(relative) == STAGES["data"].config_subset(absolute)
    other = load_config(None, [f"--data.data_dir='{tmp_path}'"])
    assert STAGES["data"].config_subset(other) != STAGES["data"].config_subset(absolute)


def test_ints_are_accepted_for_float_fields(tmp_path: Path) -> None:
    cfg = load_config(_yaml(tmp_path, "student:\n  epochs: 6\n  lr: 1\n"), ["--teachers.epochs=2"])
    for value in (cfg.student.epochs, cfg.student.lr, cfg.teachers.epochs):
        assert type(value) is float
    assert (cfg.student.epochs, cfg.student.lr, cfg.teachers.epochs) == (6.0, 1.0, 2.0)


def test_lists_become_tuples(tmp_path: Path) -> None:
    cfg = load_config(_yaml(tmp_path, "data:\n  tasks: [sst2, rte]\n"))
    assert cfg.data.tasks == ("sst2", "rte")
    assert isinstance(cfg.data.tasks, tuple)
    cfg = load_config(None, ["--data.tasks=['cola']"])
    assert cfg.data.tasks == ("cola",)
    # unquoted, as typed in a shell: YAML flow lists and mappings
    cfg = load_config(None, ["--data.tasks=[sst2, RTE]", "--data.max_train_examples={sst2: 100}"])
    assert cfg.data.tasks == ("sst2", "rte") and cfg.data.max_train_examples == {"sst2": 100}
    from pipeline.core.config import parse_overrides

    assert parse_overrides(["--a.b=[no, on, 1e-4, null, 'x y']"]) == {"a": {"b": ["no", "on", 1e-4, None, "x y"]}}
    with pytest.raises(ConfigError, match=r"'data.tasks': '\[sst2, \{' is neither a Python literal nor a YAML"):
        load_config(None, ["--data.tasks=[sst2, {"])


@pytest.mark.parametrize("spelling", ["None", "null"])
def test_fixed_lambda_none_override(tmp_path: Path, spelling: str) -> None:
    path = _yaml(tmp_path, "student:\n  fixed_lambda: 0.5\n")
    assert load_config(path).student.fixed_lambda == 0.5
    assert load_config(path, [f"--student.fixed_lambda={spelling}"]).student.fixed_lambda is None


@pytest.mark.parametrize("value", [0, 1])
def test_fixed_lambda_ablation_values(value: int) -> None:
    assert load_config(None, [f"--student.fixed_lambda={value}"]).student.fixed_lambda == float(value)


def test_dict_override_sets_one_key_and_keeps_the_file_s_others(tmp_path: Path) -> None:
    """`--data.max_train_examples.mrpc=100` addresses one key of the mapping: the file's sst2 cap must survive."""
    path = _yaml(tmp_path, "data:\n  max_train_examples: {sst2: 8000}\n")
    cfg = load_config(path, ["--data.max_train_examples.mrpc=100"])
    assert cfg.data.max_train_examples == {"sst2": 8000, "mrpc": 100}


# ---------------------------------------------------------------------------------------------------------------------
# Errors name the key


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _error(_yaml(tmp_path, "studnet:\n  lr: 0.1\n"))
    assert "'studnet'" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = _error(_yaml(tmp_path, "student:\n  learning_rate: 0.1\n"))
    assert "'student.learning_rate'" in message


def test_unknown_key_in_override() -> None:
    assert "'teachers.lr_decay'" in _error(None, ["--teachers.lr_decay=0.9"])
    assert "'bogus'" in _error(None, ["--bogus=1"])


@pytest.mark.parametrize(
    ("override", "key", "type_word"),
    [
        ("--student.batch_size='big'", "student.batch_size", "int"),
        ("--student.batch_size=32.5", "student.batch_size", "int"),
        ("--student.batch_size=True", "student.batch_size", "int"),
        ("--student.lr='fast'", "student.lr", "float"),
        ("--student.shuffle_all=1", "student.shuffle_all", "bool"),
        ("--data.tasks=3", "data.tasks", "tuple"),
        ("--model.pooling='max'", "model.pooling", "Literal"),
        ("--student.fixed_lambda='half'", "student.fixed_lambda", "float"),
    ],
)
def test_wrong_type_names_key_and_expected_type(override: str, key: str, type_word: str) -> None:
    message = _error(None, [override])
    assert f"'{key}'" in message
    assert type_word in message


@pytest.mark.parametrize(("word", "value"), [("true", True), ("False", False), ("TRUE", True), ("True", True)])
def test_a_bool_override_reads_true_and_false_in_any_case(word: str, value: bool) -> None:
    assert load_config(None, [f"--student.shuffle_all={word}"]).student.shuffle_all is value


def test_wrong_type_in_yaml(tmp_path: Path) -> None:
    message = _error(_yaml(tmp_path, "data:\n  max_train_examples: {sst2: lots}\n  max_length: 12.5\n"))
    assert "'data.max_train_examples'" in message
    assert "'data.max_length'" in message


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    assert "'student'" in _error(_yaml(tmp_path, "student: 3\n"))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "colour: red\nstudent:\n  lr: fast\n  layer_decay: 0\nmodel:\n  depth: 3\n")
    message = _error(path, ["--teachers.nope=1", "--student.fixed_lambda=1.5"])
    for key in ("'colour'", "'student.lr'", "'student.layer_decay'", "'model.depth'", "'teachers.nope'"):
        assert key in message, key
    assert "'student.fixed_lambda'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("--student.fixed_lambda=1.5", "student.fixed_lambda"),
        ("--student.fixed_lambda=-0.1", "student.fixed_lambda"),
        ("--student.layer_decay=0", "student.layer_decay"),
        ("--teachers.layer_decay=1.1", "teachers.layer_decay"),
        ("--student.alpha=-1", "student.alpha"),
        ("--student.warmup=1", "student.warmup"),
        ("--teachers.batch_size=0", "teachers.batch_size"),
        ("--data.tasks=[]", "data.tasks"),
    ],
)
def test_invalid_values_are_rejected_naming_the_key(override: str, key: str) -> None:
    assert f"'{key}'" in _error(None, [override])


def test_malformed_override_token() -> None:
    assert "student.lr" in _error(None, ["--student.lr"])


def test_non_mapping_yaml_names_the_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "- sst2\n- rte\n", name="list.yaml")
    assert str(path) in _error(path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "student:\n  lr: [1, 2\n", name="broken.yaml")
    assert str(path) in _error(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert str(path) in _error(path)


# ---------------------------------------------------------------------------------------------------------------------
# Shipped configs


def test_shipped_configs_are_found() -> None:
    assert len(SHIPPED) >= 3, f"expected at least 3 configs in {ROOT / 'configs'}, found {[p.name for p in SHIPPED]}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_parses(path: Path, tmp_path: Path) -> None:
    from pipeline.core.synthetic import write_custom_examples

    # as in a fresh checkout after `python examples/custom-tasks/generate.py` (the samples are not tracked)
    (tmp_path / "configs").mkdir()
    shutil.copy(path, tmp_path / "configs")
    write_custom_examples(tmp_path / "examples" / "custom-tasks")
    cfg = load_config(tmp_path / "configs" / path.name)
    assert cfg.name == path.stem
    assert cfg.data.tasks


def test_teachers_init_from_must_be_a_model_folder_and_allows_zero_epochs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'teachers.init_from': '.*nowhere' is not a model folder saved by"):
        load_config(None, [f"--teachers.init_from={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match=r"'teachers.epochs' must be a finite number > 0, got 0"):
        load_config(None, ["--teachers.epochs=0"])  # without init_from there would be no teacher
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "heads.json").write_text("{}")
    config = tmp_path / "run.yaml"
    config.write_text("teachers:\n  init_from: model\n  epochs: 0\n")  # relative to the config file
    cfg = load_config(config)
    assert cfg.teachers.epochs == 0 and cfg.teachers.init_from == str(tmp_path / "model")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "2.5"])
def test_unfreeze_every_must_be_a_finite_whole_number_of_steps(value: str) -> None:
    with pytest.raises(ConfigError, match=r"'student.unfreeze_every'"):
        load_config(None, [f"--student.unfreeze_every={value}"])


def test_per_task_teacher_settings(tmp_path: Path) -> None:
    """A task's own teacher settings win over the section's for that task alone; task names are canonical."""
    path = _yaml(
        tmp_path, "data:\n  tasks: [sst2, RTE]\nteachers:\n  lr: 5e-5\n  per_task: {RTE: {lr: 2e-5, epochs: 5}}\n"
    )
    cfg = load_config(path, ["--teachers.per_task.sst2.warmup=0"])
    assert set(cfg.teachers.per_task) == {"rte", "sst2"}
    rte, sst2 = cfg.teachers.for_task("rte"), cfg.teachers.for_task("sst2")
    assert (rte.lr, rte.epochs, rte.warmup) == (2e-5, 5.0, 0.1)
    assert (sst2.lr, sst2.epochs, sst2.warmup) == (5e-5, 3.0, 0.0)
    assert rte.per_task == {} and cfg.teachers.for_task("mrpc") == cfg.teachers.for_task("mrpc").for_task("mrpc")
    # the file's RTE and an override's rte are one task: their settings merge, the override's winning
    both = load_config(path, ["--teachers.per_task.rte.lr=1e-4", "--data.max_train_examples={SST-2: 50, sst2: 40}"])
    rte = both.teachers.for_task("rte")
    assert set(both.teachers.per_task) == {"rte"} and (rte.lr, rte.epochs) == (1e-4, 5.0)
    assert both.data.max_train_examples == {"sst2": 40}


def test_task_names_have_one_spelling_in_overrides_and_tuning_settings_too() -> None:
    """A per-task student key names its task as the run does ("STS-B" → "stsb") whether it came from a file, an
    override or a setting merged in later (`override`, as --tune does): else the option would look the task up in
    vain and train as if unset."""
    cfg = load_config(None, ["--student.task_weights={STS-B: 0.6}", "--student.sampling_weights={SST-2: 2.0}"])
    assert cfg.student.task_weights == {"stsb": 0.6} and cfg.student.sampling_weights == {"sst2": 2.0}
    tuned = override(load_config(None), {"student": {"task_weights": {"STS-B": 0.3}, "swap_pairs": ["MRPC"]}}, "t")
    assert tuned.student.task_weights == {"stsb": 0.3} and tuned.student.swap_pairs == ("mrpc",)


def test_per_task_teacher_errors_name_the_task_and_key(tmp_path: Path) -> None:
    message = _error(None, [
        "--data.tasks=[sst2,rte]",
        "--teachers.per_task.rte.lr=-1",
        "--teachers.per_task.rte.seed=3",
        "--teachers.per_task.qqp.epochs=2",
        "--teachers.per_task.sst2.lr=fast",
    ])  # fmt: skip
    assert "'teachers.per_task.rte.lr' must be a finite number > 0, got -1" in message
    assert "unknown config key 'teachers.per_task.rte.seed'" in message
    assert "'teachers.per_task' names 'qqp', which is not in data.tasks" in message
    assert "'teachers.per_task.sst2.lr' expects" in message
    assert "'teachers.lr'" not in message  # the section's own values are fine, and checked once
