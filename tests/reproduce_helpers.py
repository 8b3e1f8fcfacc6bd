"""Shared by the test_reproduce_* files: the smoke config's four tasks and their GLUE specs."""

from __future__ import annotations

from pipeline.core.tasks import get_glue_task

TASKS = ["sst2", "mrpc", "stsb", "rte"]
SPECS = [get_glue_task(t) for t in TASKS]
