"""The benchmark scripts stay importable as the code under them moves (they are run by hand, not by CI)."""

from __future__ import annotations

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
    assert {"run", "precision", "pcgrad", "small_student", "compile", "end_to_end", "task_parallel", "packing"} <= set(
        SCRIPTS
    )
