"""Small helpers shared by the teacher and student loops: optimizer groups, schedule, batches, prediction."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from tqdm.auto import tqdm

from pipeline.core.config import RunConfig, to_dict
from pipeline.core.data import TokenizedSplit, collate, unscale
from pipeline.core.errors import StoreError
from pipeline.core.metrics import compute_metrics
from pipeline.core.model import MultiTaskModel, load_model
from pipeline.core.tasks import TaskSpec

_LAYER = re.compile(r"\.layers?\.(\d+)\.")
_ALBERT_GROUP = re.compile(r"\.albert_layer_groups\.(\d+)\.")
_INPUT_SIDE = re.compile(r"^encoder\.encoder\.(LayerNorm|conv)\.")  # DeBERTa-v2: beside rel_embeddings


def compute_record(acc: Accelerator, start_step: int) -> dict[str, Any]:
    """Where a training ran, to read its wall time by: the device type, the processes, torch's threads per process
    and the mixed precision of the process that finished it, and the step it resumed from (0: not resumed)."""
    return {
        "device": acc.device.type,
        "processes": acc.num_processes,
        "threads": torch.get_num_threads(),
        "precision": acc.mixed_precision,
        "resumed_from_step": start_step,
    }


def get_lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then linear decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def parameter_depth(name: str, num_layers: int, has_pooler: bool, num_groups: int = 1) -> int:
    """Depth of a parameter in the original BAM numbering: heads 0, pooler 1, top layer 2, …, embeddings last.

    Beyond BERT's names: DistilBERT's `transformer.layer.i`; ALBERT's shared `albert_layer_groups.g` sit at the depth
    of the top layer that uses them (one group: the top layer's); input-side parameters outside the layers —
    ALBERT's `embedding_hidden_mapping_in`, ELECTRA's `embeddings_project`, DeBERTa's relative position embeddings,
    their LayerNorm and the first layer's convolution — share the embeddings' depth.
    """
    if name.startswith("heads."):
        return 0
    offset = 1 if has_pooler else 0
    if ".pooler." in f".{name}":
        return 1
    match = _LAYER.search(name)
    if match is not None:
        return offset + num_layers - int(match.group(1))
    match = _ALBERT_GROUP.search(name)
    if match is not None:
        top = -(-(int(match.group(1)) + 1) * num_layers // num_groups) - 1  # ALBERT: layer i uses group ⌊i·G/L⌋
        return offset + num_layers - top
    if "embedding" in name or _INPUT_SIDE.search(name):
        return offset + num_layers + 1
    raise ValueError(f"cannot place parameter '{name}' in a layer for layer-wise learning rates")


def layerwise_param_groups(
    model: MultiTaskModel, lr: float, decay: float, weight_decay: float
) -> list[dict[str, object]]:
    """AdamW parameter groups: a parameter at depth d gets lr · decay^d; biases and LayerNorm get no weight decay.

    The layer count comes from the encoder's config, never from its name.
    """
    config = model.encoder.config
    num_layers = config.num_hidden_layers
    num_groups = getattr(config, "num_hidden_groups", 1)  # ALBERT
    has_pooler = getattr(model.encoder, "pooler", None) is not None
    groups: dict[tuple[int, bool], dict[str, object]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = parameter_depth(name, num_layers, has_pooler, num_groups)
        no_decay = param.ndim < 2
        key = (depth, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "depth": depth,
                "lr": lr * decay**depth,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: MultiTaskModel, lr: float, decay: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the layer-wise groups; each group remembers its peak rate as `base_lr` for `set_lr`."""
    groups = layerwise_param_groups(model, lr, decay, weight_decay)
    for g in groups:
        g.pop("names")
        g["base_lr"] = g["lr"]
    # fused=True: one kernel for all parameters (CPU and GPU); the per-parameter loop costs ~15 % of a step here.
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=True)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    """Scale every group's peak rate; the schedule is a pure function of the step, so resuming needs no state."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * multiplier


def backward_if_trained(accelerator: Accelerator, loss: torch.Tensor) -> None:
    """`accelerator.backward(loss)`, unless nothing that trains touches the loss: in one process, gradual unfreezing
    turns `requires_grad` off (student/options/unfreeze.py), and siamese STS-B's cosine head has no parameters of its
    own."""
    if loss.requires_grad:
        accelerator.backward(loss)


def micro_batch_size(batch_size: int, world: int, grad_accum: int, section: str) -> int:
    """Examples per process per forward pass; the global batch must split evenly."""
    if batch_size % (world * grad_accum):
        raise ValueError(
            f"'{section}.batch_size' = {batch_size} must be divisible by processes ({world}) × "
            f"'{section}.grad_accum' ({grad_accum})"
        )
    return batch_size // (world * grad_accum)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch's tensors that the model reads (a siamese batch also has the second sentences)."""
    keys = ("input_ids", "attention_mask", "token_type_ids", "task_ids", "input_ids_b", "attention_mask_b")
    return {k: batch[k] for k in keys if k in batch}


def length_sorted_batches(lengths: np.ndarray, max_examples: int, max_tokens: int) -> list[np.ndarray]:
    """Rows sorted by length, cut into batches capped by examples and by padded tokens (inference only)."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_examples and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def forward_rows(
    model: nn.Module, split: TokenizedSplit, rows, task_index: int, tasks: list[TaskSpec], accelerator: Accelerator
) -> torch.Tensor:
    """`model`'s outputs [len(rows), C_max] for `rows` of `split` (task `task_index`), in one padded batch, on this
    process alone, in the accelerator's precision (call under `torch.inference_mode`)."""
    siamese = model.pair_mode == "siamese"
    items = [(task_index, int(r)) for r in rows]
    batch = to_device(
        collate(items, {task_index: split}, tasks, split_pairs=siamese, pad_id=model.pad_id), accelerator.device
    )
    with accelerator.autocast():
        return model(**model_inputs(batch))


