"""The variants reproduce-glue compares, the tuning grids, and the configs both make from the seed's config.

Everything here is a pure function of its arguments: no folder is read. A variant is a name in `EVERY`, with its
label in the tables and the student settings it changes; "single" is the teachers themselves. `--tune` grids are
`{key: [values]}`, a setting one `{key: value}` of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

from pipeline.core.config import TEACHER_KEYS, ConfigError, RunConfig, TeacherTaskConfig, override, parse_overrides
from pipeline.core.errors import PipelineError
from stages import STAGES

# Variant name → (label in the tables, student config changes). "single" is the teachers themselves.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "single": ("Single (teachers)", {}),
    "multi": ("Multi (λ = 1, no distillation)", {"fixed_lambda": 1.0}),
    "bam": ("Single→Multi (BAM, annealed)", {}),
    "no-layerwise": ("BAM − layer-wise LRs", {"layer_decay": 1.0}),
    "no-sampling": ("BAM − task sampling (shuffle all)", {"shuffle_all": True}),
    "no-annealing": ("BAM − teacher annealing (λ = 0)", {"fixed_lambda": 0.0}),
}
ABLATIONS = ("no-layerwise", "no-sampling", "no-annealing")
# The paper's other variants, each made from more than one run (selectable with --variants; not run by default):
# Single→Single trains one born-again student per task (the student's settings, on that task alone, from its own
# teacher); Multi→Multi distils the Multi model into a BAM student (teachers.init_from = Multi's model, epochs 0);
# BAM + fine-tuning fine-tunes the BAM student on each task alone (teachers.init_from = BAM's model, lr 1e-5 as in
# the paper) and reports those single-task models.
DERIVED: dict[str, tuple[str, dict[str, Any]]] = {
    "single-single": ("Single→Single (born-again per task)", {}),
    "multi-multi": ("Multi→Multi (Multi teaches)", {}),
    "bam-ft": ("BAM + single-task fine-tuning", {}),
}
PARENT = {"multi-multi": "multi", "bam-ft": "bam"}  # the run whose model the variant starts from
FINE_TUNE_LR = 1e-5
# The multitask options (docs/options.md), each BAM with one option on: run only when named in --variants, and
# shown in a table of their own beside BAM's defaults.
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "round-robin": ("BAM, round-robin task batches", {"mixing": "round-robin"}),
    "summed": ("BAM, task losses summed per step", {"mixing": "summed"}),
    "pcgrad": ("BAM, summed + PCGrad", {"mixing": "pcgrad"}),
    "fgm": ("BAM + FGM (ε 0.1)", {"adversarial": "fgm"}),
    "fgsm": ("BAM + FGSM (ε 0.0015)", {"adversarial": "fgsm", "adv_epsilon": 0.0015}),  # ≈ FGM ε 0.1's norm
    "pgd": ("BAM + PGD (ε 0.1, α 0.05, K 3)", {"adversarial": "pgd"}),
    "supcon": ("BAM + SupCon (weight 0.1)", {"supcon_weight": 0.1}),
    "siamese": ("BAM, siamese pair heads", {"pair_mode": "siamese"}),
    "unfreeze": ("BAM + gradual unfreezing (0.1 epoch)", {"unfreeze_every": 0.1, "unfreeze_unit": "epochs"}),
}
# How the student treats regression (docs/regression.md): BAM and Multi with one change each, run when named.
REGRESSION: dict[str, tuple[str, dict[str, Any]]] = {
    "label-scale": ("BAM, regression error on the label's scale", {"task_loss": "label-scale"}),
    "standardised": ("BAM, standardised regression targets", {"task_loss": "standardised"}),
    "standardised-0.6": (  # STS-B's gradient share between BAM's (0.15) and standardised's (0.5): about 0.27
        "BAM, standardised regression targets, STS-B loss × 0.6",
        {"task_loss": "standardised", "task_weights": {"stsb": 0.6}},
    ),
    "prior": ("BAM, every task's loss ÷ its label prior's", {"task_loss": "prior"}),
    "running": ("BAM, every task's loss ÷ its running mean", {"task_loss": "running"}),
    "stsb-x2": ("BAM, STS-B sampled ×2", {"sampling_weights": {"stsb": 2.0}}),
    "swap-pairs": ("BAM, MRPC and STS-B pairs in both orders", {"swap_pairs": ("mrpc", "stsb")}),
    "mlp-head": ("BAM, MLP regression head (256)", {"regression_hidden": 256}),
    "mean-pool": ("BAM, mean pooling", {"pooling": "mean"}),
    "multi-label-scale": (
        "Multi, regression error on the label's scale",
        {"fixed_lambda": 1.0, "task_loss": "label-scale"},
    ),
    "multi-standardised": (
        "Multi, standardised regression targets",
        {"fixed_lambda": 1.0, "task_loss": "standardised"},
    ),
}
# A smaller student (docs/smaller-student.md): every other layer of the teachers' pretrained encoder, or its bottom
# half, as BAM and as its two baselines (the same small model fine-tuned per task, with the teachers' settings; and
# multitask, λ = 1).
SMALL: dict[str, tuple[str, dict[str, Any]]] = {
    "single-small": ("Single, every other layer", {}),
    "multi-small": ("Multi, every other layer", {"fixed_lambda": 1.0, "layers": "every_other"}),
    "bam-small": ("BAM, student of every other layer", {"layers": "every_other"}),
    "distil-small": (  # no annealing: a student short of its teachers' size learns from their targets to the end
        "Distilled (λ = 0), student of every other layer",
        {"layers": "every_other", "fixed_lambda": 0.0},
    ),
    "single-bottom": ("Single, bottom half of the layers", {}),
    "multi-bottom": ("Multi, bottom half of the layers", {"fixed_lambda": 1.0, "layers": "bottom_half"}),
    "bam-bottom": ("BAM, student of the bottom half of the layers", {"layers": "bottom_half"}),
}
# Variants whose teachers are not the seed's: they report these teachers (single-task models of the small size)
TEACHER_CHANGES = {"single-small": {"layers": "every_other"}, "single-bottom": {"layers": "bottom_half"}}
# BAM from a teacher ensemble: the seed's teachers averaged with those of the other ENSEMBLE_SEEDS (their runs'
# teachers folders; distill.teachers), which must be trained first.
ENSEMBLE = {"bam-ensemble": ("BAM, teachers of seeds 1–3 averaged", {})}
ENSEMBLE_SEEDS = (1, 2, 3)
SMALL |= ENSEMBLE
EVERY = {**VARIANTS, **DERIVED, **OPTIONS, **REGRESSION, **SMALL}
# The tables after Table 1: (title, prefix of its own plots or "", the variants it compares with, its variants).
GROUPS = (
    ("Ablations (each removes one part of BAM)", "", ("bam",), ABLATIONS),
    ("Multitask options (one seed is enough)", "options-", ("bam",), tuple(OPTIONS)),
    ("Regression in the multitask loss (docs/regression.md)", "regression-", ("multi", "bam"), tuple(REGRESSION)),
    ("A smaller student, teacher ensembles (docs/smaller-student.md)", "small-", ("single", "bam"), tuple(SMALL)),
)
SHARED = ("data", "teachers", "distill")  # stages every variant of a seed shares
TUNE_SEED = 1  # the seed every tuning run is made on; the choice holds for every seed
TEACHERS = "teachers"  # what the teachers' tuning is named by (OUT/tuning/teachers.json); not a variant


class ReproduceError(PipelineError, ValueError):
    """A bad --variants, --seeds or --tune value, or an OUT another call holds."""


def parse_variants(text: str | None) -> list[str]:
    """The named variants in table order; none named: the paper's (VARIANTS), without the OPTIONS."""
    if not text:
        return list(VARIANTS)
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in EVERY]
    if unknown or not names:
        raise ReproduceError(f"--variants: unknown {unknown or text!r}; choose from {', '.join(EVERY)}")
    return [v for v in EVERY if v in names]  # table order


