"""The task registry: one frozen `TaskSpec` per GLUE task, as data, and a run's own task specs on disk.

Everything that differs between tasks (files, columns, labels, metrics) lives in a `TaskSpec`; code that must behave
differently for classification and regression branches on `TaskSpec.kind`, never on the task name. The nine GLUE
tasks are `TASKS`. A run's tasks, GLUE and custom (whose labels or range the data stage learns from their training
files, `pipeline/core/custom.py`), are the data stage's output `data/tasks.json`: every later stage, `predict` and
`reproduce-glue` read them from there (`read_task_specs`). Nothing here is global state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.core.store import StoreError, read_json, write_json


@dataclass(frozen=True)
class TaskSpec:
    """What the pipeline needs to know about one task.

    Attributes:
        name: Registry key, e.g. "sst2".
        glue_dir: Folder name in the GLUE TSV layout, e.g. "SST-2"; None for a custom task.
        hub_config: Config name of the Hub dataset `nyu-mll/glue`; None for a custom task.
        text_columns: TSV column names of the one or two text fields (first is `text_a`).
        label_column: TSV column name of the label.
        labels: Class names in class-index order (GLUE: the Hugging Face `glue` order); None = regression.
        tsv_labels: How each class is written in the TSV, index-aligned with `labels`; None = regression.
        label_range: Regression only: the closed interval of valid scores; None for classification.
        metrics: Metric names reported for the task (see `pipeline.core.metrics`).
        main_metric: The task's score (GLUE: the paper's per-task number); one of `metrics`.
        dev_splits: Names of the evaluated splits ("dev", MNLI's matched/mismatched pair, or a custom task's "dev"
            and "test"); the first gives the task's score.
        hub_text_columns: Hub column names of the text fields, aligned with `text_columns`; None = same names.
        tsv_header: Column names of a TSV without a header line (CoLA); None = the first line is the header.
    """

    name: str
    glue_dir: str | None
    hub_config: str | None
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    tsv_labels: tuple[str, ...] | None
    label_range: tuple[float, float] | None
    metrics: tuple[str, ...]
    main_metric: str
    dev_splits: tuple[str, ...]
    hub_text_columns: tuple[str, ...] | None = None
    tsv_header: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.labels is None:
            if self.tsv_labels is not None or self.label_range is None:
                raise ValueError(f"task {self.name!r}: regression needs label_range and no tsv_labels")
        elif self.tsv_labels is None or len(self.tsv_labels) != len(self.labels) or self.label_range is not None:
            raise ValueError(f"task {self.name!r}: tsv_labels must align with labels, and no label_range")
        if self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: main_metric {self.main_metric!r} not in metrics {self.metrics}")
        if self.hub_text_columns is not None and len(self.hub_text_columns) != len(self.text_columns):
            raise ValueError(f"task {self.name!r}: hub_text_columns must align with text_columns")
        if not set(self.metrics) <= set(METRICS[self.kind]):
            raise ValueError(f"task {self.name!r}: {self.kind} metrics are {METRICS[self.kind]}, got {self.metrics}")

    @property
    def kind(self) -> Literal["classification", "regression"]:
        """Either "classification" (the task has class labels) or "regression"."""
        return "regression" if self.labels is None else "classification"

    @property
    def num_labels(self) -> int:
        """Number of model outputs: the class count, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split the readers accept: "train" followed by `dev_splits`."""
        return ("train", *self.dev_splits)


# The metrics each kind of task can report (computed in `pipeline.core.metrics`).
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "mcc"),
    "regression": ("pearson", "spearman"),
}

_BINARY_01 = ("0", "1")
_ENTAIL = ("entailment", "not_entailment")

# fmt: off
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="cola", glue_dir="CoLA", hub_config="cola",
            text_columns=("sentence",), label_column="label",
            labels=("unacceptable", "acceptable"), tsv_labels=_BINARY_01, label_range=None,
            metrics=("mcc",), main_metric="mcc", dev_splits=("dev",),
            tsv_header=("source", "label", "mark", "sentence"),
        ),
        TaskSpec(
            name="sst2", glue_dir="SST-2", hub_config="sst2",
            text_columns=("sentence",), label_column="label",
            labels=("negative", "positive"), tsv_labels=_BINARY_01, label_range=None,
            metrics=("accuracy",), main_metric="accuracy", dev_splits=("dev",),
        ),
        TaskSpec(
            name="mrpc", glue_dir="MRPC", hub_config="mrpc",
            text_columns=("#1 String", "#2 String"), label_column="Quality",
            labels=("not_equivalent", "equivalent"), tsv_labels=_BINARY_01, label_range=None,
            metrics=("f1", "accuracy"), main_metric="accuracy", dev_splits=("dev",),
            hub_text_columns=("sentence1", "sentence2"),
        ),
        TaskSpec(
            name="stsb", glue_dir="STS-B", hub_config="stsb",
            text_columns=("sentence1", "sentence2"), label_column="score",
            labels=None, tsv_labels=None, label_range=(0.0, 5.0),
            metrics=("pearson", "spearman"), main_metric="spearman", dev_splits=("dev",),
        ),
        TaskSpec(
            name="qqp", glue_dir="QQP", hub_config="qqp",
            text_columns=("question1", "question2"), label_column="is_duplicate",
            labels=("not_duplicate", "duplicate"), tsv_labels=_BINARY_01, label_range=None,
            metrics=("f1", "accuracy"), main_metric="accuracy", dev_splits=("dev",),
        ),
        TaskSpec(
            name="mnli", glue_dir="MNLI", hub_config="mnli",
            text_columns=("sentence1", "sentence2"), label_column="gold_label",
            labels=("entailment", "neutral", "contradiction"),
            tsv_labels=("entailment", "neutral", "contradiction"), label_range=None,
            metrics=("accuracy",), main_metric="accuracy", dev_splits=("dev_matched", "dev_mismatched"),
            hub_text_columns=("premise", "hypothesis"),
        ),
        TaskSpec(
            name="qnli", glue_dir="QNLI", hub_config="qnli",
            text_columns=("question", "sentence"), label_column="label",
            labels=_ENTAIL, tsv_labels=_ENTAIL, label_range=None,
            metrics=("accuracy",), main_metric="accuracy", dev_splits=("dev",),
        ),
        TaskSpec(
            name="rte", glue_dir="RTE", hub_config="rte",
            text_columns=("sentence1", "sentence2"), label_column="label",
            labels=_ENTAIL, tsv_labels=_ENTAIL, label_range=None,
            metrics=("accuracy",), main_metric="accuracy", dev_splits=("dev",),
        ),
        TaskSpec(
            name="wnli", glue_dir="WNLI", hub_config="wnli",
            text_columns=("sentence1", "sentence2"), label_column="label",
            labels=("not_entailment", "entailment"), tsv_labels=_BINARY_01, label_range=None,
            metrics=("accuracy",), main_metric="accuracy", dev_splits=("dev",),
        ),
    )
}
# fmt: on


def _normalize(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def get_glue_task(name: str) -> TaskSpec:
    """Look a GLUE task up by name, ignoring case and punctuation ("SST-2", "sts-b", "CoLA" all work).

    Args:
        name: A registry key, a GLUE folder name or a Hub config name.

    Returns:
        The task's spec.

    Raises:
        ValueError: The name matches no GLUE task; the message lists the known names.
    """
    key = _normalize(name)
    for spec in TASKS.values():
        if key in (_normalize(spec.name), _normalize(spec.glue_dir), _normalize(spec.hub_config)):
            return spec
    raise ValueError(f"unknown GLUE task {name!r}; known tasks: {', '.join(TASKS)}")


def task_to_dict(task: TaskSpec) -> dict[str, Any]:
    """A JSON-friendly copy of a spec (stored with a saved model, so it can predict without the config)."""
    return dataclasses.asdict(task)


def task_from_dict(data: dict[str, Any]) -> TaskSpec:
    """The spec `task_to_dict` wrote (JSON lists become tuples again)."""
    return TaskSpec(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


TASKS_FILE = "data/tasks.json"  # a run's task specs, in `data.tasks` order: the data stage writes it


def write_task_specs(run_dir: Path, specs: list[TaskSpec]) -> None:
    """Store a run's task specs (`TASKS_FILE`), in the config's task order."""
    write_json(run_dir / TASKS_FILE, [task_to_dict(spec) for spec in specs])


def read_task_specs(run_dir: Path, names: tuple[str, ...] | list[str] | None = None) -> list[TaskSpec]:
    """A run's task specs as its data stage wrote them: all of them, or those of `names`, in that order.

    Raises:
        StoreError: The data stage has not written them, or a named task is not among them.
    """
    path = run_dir / TASKS_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no task specs; run the data stage (python -m pipeline run --stage data)")
    specs = {spec.name: spec for spec in map(task_from_dict, read_json(path))}
    missing = [name for name in names or () if name not in specs]
    if missing:
        raise StoreError(f"{path}: no spec of {missing} (it has {list(specs)}); rerun the data stage")
    return list(specs.values()) if names is None else [specs[name] for name in names]
