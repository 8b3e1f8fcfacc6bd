"""Cache a teacher's soft targets: it predicts its task's training and dev sets once; the student never runs it.

Run through the pipeline (teachers are trained first if missing):

    python -m pipeline run --stage distill --config configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator

from pipeline.core.data import load_split
from pipeline.core.model import load_model
from pipeline.core.store import save_soft_targets
from pipeline.core.tasks import TaskSpec
from pipeline.core.training import predict


def distill_task(
    task: TaskSpec, teacher: Path, run_dir: Path, out_dir: Path, acc: Accelerator, batch_size: int
) -> dict[str, int]:
    """Write `out_dir/<split>.npy` (the teacher model's logits or scaled regression output, float32), ids and a
    record, for the task's train and dev splits as stored in `run_dir`; returns the rows per split."""
    model = load_model(teacher).to(acc.device)
    rows = {}
    for split in ("train", *task.dev_splits):
        data = load_split(run_dir, task.name, split)
        desc = f"distill {task.name}/{split}"
        outputs = predict(model, data, 0, [task], acc, batch_size, desc=desc)
        if acc.is_main_process:
            save_soft_targets(out_dir, split, data.ids, outputs, data.fingerprint)
        rows[split] = len(data)
    acc.print(f"[distill] {task.name}: " + ", ".join(f"{s} {n} rows" for s, n in rows.items()))
    return rows