def parse_seeds(seeds: int, only: str | None = None) -> list[int]:
    """Seeds 1..`seeds`, or the comma-separated `only` of them (`--only-seeds 2,3`)."""
    if seeds < 1:
        raise ReproduceError(f"--seeds must be >= 1, got {seeds}")
    if only is None:
        return list(range(1, seeds + 1))
    try:
        chosen = sorted({int(s) for s in only.split(",") if s.strip()})
    except ValueError:
        raise ReproduceError(f"--only-seeds: expected comma-separated integers, got {only!r}") from None
    outside = [s for s in chosen if not 1 <= s <= seeds]
    if outside or not chosen:
        raise ReproduceError(f"--only-seeds: {outside or only!r} not among the seeds 1..{seeds} of --seeds {seeds}")
    return chosen


def parse_tune(texts: list[str] | None, cfg: RunConfig) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """`--tune student.KEY=V1,V2,...` and `--tune teachers.KEY=V1,V2,...` (repeatable; several keys make a grid)
    → ({student KEY: [values]}, {teachers KEY: [values]}); every setting is checked as a config override would be."""
    grids: dict[str, dict[str, list[Any]]] = {"student": {}, "teachers": {}}
    for text in texts or []:
        section, name, values = _parse_tune_text(text, grids)
        grids[section][name] = _parse_values(text, section, name, values, cfg)
    for section, grid in grids.items():
        for setting in settings(grid):
            try:
                override(cfg, {section: setting}, f"--tune setting {section} {setting_label(setting)}")
            except ConfigError as err:
                raise ReproduceError(str(err)) from None
    return grids["student"], grids["teachers"]


