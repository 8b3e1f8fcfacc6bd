"""Value checks of a config that types alone cannot express; every problem is reported at once, naming its key.

Pure: nothing here reads a data file (a custom task's labels are learnt by the data stage).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.custom import file_format
from pipeline.core.tasks import METRICS, get_glue_task

if TYPE_CHECKING:
    from pipeline.core.config import CustomTaskConfig, RunConfig, StudentConfig


def task_name(name: str, custom: dict[str, CustomTaskConfig]) -> str:
    """A task's one spelling: a custom task's own name, exactly; a GLUE task's registry key ("SST-2" → "sst2")."""
    return name if name in custom else get_glue_task(name).name


Rule = tuple[Callable[[Any], bool], str]  # (is the value allowed, what is allowed: "… must be <this>, got …")


def _at_least(low: int, note: str = "") -> Rule:
    return (lambda v: low <= v < math.inf, f"an integer >= {low}{note}")


def _finite(test: Callable[[float], bool], allowed: str) -> Rule:
    return (lambda v: math.isfinite(v) and test(v), allowed)


SEED: Rule = (lambda v: 0 <= v < 2**32, f"an integer in [0, {2**32 - 1}] (NumPy's seed range)")
POSITIVE = _finite(lambda v: v > 0, "a finite number > 0")
FRACTION = _finite(lambda v: 0 <= v < 1, "in [0, 1)")

# The settings of a teachers' or the student section; a teacher's per-task settings get the same ranges.
TRAINING: dict[str, Rule] = {
    "epochs": POSITIVE,  # teachers: 0 too with teachers.init_from (the model as it is)
    "batch_size": _at_least(1),
    "lr": POSITIVE,
    "layer_decay": _finite(lambda v: 0 < v <= 1, "in (0, 1]"),
    "warmup": FRACTION,
    "weight_decay": _finite(lambda v: v >= 0, "a finite number >= 0"),
    "max_grad_norm": _finite(lambda v: v >= 0, "a finite number >= 0 (0 = no clipping)"),
    "grad_accum": _at_least(1),
    "group_by_length": _at_least(0, " (0 = off)"),
    "eval_batch_size": _at_least(1),
    "eval_every": _at_least(0, " (0 = only at the end)"),
    "checkpoint_every": _at_least(0, " (0 = none)"),
    "keep_checkpoints": _at_least(0, " (0 = all)"),  # checkpoint.save_checkpoint prunes only when > 0
    "seed": SEED,
}

# The allowed range of every numeric key, by its dotted name; `.*` is each entry of a mapping of tasks. A numeric
# key without a rule here fails tests/test_config_values.py.
RANGES: dict[str, Rule] = {
    "data.max_length": _at_least(8),  # and at most the model's position embeddings: _model_fits, check_model_limits
    "data.max_train_examples.*": _at_least(1, " (the number of training rows kept)"),
    "data.seed": SEED,
    "model.dropout": FRACTION,
    "model.tiny_hidden_size": _at_least(1),
    "model.tiny_layers": _at_least(1),
    "model.tiny_heads": _at_least(1),
    **{f"teachers.{key}": rule for key, rule in TRAINING.items()},
    **{f"student.{key}": rule for key, rule in TRAINING.items()},
    "student.alpha": _finite(lambda v: v >= 0, "a finite number >= 0"),
    "student.fixed_lambda": _finite(lambda v: 0 <= v <= 1, "null or in [0, 1]"),
    "student.log_every": _at_least(1),
    "student.adv_epsilon": POSITIVE,  # only with an adversarial loss
    "student.adv_alpha": POSITIVE,  # only with an adversarial loss
    "student.adv_steps": _at_least(1),
    "student.supcon_weight": _finite(lambda v: v >= 0, "a finite number >= 0 (0 = off)"),
    "student.supcon_temperature": POSITIVE,
    "student.unfreeze_every": _finite(lambda v: v >= 0, "a finite number >= 0 (0 = off)"),
    "student.sampling_weights.*": POSITIVE,
    "student.task_weights.*": POSITIVE,
    "student.regression_hidden": _at_least(0, " (0 = a linear head)"),
}

# build_tiny_random's max_position_embeddings: the longest input of model.name_or_path tiny-random.
TINY_RANDOM_POSITIONS = 512


