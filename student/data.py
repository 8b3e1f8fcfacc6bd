"""The splits the student reads.

Born-again (no `student.model`, or one whose tokenizer tokenises exactly as the teachers'): the data stage's splits.
A `student.model` with a tokenizer of its own reads the same examples (their stored texts) tokenised by it, in
memory on every rank (nothing is written: a failed run leaves the student folder as it was); the examples'
fingerprint is unchanged, so the soft targets still join by example id and that fingerprint.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import RunConfig
from pipeline.core.data import TokenizedSplit, load_split, retokenize
from pipeline.core.tasks import TaskSpec


def student_splits(
    cfg: RunConfig, tasks: list[TaskSpec], run_dir: Path, tokenizer, print_fn=print
) -> dict[tuple[str, str], TokenizedSplit]:
    """(task, split) → the training and dev splits of `tasks` as `tokenizer` (the student's) reads them."""
    out = {}
    for task, split in [(t.name, s) for t in tasks for s in ("train", *t.dev_splits)]:
        stored = load_split(run_dir, task, split)
        if cfg.student.model is None:
            out[(task, split)] = stored
            continue
        own = retokenize(run_dir, stored, tokenizer, cfg.data.max_length)
        out[(task, split)] = stored if own.fingerprint == stored.fingerprint else own  # same tokens: the mapped file
        if out[(task, split)] is own:
            print_fn(
                f"[student] {task}/{split}: {len(own)} examples, {int(own.offsets[-1])} tokens (its own tokenizer)"
            )
    return out
