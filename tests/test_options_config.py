"""The multitask options (docs/options.md) as config: every new student key is one, the digests they must leave
alone at their defaults, invalid values named; and each family end to end on the smoke config (train, evaluate,
report, predict)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SMOKE, run_smoke
from safetensors.torch import load_file

from pipeline.cli import main
from pipeline.core.config import OPTIONS, ConfigError, RunConfig, StudentConfig, load_config, validate
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY

GLUE_SMALL = ROOT / "configs" / "glue-small.yaml"
TASKS = ["sst2", "mrpc", "stsb", "rte"]
# The student keys that existed before the options: every other key must be in OPTIONS (the report names it if set).
BAM_KEYS = {
    "epochs", "batch_size", "lr", "layer_decay", "warmup", "weight_decay", "max_grad_norm", "grad_accum", "alpha",
    "shuffle_all", "fixed_lambda", "group_by_length", "eval_batch_size", "log_every", "checkpoint_every",
    "keep_checkpoints", "seed", "eval_every", "select",
}  # fmt: skip
ON = {  # a non-default value of every option key
    "mixing": "summed",
    "adversarial": "fgm",
    "adv_epsilon": 0.5,
    "adv_alpha": 0.1,
    "adv_steps": 2,
    "supcon_weight": 0.1,
    "supcon_temperature": 0.2,
    "pair_mode": "siamese",
    "unfreeze_every": 10.0,
    "unfreeze_unit": "epochs",
    "task_loss": "standardised",
    "task_weights": {"stsb": 0.5},
    "sampling_weights": {"stsb": 2.0},
    "swap_pairs": ("mrpc", "stsb"),
    "pooling": "mean",
    "regression_hidden": 8,
    "model": "tiny-random",
    "layers": "every_other",
}


# ---------------------------------------------------------------------------------------------------------------------
# Digests and validation


def _keys(d: dict) -> set[str]:
    return {k for k, v in d.items()} | {k for v in d.values() if isinstance(v, dict) for k in _keys(v)}


def test_every_new_student_key_is_an_option() -> None:
    fields = {f.name for f in dataclasses.fields(StudentConfig)}
    assert set(OPTIONS) == fields - BAM_KEYS == set(ON)
    defaults = StudentConfig()
    assert all(getattr(defaults, k) != v for k, v in ON.items())


@pytest.mark.parametrize("path", [GLUE_SMALL, SMOKE], ids=["glue-small", "smoke"])
def test_default_configs_keep_the_options_in_the_students_digest_only(path: Path) -> None:
    """At their defaults the options' keys are in the student's digest, but for the keys no option then reads."""
    cfg = load_config(path)
    for name, stage in REGISTRY.items():
        read = {"mixing", "adversarial", "supcon_weight", "pair_mode", "unfreeze_every", *REGRESSION_KEYS}
        read = read if name == "student" else set()
        assert set(stage.config_subset(cfg).get("student", {})) & set(OPTIONS) == read, name


REGRESSION_KEYS = ("task_loss", "sampling_weights", "swap_pairs", "pooling", "regression_hidden")  # always read


# The option a key is read under: alone, it changes no output, so it changes no digest.
NEEDS = {
    "adv_epsilon": {"adversarial": "fgm"},
    "adv_alpha": {"adversarial": "pgd"},
    "adv_steps": {"adversarial": "pgd"},
    "supcon_temperature": {"supcon_weight": 0.1},
    "unfreeze_unit": {"unfreeze_every": 10.0},
}


def _overrides(values: dict) -> list[str]:
    return [f"--student.{k}={v!r}" for k, v in values.items()]


@pytest.mark.parametrize("key", sorted(ON))
def test_an_option_changes_only_the_students_config_subset(key: str) -> None:
    base = load_config(SMOKE, _overrides(NEEDS.get(key, {})))
    cfg = load_config(SMOKE, _overrides({**NEEDS.get(key, {}), key: ON[key]}))
    for name, stage in REGISTRY.items():
        assert (stage.config_subset(cfg) == stage.config_subset(base)) == (name != "student"), name
    expected = list(ON[key]) if isinstance(ON[key], tuple) else ON[key]  # the digest's JSON form
    assert REGISTRY["student"].config_subset(cfg)["student"][key] == expected
    if key in NEEDS:  # without the option that reads it, the key is left out
        alone = load_config(SMOKE, _overrides({key: ON[key]}))
        assert REGISTRY["student"].config_subset(alone) == REGISTRY["student"].config_subset(load_config(SMOKE))


def test_a_changed_default_does_not_pass_a_run_of_the_old_default_for_a_new_one() -> None:
    """FGM at ε 1 (the default when the option was added) and at today's default have different digests."""
    subset = REGISTRY["student"].config_subset
    old = subset(load_config(SMOKE, ["--student.adversarial='fgm'", "--student.adv_epsilon=1.0"]))
    now = subset(load_config(SMOKE, ["--student.adversarial='fgm'"]))
    assert old != now and now["student"]["adv_epsilon"] == StudentConfig().adv_epsilon != 1.0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--student.mixing='sum'"], "student.mixing"),
        (["--student.adversarial='fgx'"], "student.adversarial"),
        (["--student.adversarial='pgd'", "--student.adv_epsilon=0"], "student.adv_epsilon"),
        (["--student.adversarial='pgd'", "--student.adv_alpha=-1"], "student.adv_alpha"),
        (["--student.adv_steps=0"], "student.adv_steps"),
        (["--student.supcon_weight=-0.1"], "student.supcon_weight"),
        (["--student.supcon_temperature=0"], "student.supcon_temperature"),
        (["--student.unfreeze_every=-1"], "student.unfreeze_every"),
        (["--student.unfreeze_every=2.5"], "student.unfreeze_every"),  # steps: a whole number
        (["--student.mixing='summed'", "--student.shuffle_all=True"], "student.shuffle_all"),
        (["--student.mixing='pcgrad'", "--student.adversarial='fgm'"], "student.adversarial"),
    ],
)
def test_invalid_options_are_rejected_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, overrides)


