"""The Accelerator every stage, loop and command shares: trackers, mixed precision, gloo ranks on a CPU."""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from pathlib import Path

from pipeline.core.config import TRACKERS, ConfigError, mixed_precision

# --report-to choices → Accelerate trackers


def make_accelerator(report_to: str = "none", run_dir: Path | None = None, precision: str | None = "fp32"):
    """The Accelerator all stages share; `report_to` (a key of TRACKERS) picks the trackers, which write under
    `run_dir/tracking/`, outside every stage's outputs; `precision` (the config's `model.precision`) its mixed
    precision. The config decides, since the digests count it: `accelerate launch` asking for another is an error.
    None: whatever `accelerate launch` asks for (prediction, which no digest records)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import (
        DistributedDataParallelKwargs,
        InitProcessGroupKwargs,
        ProjectConfiguration,
        is_tensorboard_available,
        is_wandb_available,
    )

    trackers = TRACKERS[report_to]
    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    missing = [name for name in trackers if not available[name]()]
    if missing:  # Accelerate would drop them silently
        raise ConfigError(
            f"--report-to {report_to} needs the package {' and '.join(missing)}, which is not installed "
            f"(pip install {' '.join(missing)})"
        )
    project = None
    if run_dir is not None:
        project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tracking"))

    # Several processes but no GPU (e.g. `accelerate launch --multi_gpu` on a CPU machine): Accelerate only sets
    # up gloo ranks (MULTI_CPU) when asked for the CPU explicitly; otherwise each rank would train alone.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # Heads of tasks absent from a batch get no gradient; DDP must be told so.
    # Only the main process reads and tokenises the data while the others wait: allow hours, not NCCL's minutes.
    handlers = [
        DistributedDataParallelKwargs(find_unused_parameters=True),
        InitProcessGroupKwargs(timeout=timedelta(hours=3)),
    ]
    mixed = None if precision is None else mixed_precision(precision)
    if mixed == "fp16" and not torch.cuda.is_available():  # Accelerate would run fp32 and call it fp16
        raise ConfigError("model.precision fp16 needs a GPU; on a CPU use bf16 (or fp32)")
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    if mixed == "bf16" and on_cpu and not cpu_has_fast_bf16():
        warnings.warn(
            "model.precision bf16 on a CPU without bf16 instructions (on x86: AVX-512 or AMX): PyTorch emulates "
            "it, and training runs many times slower than in fp32 (docs/performance.md); --model.precision=fp32 is "
            "faster here",
            stacklevel=2,
        )
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # set by `accelerate launch` (its flag or config file)
    if None not in (launched, mixed) and launched != mixed:
        ours = {mixed_precision(p): p for p in ("fp32", "bf16", "fp16")}
        fix = f"--model.precision={ours[launched]} after the module, or " if launched in ours else ""
        raise ConfigError(
            f"accelerate launch asks for mixed precision {launched!r}, the config's model.precision is {precision!r}: "
            f"make them agree ({fix}--mixed_precision {mixed} for accelerate launch)"
        )
    return Accelerator(
        cpu=cpu, mixed_precision=mixed, kwargs_handlers=handlers, log_with=trackers or None, project_config=project
    )


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's bf16 kernels: AVX-512 or AMX); without them PyTorch emulates
    it (measured on an AVX2 CPU: bf16 matmuls about 400x slower than fp32, docs/performance.md)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no way to tell, so no warning
        return True
