"""Cache a teacher's soft targets: it predicts its task's training and dev sets once; the student never runs it.
With several teachers of the task (`distill.teachers`: an ensemble), the stored targets are their mean: of the
probabilities (kept as log-probabilities, whose softmax is that mean exactly) or of the regression outputs. A member
of another tokenizer (another model family) reads the same examples tokenised by its own.

Run through the pipeline (teachers are trained first if missing):

    python -m pipeline run --stage distill --config configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from pipeline.core.data import load_split, retokenize
from pipeline.core.errors import StoreError
from pipeline.core.model import load_model, own_tokenizer
from pipeline.core.store import save_soft_targets
from pipeline.core.tasks import TaskSpec
from pipeline.core.training import predict


def distill_task(
    task: TaskSpec, teachers: list[Path], run_dir: Path, out_dir: Path, acc: Accelerator, batch_size: int,
    vocabulary: dict[str, int] | None = None, members: list[str] | None = None, trust_remote_code: bool = False,
    max_length: int = 128,
) -> dict[str, int]:  # fmt: skip
    """Write `out_dir/<split>.npy` (the teacher model's logits or scaled regression output, float32; with several
    `teachers`, their mean), ids and a record naming the `members` and the examples, for the task's train and dev
    splits as stored in `run_dir`; returns the rows per split. With `vocabulary` (the run's tokenizer's), a teacher
    whose tokenizer differs reads the same examples tokenised by its own (`max_length` tokens at most)."""
    models = [_member(path, task).to(acc.device) for path in teachers]
    own = [None if vocabulary is None else own_tokenizer(path, vocabulary, trust_remote_code) for path in teachers]
    rows = {}
    for split in ("train", *task.dev_splits):
        data = load_split(run_dir, task.name, split)
        desc = f"distill {task.name}/{split}"
        outputs = []
        for model, tokenizer in zip(models, own):
            tokens = data
            if tokenizer is not None:  # the examples as this member's tokenizer reads them: same ids, same order
                tokens = retokenize(run_dir, data, tokenizer, max_length)
            outputs.append(predict(model, tokens, 0, [task], acc, batch_size, desc=desc))
        if acc.is_main_process:
            save_soft_targets(out_dir, split, data.ids, ensemble(outputs, task), data.examples_fingerprint, members)
        rows[split] = len(data)
    acc.print(f"[distill] {task.name}: " + ", ".join(f"{s} {n} rows" for s, n in rows.items()))
    return rows


def ensemble(outputs: list[np.ndarray], task: TaskSpec) -> np.ndarray:
    """One teacher's outputs as they are; several: the log of their mean probability (classification), or their
    mean output (regression)."""
    if len(outputs) == 1:
        return outputs[0]
    if task.kind == "regression":
        return np.mean(outputs, axis=0)
    stacked = torch.from_numpy(np.stack(outputs)).double()
    probabilities = torch.softmax(stacked, dim=-1).mean(dim=0)
    return torch.log(probabilities).float().numpy()


def _member(path: Path, task: TaskSpec):
    """A teacher of `task` from a model folder, refused with a message when it has no head for the task."""
    if not (path / "heads.json").is_file():
        raise StoreError(f"{path}: no teacher model here (expected a run folder whose teachers stage is done)")
    model = load_model(path)
    if model.task_names != [task.name]:
        raise StoreError(f"{path}: not a teacher of task '{task.name}' alone (its heads: {model.task_names})")
    return model