def validate(cfg: RunConfig) -> list[str]:
    """Value checks that types alone cannot express; returns every problem found."""
    problems = _validate_task_names(cfg)
    for name, task in cfg.data.custom_tasks.items():
        problems += _validate_custom_task(name, task)
    problems += _out_of_range(cfg) + _model_fits(cfg) + _batches_split(cfg)
    init_from = cfg.teachers.init_from
    if init_from is not None and not (Path(init_from) / "heads.json").is_file():
        problems.append(
            f"'teachers.init_from': '{init_from}' is not a model folder saved by this pipeline (no heads.json); "
            "expected e.g. a run's student/model"
        )
    if cfg.student.task_loss in ("standardised", "prior") and cfg.model.regression_head == "sigmoid":
        problems.append(
            f"'student.task_loss' {cfg.student.task_loss} needs 'model.regression_head' linear (a sigmoid bounds the "
            "output to [0, 1], standardised values are not)"
        )
    problems += _layers_problems(cfg)
    for section in ("teachers", "student"):
        if getattr(cfg, section).select == "best" and not getattr(cfg, section).eval_every:
            problems.append(
                f"'{section}.select' best needs '{section}.eval_every' > 0 (the steps between dev evaluations "
                "to choose among); with eval_every 0 only the last weights are evaluated"
            )
    return problems + _validate_options(cfg.student)


ALL, EVERY_OTHER, BOTTOM_HALF = "all", "every_other", "bottom_half"  # student.layers / teachers.layers (shrink.py)


def kept_layers(layers: str | Sequence[int], depth: int | None, key: str = "student.layers") -> list[int]:
    """The indices (0 = the bottom layer) `layers` keeps of an encoder of `depth` layers: all of them; every other
    one counted from the top, so the top layer, whose outputs the pooler was trained on, stays (6 → 1, 3, 5); the
    bottom half, one unbroken stack of as many layers as every other one keeps (6 → 0, 1, 2; 5 → 0, 1, 2); or the
    explicit list. An index out of range or out of order is a ValueError naming `key`; with `depth` None (not known
    yet) only a list is checked, for everything but its range."""
    if layers in (ALL, EVERY_OTHER, BOTTOM_HALF):
        if depth is None:
            return []
        if layers == BOTTOM_HALF:
            return list(range((depth + 1) // 2))
        return list(range(depth)) if layers == ALL else list(range(depth - 1, -1, -2))[::-1]
    indices = list(layers)
    top = math.inf if depth is None else depth
    if not indices or any(not 0 <= i < top for i in indices) or indices != sorted(set(indices)):
        which = "" if depth is None else f" of the {depth}-layer encoder (0 to {depth - 1})"
        raise ValueError(
            f"'{key}' {indices}: expected layer indices{which}, from 0 (the bottom layer), at least one, each "
            "once, in increasing order"
        )
    return indices


def _layers_problems(cfg: RunConfig) -> list[str]:
    """`student.layers` and `teachers.layers` as lists: indices from 0, each once, in order; against tiny-random's
    depth too (a real model's depth is checked by model_limits.check_model_limits, which reads its config)."""
    problems = []
    if cfg.teachers.layers != "all" and cfg.teachers.init_from is not None:
        problems.append("'teachers.layers' applies to the pretrained model.name_or_path, not to teachers.init_from")
    for section, model in (("student", cfg.student.model), ("teachers", None)):
        layers = getattr(cfg, section).layers
        if isinstance(layers, str):
            continue
        tiny = (model or cfg.model.name_or_path) == "tiny-random"
        try:
            kept_layers(layers, cfg.model.tiny_layers if tiny else None, f"{section}.layers")
        except ValueError as err:
            problems.append(str(err))
    return problems


def _settings(cfg: RunConfig) -> Iterator[tuple[str, str, Any]]:
    """(RANGES key, the key as messages name it, value) of every setting given; None (= the default's meaning, or
    the section's) is left out. A teacher's per-task settings are checked against the `teachers.` ranges."""
    sections: dict[str, Any] = {name: getattr(cfg, name) for name in ("data", "model", "teachers", "student")}
    sections |= {f"teachers.per_task.{task}": own for task, own in cfg.teachers.per_task.items()}
    for name, section in sections.items():
        rules = "teachers" if name.startswith("teachers") else name
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, dict):  # a mapping of tasks: one rule for every entry
                yield from ((f"{rules}.{f.name}.*", f"{name}.{f.name}.{k}", v) for k, v in value.items())
            elif value is not None:
                yield f"{rules}.{f.name}", f"{name}.{f.name}", value


def _out_of_range(cfg: RunConfig) -> list[str]:
    """Every numeric value outside its RANGES rule, naming the key, the value and what is allowed."""
    problems = []
    for rule, key, value in _settings(cfg):
        if rule not in RANGES or _exempt(cfg, rule, value):
            continue
        allowed, wanted = RANGES[rule]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)  # a config built in code: any type
        if not (number and allowed(value)):
            problems.append(f"'{key}' must be {wanted}, got {value}")
    return problems