def _parse_tune_text(text: str, grids: dict[str, dict[str, list[Any]]]) -> tuple[str, str, str]:
    """(section, key, the comma-separated values) of one --tune argument."""
    key, sep, values = (part.strip() for part in text.partition("="))
    section, _, name = key.partition(".")
    known = section == "student" or (section == "teachers" and name in TEACHER_KEYS)
    if not sep or not known or not name or "." in name or not values:
        raise ReproduceError(
            f"--tune {text!r}: expected student.KEY=V1,V2,... (e.g. student.lr=5e-5,1e-4,2e-4) or "
            f"teachers.KEY=V1,V2,... with KEY one of {', '.join(TEACHER_KEYS)}"
        )
    if name == "seed":
        raise ReproduceError(f"--tune {text!r}: {key} is set by --seeds")
    if name in grids[section]:
        raise ReproduceError(f"--tune {text!r}: {key} is given twice")
    return section, name, values


def _parse_values(text: str, section: str, name: str, values: str, cfg: RunConfig) -> list[Any]:
    """The values of one --tune argument, each as the config holds it (an int given for a float key becomes a
    float), so that equal settings match."""
    parsed: list[Any] = []
    for raw in values.split(","):
        value = parse_overrides([f"--value={raw.strip()}"])["value"]
        try:
            value = getattr(getattr(override(cfg, {section: {name: value}}, f"--tune {text!r}"), section), name)
        except ConfigError as err:
            raise ReproduceError(str(err)) from None
        if value in parsed:
            raise ReproduceError(f"--tune {text!r}: the value {value!r} is given twice")
        parsed.append(value)
    return parsed


