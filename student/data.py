"""The splits the student reads and the tokenizer it saves with its model.

Born-again (no `student.model`): the data stage's splits, tokenised by the teachers' tokenizer. With
`student.model`, that model's own tokenizer reads the same examples (their stored texts), written to
`<student folder>/data/<task>/<split>/` where the evaluate stage finds them; the examples' fingerprint is unchanged,
so the soft targets still join by example id and that fingerprint, whichever tokenizer made the token ids.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator

from pipeline.core.config import RunConfig
from pipeline.core.data import TokenizedSplit, load_split, retokenize
from pipeline.core.model import load_tokenizer, resolve_model_path
from pipeline.core.tasks import TaskSpec


def student_data(
    cfg: RunConfig, tasks: list[TaskSpec], run_dir: Path, out_dir: Path, acc: Accelerator
) -> tuple[object, dict[tuple[str, str], TokenizedSplit]]:
    """The student's tokenizer and its (task, split) → split for the training and dev splits of `tasks`."""
    remote, own = cfg.model.trust_remote_code, cfg.student.model is not None
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, run_dir, cfg.student.model), remote)
    keys = [(t.name, split) for t in tasks for split in ("train", *t.dev_splits)]
    if acc.is_main_process:
        shutil.rmtree(out_dir / "data", ignore_errors=True)  # an earlier student's, or a half-written one
        for task, split in keys if own else ():
            tokens = retokenize(run_dir, task, split, tokenizer, cfg.data.max_length, out_dir)
            acc.print(
                f"[student] {task}/{split}: {len(tokens)} examples, {int(tokens.offsets[-1])} tokens, own tokenizer"
            )
    acc.wait_for_everyone()
    return tokenizer, {key: load_split(out_dir if own else run_dir, *key) for key in keys}