def _exempt(cfg: RunConfig, rule: str, value: Any) -> bool:
    """The ranges that do not apply to this config."""
    if rule == "teachers.epochs":  # epochs 0: the init_from model is the teacher as it is
        return value == 0 and cfg.teachers.init_from is not None
    return rule in ("student.adv_epsilon", "student.adv_alpha") and cfg.student.adversarial == "none"


def _model_fits(cfg: RunConfig) -> list[str]:
    """The tiny-random model can be built (its heads divide its width) and holds data.max_length tokens; a real
    model's limits are read from its config.json by model_limits.check_model_limits."""
    m, problems = cfg.model, []
    if m.tiny_hidden_size >= 1 and m.tiny_heads >= 1 and m.tiny_hidden_size % m.tiny_heads:
        problems.append(
            f"'model.tiny_heads' {m.tiny_heads} must divide 'model.tiny_hidden_size' {m.tiny_hidden_size} "
            "(each attention head gets an equal share of the width)"
        )
    if m.name_or_path == "tiny-random" and cfg.data.max_length > TINY_RANDOM_POSITIONS:
        problems.append(too_long(cfg.data.max_length, TINY_RANDOM_POSITIONS, "model.name_or_path", m.name_or_path))
    if cfg.student.model == "tiny-random" and m.name_or_path != "tiny-random":
        problems.append(
            "'student.model' tiny-random: the data stage builds that model only for teachers of model.name_or_path "
            "tiny-random; name a model folder or a Hub name"
        )
    return problems


def too_long(max_length: int, positions: int, key: str, model: str) -> str:
    """The problem of a data.max_length beyond the position embeddings of the model `key` names."""
    return f"'data.max_length' {max_length} is more than the model's {positions} position embeddings ({key} '{model}')"


def _batches_split(cfg: RunConfig) -> list[str]:
    """Each optimizer step splits the global batch into grad_accum equal parts (and those across the processes,
    checked at training: the process count is not part of the config)."""
    sections = [("teachers", cfg.teachers, "batch_size"), ("student", cfg.student, "batch_size")]
    for task, own in cfg.teachers.per_task.items():
        if own.batch_size is not None or own.grad_accum is not None:
            key = "batch_size" if own.batch_size is not None else "grad_accum"
            sections.append((f"teachers.per_task.{task}", cfg.teachers.for_task(task), key))
    problems = []
    for name, sub, key in sections:
        size, accum = sub.batch_size, sub.grad_accum
        if size >= 1 and accum >= 1 and size % accum:
            problems.append(
                f"'{name}.{key}': batch_size {size} must be a multiple of grad_accum {accum} "
                "(each optimizer step splits the batch into grad_accum equal parts)"
            )
    return problems


def _validate_task_names(cfg: RunConfig) -> list[str]:
    """`data.tasks` names known tasks, and the per-task settings name tasks of `data.tasks`."""
    problems = [] if cfg.data.tasks else ["'data.tasks' is empty: name at least one task"]
    custom, known = cfg.data.custom_tasks, set()
    for name in cfg.data.tasks:
        try:
            known.add(task_name(name, custom))
        except ValueError as err:
            problems.append(f"'data.tasks': {err}; or declare it under data.custom_tasks")
    for key, names in (
        ("data.max_train_examples", cfg.data.max_train_examples),
        ("teachers.per_task", cfg.teachers.per_task),
        ("student.sampling_weights", cfg.student.sampling_weights),
        ("student.task_weights", cfg.student.task_weights),
        ("student.swap_pairs", cfg.student.swap_pairs),
    ):
        for name in names:
            try:
                canonical = task_name(name, custom)
            except ValueError as err:
                problems.append(f"'{key}': {err}")
                continue
            if canonical not in known:
                problems.append(f"'{key}' names '{name}', which is not in data.tasks")
    return problems


