"""`student.pair_mode: siamese`: sentence pairs encoded one sentence at a time (a bi-encoder).

The model side is core, as evaluation, prediction and saved models need it too: the siamese heads
(`pipeline/core/model.py`, built by `build_model(..., pair_mode=...)`) and the cutting of a stored
[CLS] a [SEP] b [SEP] by token type (`collate(..., split_pairs=True)`, `pipeline/core/data.py`). Here: the check that
the run's tokenizer marks the second sentence.
"""

from __future__ import annotations

from pipeline.core.config import ConfigError, StudentConfig
from student.options.hooks import Options, Run


def add(opts: Options, sc: StudentConfig, run: Run) -> Options:
    """With `pair_mode: siamese`, refuses a tokenizer that gave some task's sentence pairs no token type 1."""
    if sc.pair_mode != "siamese":
        return opts
    for task, split in zip(run.tasks, run.train):
        if len(task.text_columns) == 2 and not (split.token_type_ids == 1).any():
            raise ConfigError(
                f"'student.pair_mode' siamese cuts sentence pairs by token type, but the tokenizer gave "
                f"{task.name}'s pairs none (no token type 1); use 'student.pair_mode' cross with this model"
            )
    return opts
