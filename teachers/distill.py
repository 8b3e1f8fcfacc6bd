"""Cache a teacher's soft targets: it predicts its task's training and dev sets once; the student never runs it.

Run through the pipeline (teachers are trained first if missing):

    python -m pipeline run --stage distill --config configs/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path

from pipeline.dag import Context
from pipeline.data import load_split
from pipeline.model import load_model
from pipeline.store import save_soft_targets
from pipeline.tasks import get_task
from pipeline.training import predict


def distill_task(ctx: Context, task_name: str, teacher_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write `out_dir/<split>.npy` (teacher logits or scaled regression output, float32), ids and a record."""
    acc = ctx.accelerator
    task = get_task(task_name)
    model = load_model(teacher_dir / "model").to(acc.device)
    rows = {}
    for split in ("train", *task.dev_splits):
        data = load_split(ctx.run_dir, task.name, split)
        desc = f"distill {task.name}/{split}"
        outputs = predict(model, data, 0, [task], acc, ctx.cfg.teachers.eval_batch_size, desc=desc)
        if acc.is_main_process:
            save_soft_targets(out_dir, split, data.ids, outputs, data.fingerprint)
        rows[split] = len(data)
    acc.print(f"[distill] {task.name}: " + ", ".join(f"{s} {n} rows" for s, n in rows.items()))
    return rows
