"""Shared by the test_method_* files: a seeded torch generator."""

from __future__ import annotations

import torch


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