def _validate_options(s: StudentConfig) -> list[str]:
    """Value checks of the student's multitask options, and the combinations that are refused."""
    problems = []
    hints = typing.get_type_hints(type(s))
    # a config built in code skips the type check
    for key in ("mixing", "adversarial", "pair_mode", "unfreeze_unit", "task_loss", "pooling"):
        allowed = typing.get_args(hints[key])
        if getattr(s, key) not in allowed:
            problems.append(f"'student.{key}' must be one of {'/'.join(allowed)}, got {getattr(s, key)!r}")
    finite = math.isfinite(s.unfreeze_every)  # NaN / inf: reported above
    if s.unfreeze_unit == "steps" and finite and s.unfreeze_every != int(s.unfreeze_every):
        problems.append(f"'student.unfreeze_every' counts steps (unfreeze_unit: steps): whole, got {s.unfreeze_every}")
    if s.sampling_weights and (s.mixing != "mixed" or s.shuffle_all):
        problems.append(
            "'student.sampling_weights' weights BAM's task sampling: only with 'student.mixing' mixed "
            "and without 'student.shuffle_all'"
        )
    if s.shuffle_all and s.mixing != "mixed":
        problems.append(f"'student.shuffle_all' shuffles mixed minibatches; no use with 'student.mixing' {s.mixing}")
    if s.mixing == "pcgrad" and s.adversarial != "none":
        problems.append(
            "'student.adversarial' cannot be combined with 'student.mixing' pcgrad: PCGrad projects each task's "
            "gradient, and the adversarial step would need one per task too"
        )
    return problems


def _validate_custom_task(name: str, task: CustomTaskConfig) -> list[str]:
    """Value checks of one `data.custom_tasks` entry; returns every problem found."""
    key = f"data.custom_tasks.{name}"
    problems = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        problems.append(f"'{key}': a task name is letters, digits, '_' and '-' (it names folders and model heads)")
    try:
        problems.append(f"'{key}': the name is the GLUE task '{get_glue_task(name).name}'; choose another")
    except ValueError:
        pass  # not a GLUE name: good
    for split in ("train", "dev"):
        if not getattr(task, split):
            problems.append(f"'{key}.{split}' is required: a file (or, with hub, a split name)")
    if task.hub is None:
        for split in ("train", "dev", "test"):
            location = getattr(task, split)
            if location and file_format(location, task.format) is None:
                problems.append(f"'{key}.{split}': no format for '{location}'; name it: format: csv, tsv or jsonl")
    allowed = METRICS[task.kind]
    if not set(task.metrics) <= set(allowed) or len(set(task.metrics)) != len(task.metrics):
        problems.append(f"'{key}.metrics': a {task.kind} task reports some of {list(allowed)}, each once")
    return problems + _validate_columns(key, task) + _validate_targets(key, task)


def _validate_columns(key: str, task: CustomTaskConfig) -> list[str]:
    """The text, label and declared columns of a custom task."""
    problems = []
    if not 1 <= len(task.text) <= 2:
        problems.append(f"'{key}.text' names one text column or two (a sentence pair), got {list(task.text)}")
    if task.label in task.text:
        problems.append(f"'{key}.label': column {task.label!r} is also a text column")
    if task.columns is not None:
        missing = [c for c in (*task.text, task.label) if c not in task.columns]
        if missing:
            problems.append(f"'{key}.columns' lacks the text and label column(s) {missing}")
        if len(set(task.columns)) != len(task.columns):
            problems.append(f"'{key}.columns' names a column twice: {list(task.columns)}")
    return problems


def _validate_targets(key: str, task: CustomTaskConfig) -> list[str]:
    """A classification task's declared labels, or a regression task's declared range."""
    problems = []
    if task.kind == "classification":
        if task.range is not None:
            problems.append(f"'{key}.range' is for regression (kind: regression); a classification task has labels")
        labels = [str(label).strip() for label in task.labels or ()]
        if task.labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels) or "" in labels):
            problems.append(f"'{key}.labels' must list two classes or more, each once, got {list(task.labels)}")
        return problems
    if task.labels is not None:
        problems.append(f"'{key}.labels' is for classification; a regression task has a range")
    bounds = task.range
    if bounds is not None and (len(bounds) != 2 or not all(map(math.isfinite, bounds)) or bounds[0] >= bounds[1]):
        problems.append(f"'{key}.range' must be [low, high] with low < high, got {list(task.range)}")
    return problems
