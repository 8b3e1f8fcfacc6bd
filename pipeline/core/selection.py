"""Dev evaluation during training (`eval_every`) and the choice of the weights a loop keeps (`select`).

Both loops make the same calls: `after_step` after every optimizer step, `checkpoint_state`/`checkpoint_tensors`
into each checkpoint, `restore` from the one they resume, and `finish` once the last weights are evaluated. At the
defaults (`eval_every` 0, `select` last) nothing is evaluated before the end and the last weights are kept: the
paper's protocol. Every evaluation goes to the loop's JSONL log and trackers as `{"step", "dev", "score"}`
(`score`: each task's main metric on its first dev split), which `plots/training.png` draws as the dev curve.

With `select: best` the weights of the best score so far (a teacher: its task's main metric; the student: the
mean over its tasks) are kept as a CPU copy and saved in every checkpoint (`best.safetensors`, its record in
`state.json`), so a resumed run makes the choice an uninterrupted one would. At the end they replace the last
weights if they scored strictly higher (a tie keeps the last). The dev set then both chooses and scores the
weights, so the dev numbers of such a run are optimistic: that is why `last` is the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from pipeline.core.store import read_json

BEST = "best"  # the checkpoint file (`best.safetensors`) and state key of the best weights so far


class DevSelection:
    """Evaluate every `every` steps (0: only at the end) and keep the `select`ed weights ("last" or "best").
    `evaluate(model)` gives the loop's dev metrics, `scores(metrics)` each task's main metric in them, `log(record)`
    writes a record to the loop's log and trackers."""

    def __init__(
        self,
        every: int,
        select: str,
        accelerator: Accelerator,
        evaluate: Callable[[torch.nn.Module], dict],
        scores: Callable[[dict], dict[str, float]],
        log: Callable[[dict], None],
    ) -> None:
        self.every, self.select, self.acc = every, select, accelerator
        self.evaluate, self.scores, self.log = evaluate, scores, log
        self.best: dict[str, Any] | None = None  # {"step", "score", "dev"} of the weights kept so far
        self.weights: dict[str, torch.Tensor] | None = None
        self.seconds = 0.0  # spent evaluating in `after_step` by this process, which the loops' ex/s leave out

    def after_step(self, model: torch.nn.Module, step: int, total_steps: int) -> None:
        """Evaluate when `step` is a multiple of `every` before the last (which `finish` is given); with `best`,
        keep the weights when they score higher than any before."""
        if not self.every or step % self.every or step >= total_steps:
            return
        start = time.perf_counter()
        dev = self.evaluate(model)
        self.seconds += time.perf_counter() - start
        score = self._record(step, dev)
        if self.select == BEST and (self.best is None or score > self.best["score"]):
            self.best = {"step": step, "score": score, "dev": dev}
            state = self.acc.unwrap_model(model).state_dict()
            self.weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint's state.json records of the choice so far."""
        return {BEST: self.best} if self.best is not None else {}

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The tensor files a checkpoint holds for the choice: the best weights so far, if any."""
        return {BEST: self.weights} if self.weights is not None else {}

    def restore(self, checkpoint: Path | None) -> None:
        """Take up the choice where the checkpoint `resume` restored (None: none) left it."""
        if checkpoint is None:
            return
        self.best = read_json(checkpoint / "state.json").get(BEST)
        if self.best is not None:
            self.weights = load_file(str(checkpoint / f"{BEST}.safetensors"))

    def finish(self, model: torch.nn.Module, total_steps: int, dev: dict) -> tuple[dict, int]:
        """Given the last weights' dev metrics: log them, load the best weights into `model` if they are kept
        instead, and return the kept weights' dev metrics and step."""
        score = self._record(total_steps, dev)
        if self.best is None or self.best["score"] <= score:
            return dev, total_steps
        self.acc.unwrap_model(model).load_state_dict(self.weights, strict=True)
        self.acc.print(
            f"select: best: the weights of step {self.best['step']} (dev {self.best['score']:.2f}) over the last "
            f"({score:.2f})"
        )
        return self.best["dev"], self.best["step"]

    def _record(self, step: int, dev: dict) -> float:
        scores = self.scores(dev)
        self.log({"step": step, "dev": dev, "score": scores})
        return mean(scores.values())
