"""Shared by the test_bad_input_* files: the smoke pipeline's stages, in order."""

from __future__ import annotations

STAGES = ["data", "teachers", "distill", "student", "evaluate", "report"]
