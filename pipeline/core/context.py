"""What the engine hands a stage, and the shape every stage module has (`stages/*.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from accelerate import Accelerator

from pipeline.core.config import RunConfig


@dataclass(frozen=True)
class Context:
    """What a stage's `run` gets: the resolved config, the run folder, the accelerator and the stage's digest (its
    checkpoints carry it, so a resume never continues another config's training)."""

    cfg: RunConfig
    run_dir: Path
    accelerator: Accelerator
    digest: str


class Stage(Protocol):
    """A stage module: what it needs, the config it depends on, what it makes, and how to run it.

    Optional module attributes: `RESUMABLE = True` (its outputs are kept while it reruns, for checkpoints) and
    `sources(cfg) -> {name: checksum}` (files outside the run folder it reads, e.g. a custom task's data).
    """

    NAME: str

    def needs(self, cfg: RunConfig) -> tuple[str, ...]: ...

    def config_subset(self, cfg: RunConfig) -> dict[str, Any]: ...

    def makes(self, cfg: RunConfig) -> list[str]: ...

    def run(self, ctx: Context) -> dict[str, Any] | None: ...
