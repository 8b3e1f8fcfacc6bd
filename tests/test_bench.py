"""The benchmark scripts stay importable as the code under them moves (they are run by hand, not by CI)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_bench_script_imports(name: str) -> None:
    code = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'bench')!r}]; import {name}; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_every_bench_script_is_checked() -> None:
    assert {
        "run",
        "precision",
        "pcgrad",
        "small_student",
        "compile",
        "end_to_end",
        "task_parallel",
        "packing",
        "dropout",
    } <= set(SCRIPTS)


def test_a_profile_is_split_by_the_first_matching_category_without_other_threads(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    split = importlib.import_module("profile_split").split

    lines = [
        "main (x.py:1);Dropout.forward (dropout.py:70);at::native::bernoulli_ (libtorch_cpu.so) 3",
        "main (x.py:1);_engine_run_backward (graph.py:9);AdamW (y) 2",  # the first category in order: the optimizer
        "main (x.py:1);_engine_run_backward (graph.py:9);0x7f00 (?) 4",
        "main (x.py:1);Thread._bootstrap (threading.py:1002);TMonitor.run (tqdm) 50",  # tqdm's monitor: left out
        "main (x.py:1);something_else (z.py:3) 1",
    ]
    shares, total = split(lines)
    assert total == 10
    assert shares == {
        "dropout (its random mask)": 3,
        "optimizer step (fused AdamW)": 2,
        "backward pass, unattributed (mostly matrix products)": 4,
        "other": 1,
    }
    with pytest.raises(SystemExit, match="line 1: expected"):
        split(["no count here"])
