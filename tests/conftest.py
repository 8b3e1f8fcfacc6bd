"""Shared fixtures: the smoke pipeline, run once per test session and copied for tests that change it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Tiny models gain nothing from threads; one per process keeps parallel runs (2-rank tests) from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from pipeline.cli import main as cli_main
from stages import STAGES as REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def run_smoke(out: Path, *overrides: str, stage: str | None = None, force: bool = False) -> list[str]:
    """Run the smoke config in-process; returns the names of the stages that ran."""
    from pipeline.core.accel import make_accelerator
    from pipeline.core.config import load_config
    from pipeline.dag import run_stages

    cfg = load_config(SMOKE, list(overrides))
    return run_stages(REGISTRY, cfg, out, make_accelerator(), target=stage, force=force)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    ran = run_smoke(out)
    assert ran == ["data", "teachers", "distill", "student", "evaluate", "report"]
    return out


@pytest.fixture
def smoke_copy(smoke_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished smoke run that a test may change."""
    out = tmp_path / "run"
    shutil.copytree(smoke_run, out)
    return out


@pytest.fixture(scope="session")
def repro(tmp_path_factory) -> Path:
    """reproduce-glue's OUT on the smoke config: Single and BAM on two seeds, finished (tests copy it to change it)."""
    out = tmp_path_factory.mktemp("repro") / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single,bam"]
    assert cli_main(argv) == 0
    return out
