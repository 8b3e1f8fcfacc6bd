"""Step-numbered training checkpoints that hold everything needed to resume, without pickle.

`<dir>/checkpoints/step-000120/` holds the model and optimizer tensors (safetensors), the optimizer's groups
(JSON), each process's RNG state, and `state.json` (step, total steps, the stage digest, the resolved config and
the sha256 of every file). A checkpoint is written into a temporary folder and renamed when complete; one whose
checksums fail is reported and skipped in favour of the one before it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from pipeline.core.store import StoreError, file_sha256, read_json, trim_log, write_json

CKPT_PREFIX = "step-"


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete-looking checkpoint folders under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX) and p.suffix != ".tmp")


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    state: dict[str, Any],
    keep: int,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `root/step-{step:06d}/`; every process saves its RNG state, the main process the rest, and each of
    `extra`'s tensor sets as `<name>.safetensors` (e.g. the best weights so far: pipeline/core/selection.py)."""
    final = root / f"{CKPT_PREFIX}{step:06d}"
    tmp = root / f"{CKPT_PREFIX}{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # dropout on GPU draws from the CUDA generator
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(tmp / f"rng-{accelerator.process_index}.safetensors"))
    if accelerator.is_main_process:
        weights = {k: v.detach().contiguous().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        save_file(_dedupe(weights), str(tmp / "model.safetensors"))
        tensors, meta = _optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta), encoding="utf-8")
        for name, tensors in (extra or {}).items():
            save_file(_dedupe(tensors), str(tmp / f"{name}.safetensors"))
        if accelerator.scaler is not None:  # fp16's loss scale: restarting it would skip the first steps on overflow
            write_json(tmp / "scaler.json", accelerator.scaler.state_dict())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / "state.json", {**state, "step": step, "world_size": accelerator.num_processes, "files": files})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        ours = [p for p in checkpoint_dirs(root) if _digest_of(p) == state.get("digest")]
        for old in checkpoint_dirs(root):  # checkpoints of another config can never be resumed: drop them
            if old not in ours or (keep > 0 and old in ours[:-keep]):
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _digest_of(path: Path) -> str | None:
    try:
        return read_json(path / "state.json").get("digest")
    except Exception:  # noqa: BLE001 - unreadable means not ours
        return None


def _dedupe(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Tied weights (word embeddings / decoder) share storage; safetensors refuses shared tensors.
    seen, out = set(), {}
    for k, v in weights.items():
        key = (v.data_ptr(), v.shape)
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    return out


def verify_checkpoint(path: Path) -> str | None:
    """None when the checkpoint is complete and intact, else what is wrong."""
    state_path = path / "state.json"
    if not state_path.is_file():
        return "no state.json"
    try:
        state = read_json(state_path)
    except Exception as err:  # noqa: BLE001 - any unreadable state means the checkpoint is unusable
        return str(err)
    for name, sha in state.get("files", {}).items():
        if not (path / name).is_file():
            return f"{name} missing"
        if file_sha256(path / name) != sha:
            return f"{name} checksum differs (truncated or changed)"
    return None


def find_resume_checkpoint(root: Path, digest: str, log=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint made for this stage digest; broken or foreign ones are reported and skipped."""
    for path in reversed(checkpoint_dirs(root)):
        problem = verify_checkpoint(path)
        if problem is None:
            state = read_json(path / "state.json")
            if state.get("digest") == digest:
                return path, state
            problem = "made with another config or inputs"
        log(f"skipping checkpoint {path}: {problem}")
    return None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator):
    """Restore model, optimizer, fp16's loss scale and this process's RNG from `path` (written by `save_checkpoint`)."""
    state = read_json(path / "state.json")
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    tensors = load_file(str(path / "optimizer.safetensors"))
    meta = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    if accelerator.scaler is not None and (path / "scaler.json").is_file():
        accelerator.scaler.load_state_dict(read_json(path / "scaler.json"))
    rng_file = path / f"rng-{accelerator.process_index}.safetensors"
    if rng_file.is_file():  # `resume` refuses a checkpoint of another process count
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return state


def resume(
    out_dir: Path, digest: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator,
    prefix: str, total_steps: int,
) -> tuple[int, float, Path | None]:  # fmt: skip
    """Restore the newest intact checkpoint under `out_dir/checkpoints` made for `digest`, if any, and cut
    `out_dir/log.jsonl` back to it; `prefix` starts the message (e.g. "[student]").

    Returns (steps done, training seconds spent before this process, the checkpoint's folder or None)."""
    found = find_resume_checkpoint(out_dir / "checkpoints", digest, log=accelerator.print)
    step, before, path = 0, 0.0, None
    if found is not None and found[1].get("world_size", 1) != accelerator.num_processes:
        processes = found[1].get("world_size", 1)
        raise StoreError(
            f"{found[0]}: written by a run of {processes} process(es), this one has {accelerator.num_processes}; "
            "each process's random state is part of the run, so it resumes only with the same count: continue with "
            f"{processes} process(es) (accelerate launch --num_processes {processes} ...), or delete "
            f"{out_dir / 'checkpoints'} to start this stage over"
        )
    if found is not None:
        state = load_checkpoint(found[0], model, optimizer, accelerator)
        step, before, path = state["step"], state.get("elapsed_s", 0.0), found[0]
        accelerator.print(f"{prefix} resuming from {found[0].name} ({step}/{total_steps} steps done)")
    if accelerator.is_main_process:
        trim_log(out_dir / "log.jsonl", step)
    return step, before, path
