"""Value checks of a config that types alone cannot express; every problem is reported at once, naming its key.

Pure: nothing here reads a data file (a custom task's labels are learnt by the data stage).
"""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.custom import file_format
from pipeline.core.tasks import METRICS, get_glue_task

if TYPE_CHECKING:
    from pipeline.core.config import CustomTaskConfig, RunConfig, StudentConfig


def task_name(name: str, custom: dict[str, CustomTaskConfig]) -> str:
    """A task's one spelling: a custom task's own name, exactly; a GLUE task's registry key ("SST-2" → "sst2")."""
    return name if name in custom else get_glue_task(name).name


def validate(cfg: RunConfig) -> list[str]:
    """Value checks that types alone cannot express; returns every problem found."""
    problems = _validate_task_names(cfg)
    for name, task in cfg.data.custom_tasks.items():
        problems += _validate_custom_task(name, task)
    if cfg.data.max_length < 8:
        problems.append(f"'data.max_length' must be >= 8, got {cfg.data.max_length}")
    sections = [("teachers", cfg.teachers, None), ("student", cfg.student, None)]
    for task, own in cfg.teachers.per_task.items():  # a task's own keys; the section's are checked once, above
        sections.append((f"teachers.per_task.{task}", cfg.teachers.for_task(task), set(own.given())))
    for section, sub, keys in sections:
        as_is = section.startswith("teachers") and cfg.teachers.init_from is not None  # epochs 0: the model as it is
        problems += [problem for key, problem in _validate_training(section, sub, as_is) if keys is None or key in keys]
    init_from = cfg.teachers.init_from
    if init_from is not None and not (Path(init_from) / "heads.json").is_file():
        problems.append(
            f"'teachers.init_from': '{init_from}' is not a model folder saved by this pipeline (no heads.json); "
            "expected e.g. a run's student/model"
        )
    lam = cfg.student.fixed_lambda
    if lam is not None and not 0 <= lam <= 1:
        problems.append(f"'student.fixed_lambda' must be null or in [0, 1], got {lam}")
    if cfg.student.task_loss == "standardised" and cfg.model.regression_head == "sigmoid":
        problems.append(
            "'student.task_loss' standardised needs 'model.regression_head' linear (a sigmoid bounds the "
            "output to [0, 1], standardised values are not)"
        )
    if cfg.student.alpha < 0:
        problems.append(f"'student.alpha' must be >= 0, got {cfg.student.alpha}")
    return problems + _validate_options(cfg.student)


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


def _validate_training(section: str, sub: Any, epochs_may_be_0: bool) -> list[tuple[str, str]]:
    """(key, problem) of a teachers' or student section's training settings."""
    found = []
    for key in ("epochs", "lr", "batch_size", "grad_accum", "eval_batch_size"):
        value = getattr(sub, key)
        if key == "epochs" and epochs_may_be_0 and value == 0:
            continue
        if not 0 < value < float("inf"):
            found.append((key, f"'{section}.{key}' must be a finite number > 0, got {value}"))
    if not 0 < sub.layer_decay <= 1:
        found.append(("layer_decay", f"'{section}.layer_decay' must be in (0, 1], got {sub.layer_decay}"))
    if not 0 <= sub.warmup < 1:
        found.append(("warmup", f"'{section}.warmup' must be in [0, 1), got {sub.warmup}"))
    if sub.group_by_length < 0:
        found.append(
            ("group_by_length", f"'{section}.group_by_length' must be >= 0 (0 = off), got {sub.group_by_length}")
        )
    return found


def _validate_options(s: StudentConfig) -> list[str]:
    """Value checks of the student's multitask options, and the combinations that are refused."""
    problems = []
    hints = typing.get_type_hints(type(s))
    # a config built in code skips the type check
    for key in ("mixing", "adversarial", "pair_mode", "unfreeze_unit", "task_loss", "pooling"):
        allowed = typing.get_args(hints[key])
        if getattr(s, key) not in allowed:
            problems.append(f"'student.{key}' must be one of {'/'.join(allowed)}, got {getattr(s, key)!r}")
    positive = ["supcon_temperature"] + (["adv_epsilon", "adv_alpha"] if s.adversarial != "none" else [])
    for key in positive:
        if not 0 < getattr(s, key) < math.inf:
            problems.append(f"'student.{key}' must be a finite number > 0, got {getattr(s, key)}")
    for key in ("supcon_weight", "unfreeze_every"):
        if not 0 <= getattr(s, key) < math.inf:
            problems.append(f"'student.{key}' must be a finite number >= 0 (0 = off), got {getattr(s, key)}")
    for task, weight in s.sampling_weights.items():
        if not 0 < weight < math.inf:
            problems.append(f"'student.sampling_weights.{task}' must be a finite number > 0, got {weight}")
    if s.regression_hidden < 0:
        problems.append(f"'student.regression_hidden' must be >= 0 (0 = a linear head), got {s.regression_hidden}")
    if s.adv_steps < 1:
        problems.append(f"'student.adv_steps' must be >= 1, got {s.adv_steps}")
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