@torch.inference_mode()
def check_saved_model(
    model: nn.Module,
    folder: Path,
    splits: list[TokenizedSplit],
    tasks: list[TaskSpec],
    acc: Accelerator,
    rows: int = 32,
) -> None:
    """Reload the model just saved in `folder` and compare its outputs with `model`'s (the one in memory, unwrapped)
    on the first `rows` examples of `splits` (one per task, in task order): a fault in saving or loading is an error
    when the model is made, not a wrong score later. One process, no collective calls (the main one saves)."""
    saved, was_training = load_model(folder).to(acc.device).eval(), model.training
    model.eval()
    for i, split in enumerate(splits):
        first = range(min(rows, len(split)))
        ours = forward_rows(model, split, first, i, tasks, acc).float()
        theirs = forward_rows(saved, split, first, i, tasks, acc).float()
        if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
            worst, where = float((ours - theirs).abs().max()), f"{split.task}/{split.split}"
            raise StoreError(f"{folder}: the saved model's outputs on {where} differ from the trained model's "
                             f"by up to {worst:.3g}; it does not load as it was trained")  # fmt: skip
    model.train(was_training)


@torch.inference_mode()
def predict(
    model: nn.Module,
    split: TokenizedSplit,
    task_index: int,
    tasks: list[TaskSpec],
    accelerator: Accelerator,
    batch_size: int,
    max_tokens: int = 16384,
    desc: str | None = None,
) -> np.ndarray:
    """Raw outputs [N, C_τ] for every row of `split`, in row order (regression: scaled space).

    Batches are length-sorted; each process predicts every world-th batch and the pieces are gathered, so the
    result covers exactly the split's rows, once each, on every process. With `desc`, the main process shows a
    progress bar on a terminal.
    """
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    width = tasks[task_index].num_labels
    batches = length_sorted_batches(split.lengths, batch_size, max_tokens)
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    pieces = []
    show = desc is not None and accelerator.is_local_main_process
    for rows in tqdm(mine, desc=desc, disable=None if show else True, leave=False, dynamic_ncols=True):
        out = forward_rows(model, split, rows, task_index, tasks, accelerator)
        pieces.append((rows, out[:, :width].float().cpu().numpy()))
    if accelerator.num_processes > 1:
        pieces = gather_object(pieces)
    result = np.zeros((len(split), width), dtype=np.float32)
    seen = 0
    for rows, out in pieces:
        result[rows] = out
        seen += len(rows)
    if seen != len(split):
        raise RuntimeError(f"prediction covered {seen} rows of {len(split)} in {split.task}/{split.split}")
    model.train(was_training)
    return result


def evaluate(
    model: nn.Module,
    split: TokenizedSplit,
    task_index: int,
    tasks: list[TaskSpec],
    accelerator: Accelerator,
    batch_size: int,
    desc: str | None = None,
) -> dict[str, float]:
    """Dev metrics of one task (0–100), computed on exactly the split's rows."""
    task = tasks[task_index]
    outputs = predict(model, split, task_index, tasks, accelerator, batch_size, desc=desc)
    return compute_metrics(task, unscale(task, outputs), split.labels)


def start_tracking(accelerator: Accelerator, cfg: RunConfig, section: str, name: str) -> None:
    """Open a tracker run (TensorBoard, W&B: `--report-to`) for one training loop; nothing without trackers.

    Every loop is its own run, named `name`, in project `cfg.name` (W&B: grouped by run folder name); its config is
    the loop's section and the model. The trackers are chosen on the command line, not in the config, so they never
    change a stage's digest.
    """
    if not accelerator.log_with:
        return
    Path(accelerator.logging_dir).mkdir(parents=True, exist_ok=True)
    config = flatten({section: to_dict(getattr(cfg, section)), "model": to_dict(cfg.model)}, sep=".")
    # Trackers take numbers, strings and booleans as hyperparameters: lists and None become text.
    config = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}
    group = Path(accelerator.project_dir).name
    init_kwargs = {"wandb": {"name": name, "group": group, "dir": str(accelerator.logging_dir)}}
    accelerator.init_trackers(cfg.name, config=config, init_kwargs=init_kwargs)


def log_record(accelerator: Accelerator, log_path: Path, record: dict[str, Any], prefix: str) -> None:
    """Append `record` to the loop's JSON Lines log (main process) and send the same values to the trackers at
    `record["step"]`, keys flattened under `prefix` (`{"loss": {"sst2": x}}` → `student/loss/sst2`)."""
    if accelerator.is_main_process:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    values = {f"{prefix}/{key}": v for key, v in flatten(record).items() if key != "step"}
    accelerator.log(values, step=record["step"])


def stop_tracking(accelerator: Accelerator) -> None:
    """Close the loop's tracker runs. (`end_training` would also end the process group that later stages use.)"""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()


def flatten(d: dict[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level: `{"a": {"b": 1}}` → `{"a/b": 1}`."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        else:
            out[f"{prefix}{key}"] = value
    return out


class GracefulStop:
    """Turns SIGTERM/SIGINT into a flag the loop checks between optimizer steps (so it can checkpoint first).

    With several processes the flag is OR-reduced across ranks each step: a signal that reached one rank stops
    all of them at the same step, so the collective checkpoint save cannot deadlock.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under a test runner thread): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def should_stop(self, accelerator: Accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
