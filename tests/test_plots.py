"""The training plots' colours: one per run, none shared."""

from __future__ import annotations

from matplotlib.colors import to_rgba

from pipeline.core.plots import run_colours


def test_runs_keep_the_default_colours_up_to_ten_and_never_share_one_up_to_twenty() -> None:
    assert run_colours(["bam", "multi"]) == {"bam": "C0", "multi": "C1"}
    for n in (10, 12, 20):
        colours = run_colours([f"run-{i}" for i in range(n)])
        assert len({to_rgba(c) for c in colours.values()}) == n