def test_validate_names_the_choices_of_a_config_built_in_code() -> None:
    cfg = RunConfig(student=StudentConfig(adversarial="fgx", pair_mode="bi"))  # type: ignore[arg-type]
    problems = validate(cfg)
    assert "'student.adversarial' must be one of none/fgm/fgsm/pgd, got 'fgx'" in problems
    assert "'student.pair_mode' must be one of cross/siamese, got 'bi'" in problems
    assert not validate(RunConfig(student=StudentConfig(unfreeze_every=0.5, unfreeze_unit="epochs")))


# ---------------------------------------------------------------------------------------------------------------------
# End to end: each option family trains, and evaluate, report and predict work with it

FAMILIES = {  # every option on its own, then all that combine at once
    "round-robin": ["--student.mixing='round-robin'"],
    "summed": ["--student.mixing='summed'"],
    "pcgrad": ["--student.mixing='pcgrad'"],
    "fgm": ["--student.adversarial='fgm'"],
    "fgsm": ["--student.adversarial='fgsm'", "--student.adv_epsilon=0.01"],
    "pgd": ["--student.adversarial='pgd'", "--student.adv_steps=2"],
    "supcon": ["--student.supcon_weight=0.2"],
    "siamese": ["--student.pair_mode='siamese'"],
    "unfreeze": ["--student.unfreeze_every=30.0"],
    "standardised": ["--student.task_loss='standardised'"],
    "label-scale": ["--student.task_loss='label-scale'"],
    "sampling": ["--student.sampling_weights={'stsb': 3.0}"],
    "swap": ["--student.swap_pairs=['mrpc', 'stsb']"],
    "heads": ["--student.regression_hidden=8", "--student.pooling='mean'"],
    "combined": [
        "--student.mixing='summed'", "--student.adversarial='fgm'", "--student.supcon_weight=0.2",
        "--student.pair_mode='siamese'", "--student.unfreeze_every=5.0",
    ],
}  # fmt: skip
SHORT = ["--student.epochs=2"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_student_trains_and_is_used_with_each_option(smoke_copy: Path, family: str, capsys) -> None:
    overrides = [*SHORT, *FAMILIES[family]]
    before = {
        s: json.loads((smoke_copy / "manifests" / f"{s}.json").read_text()) for s in ("data", "teachers", "distill")
    }
    assert run_smoke(smoke_copy, *overrides) == ["student", "evaluate", "report"]
    cfg = load_config(SMOKE, overrides)
    for stage, manifest in before.items():  # the shared stages stay done, untouched
        assert stage_status(REGISTRY, stage, cfg, smoke_copy)[0] == "done"
        assert json.loads((smoke_copy / "manifests" / f"{stage}.json").read_text()) == manifest
    summary = json.loads((smoke_copy / "student" / "summary.json").read_text())
    counts = summary["examples_per_task"]
    assert sum(counts.values()) == summary["total_steps"] * summary["batch_size"]
    if family in ("round-robin", "summed", "pcgrad", "combined"):
        assert len(set(counts.values())) == 1  # every task equally often
    log = [json.loads(line) for line in (smoke_copy / "student" / "log.jsonl").read_text().splitlines()]
    assert log[-2]["examples_seen"] == counts and all(math.isfinite(v) for x in log[:-1] for v in x["loss"].values())
    assert all(x["grad_norm"].keys() == set(TASKS) for x in log[:-1])  # each task's gradient at the heads' input
    assert all(any(x["grad_norm"][t] > 0 for x in log[:-1]) for t in TASKS)
    if family in ("fgm", "fgsm", "pgd", "combined"):  # the loss at the adversarial embeddings, of the same examples
        assert all(x["adv_loss"].keys() == x["loss"].keys() for x in log[:-1])
        assert all(math.isfinite(v) and v != x["loss"][t] for x in log[:-1] for t, v in x["adv_loss"].items())
    else:
        assert not any("adv_loss" in x for x in log)
    # the saved model, reloaded by `evaluate`, scores what the model in memory scored
    metrics = json.loads((smoke_copy / "metrics.json").read_text())
    for task in TASKS:
        assert metrics["tasks"][task]["student"] == summary["dev"][task]
    key, value = FAMILIES[family][0][len("--student.") :].split("=")
    assert f"{key} {value.strip(chr(39))}" in (smoke_copy / "report.md").read_text()
    model = str(smoke_copy / "student" / "model")
    tsv = smoke_copy / "data" / "synthetic-glue" / "STS-B" / "dev.tsv"
    assert main(["predict", "--model", model, "--task", "stsb", "--input", str(tsv)]) == 0
    scores = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(scores) == 48 and all(math.isfinite(s) for s in scores)
    if family in ("siamese", "combined"):
        assert json.loads((smoke_copy / "student" / "model" / "heads.json").read_text())["pair_mode"] == "siamese"
        assert "siamese bi-encoder" in (smoke_copy / "student" / "model" / "README.md").read_text()
        teacher = json.loads((smoke_copy / "teachers" / "mrpc" / "model" / "heads.json").read_text())
        assert teacher["pair_mode"] == "cross"  # teachers stay cross-encoders
    if family == "unfreeze":  # 80 steps, a depth every 30: layer 0 (depth 3) and the embeddings (4) never trained
        initial = load_file(str(smoke_copy / "data" / "tiny-random" / "model.safetensors"))
        trained = load_file(str(smoke_copy / "student" / "model" / "model.safetensors"))
        assert summary["total_steps"] == 80
        for name, value in trained.items():
            frozen = name.startswith(("embeddings.", "encoder.layer.0."))
            assert torch.equal(value, initial[name]) == frozen, name