def settings(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every setting of `grid`, in its order (the last key varies fastest); none for an empty grid."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []


def setting_label(setting: dict[str, Any]) -> str:
    return ",".join(f"{key}={setting[key]}" for key in sorted(setting))  # one name whatever the keys' order


def variant_grid(variant: str, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The part of the student grid `variant` is tuned over: none for the teachers, the variants made of several
    runs and an ensemble (it takes bam's choice: tuning it would need every seed's teachers first); a key the
    variant sets itself (no-layerwise's layer_decay) is not tuned."""
    if reports_teachers(variant) or variant in DERIVED or variant in ENSEMBLE:  # an ensemble: bam's choice
        return {}
    return {key: values for key, values in grid.items() if key not in EVERY[variant][1]}


def grid_of(name: str, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """What `name` (TEACHERS or a variant) is tuned over: the teachers' grid as it is, a variant's part of the
    students' (`variant_grid`)."""
    return grid if name == TEACHERS else variant_grid(name, grid)


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    return dataclasses.replace(
        cfg,
        teachers=dataclasses.replace(cfg.teachers, seed=seed),
        student=dataclasses.replace(cfg.student, seed=seed),
    )


def apply_variant(
    cfg: RunConfig, variant: str, setting: dict[str, Any], parent_model: Path | None, out: Path | None = None
) -> RunConfig:
    """`cfg` with one `setting` of the student grid, then `variant`'s own changes (they win: an ablation keeps what
    it ablates); a variant made from another run starts its teachers from `parent_model`, that run's model; an
    ensemble learns from the other ENSEMBLE_SEEDS' teachers in OUT too."""
    student = dataclasses.replace(dataclasses.replace(cfg.student, **setting), **EVERY[variant][1])
    teachers = dataclasses.replace(cfg.teachers, **TEACHER_CHANGES.get(variant, {}))
    cfg = dataclasses.replace(cfg, student=student, teachers=teachers)
    if variant in ENSEMBLE and out is not None:
        seeds = ensemble_members(cfg.teachers.seed)
        folders = tuple(os.path.abspath(out / "runs" / f"seed-{s}" / "teachers") for s in seeds)
        cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, teachers=folders))
    if variant in PARENT:
        changes = {"epochs": 0.0} if variant == "multi-multi" else {"lr": FINE_TUNE_LR}
        teachers = dataclasses.replace(cfg.teachers, init_from=str(parent_model), per_task={}, **changes)
        cfg = dataclasses.replace(cfg, teachers=teachers)
    return cfg


def ensemble_members(seed: int) -> list[int]:
    """The seeds whose teachers an ensemble run of `seed` averages with its own."""
    return [s for s in ENSEMBLE_SEEDS if s != seed]


def teacher_setting(cfg: RunConfig, setting: dict[str, Any]) -> RunConfig:
    """`cfg` with one setting of the teachers' grid for every task: the grid's keys win over per-task ones."""
    keys = dict.fromkeys(setting)
    per_task = {t: dataclasses.replace(own, **keys) for t, own in cfg.teachers.per_task.items()}
    given = {k: v for k, v in setting.items() if v is not None}
    return dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, per_task=per_task, **given))


def with_teacher_choice(cfg: RunConfig, chosen: dict[str, dict[str, Any]]) -> RunConfig:
    """`cfg` with each task's chosen teacher setting (task → setting) as its `teachers.per_task` entry."""
    per_task = dict(cfg.teachers.per_task)
    for task, setting in chosen.items():
        per_task[task] = dataclasses.replace(per_task.get(task, TeacherTaskConfig()), **setting)
    return dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, per_task=per_task))


def task_config(cfg: RunConfig, task: str) -> RunConfig:
    """`cfg` on one task alone (a Single→Single student)."""
    caps = {t: n for t, n in cfg.data.max_train_examples.items() if t == task}
    per_task = {t: own for t, own in cfg.teachers.per_task.items() if t == task}
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, tasks=(task,), max_train_examples=caps),
        teachers=dataclasses.replace(cfg.teachers, per_task=per_task),
    )


def seed_stages(variant: str) -> tuple[str, ...]:
    """The seed's shared stages (SHARED) a variant's run reads, directly or through its parent's run: a run from
    its own teachers only the data; Single, Single→Single, an ensemble and a student at λ = 1 the teachers too (an
    ensemble makes its own soft targets; the evaluate stage scores a student against the teachers); the others
    the soft targets as well."""
    if variant in PARENT:
        return seed_stages(PARENT[variant])
    if variant in TEACHER_CHANGES:
        return ("data",)
    if variant in ("single", "single-single", *ENSEMBLE) or EVERY[variant][1].get("fixed_lambda") == 1.0:
        return ("data", "teachers")
    return SHARED


def reports_teachers(variant: str) -> bool:
    """Whether the variant's numbers are its teachers' (single-task models), not a student's."""
    return variant in ("single", "bam-ft", *TEACHER_CHANGES)


def uses_teachers(cfg: RunConfig, variant: str) -> bool:
    """Whether the numbers of `variant` (its config `cfg`) depend on the seed's teachers: they are the teachers'
    (Single, BAM-ft), or a student's that learns from them (all but Multi)."""
    return reports_teachers(variant) or "distill" in STAGES["student"].needs(cfg)
