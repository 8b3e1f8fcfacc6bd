"""The multitask options (docs/options.md), each a module beside the plain BAM loop of `student/train.py`:

  mixing.py       `mixing`: how the tasks share a step (BAM's `mixed`, round-robin, summed); builds the `Options`
  pcgrad.py       `mixing: pcgrad`: PCGrad gradient surgery on the summed step
  adversarial.py  `adversarial`: FGM / FGSM / PGD perturbations of the word embeddings
  supcon.py       `supcon_weight`: a supervised contrastive loss on the features the heads read
  siamese.py      `pair_mode: siamese`: its check (the heads and batches are core: evaluation and prediction use them)
  unfreeze.py     `unfreeze_every`: gradual unfreezing, top first
  regression.py   `task_loss`, `task_weights`, `swap_pairs`: a (regression) task's weight in the loss; both
                  orders of a pair
  running_loss.py `task_loss: running`: each task's loss ÷ a running estimate of its size

Each module's `add(opts, sc, run)` returns `opts` with its calls (`hooks.Options`) in place when its option is on,
or refuses a run it cannot train (`ConfigError`); a new option is a module here and a line in `ADDED`.
"""

from __future__ import annotations

from pipeline.core.config import StudentConfig
from pipeline.core.data import TokenizedSplit
from pipeline.core.tasks import TaskSpec
from student.options import adversarial, mixing, pcgrad, regression, running_loss, siamese, supcon, unfreeze
from student.options.hooks import Options, Run

ADDED = (
    pcgrad,
    adversarial,
    supcon,
    siamese,
    unfreeze,
    regression,
    running_loss,
)  # in order: the first refusal is the one reported


def get_options(sc: StudentConfig, tasks: list[TaskSpec], train: list[TokenizedSplit], processes: int) -> Options:
    """The calls that make `sc`'s step: BAM's at every default. Raises `ConfigError` for a run an option cannot train
    (`check_options`)."""
    opts, run = mixing.options(sc, [t.name for t in tasks]), Run(tasks, train, processes)
    for option in ADDED:
        opts = option.add(opts, sc, run)
    return opts


def check_options(sc: StudentConfig, tasks: list[TaskSpec], train: list[TokenizedSplit], processes: int) -> None:
    """The option checks that need the run: PCGrad's process count, the token types a siamese model cuts pairs by."""
    get_options(sc, tasks, train, processes)
