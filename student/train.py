"""Train the multitask student with teacher annealing, task sampling and layer-wise learning rates.

    accelerate launch --config_file accelerate_config.yaml -m student --config configs/bam-paper.yaml   # GPUs, bf16
    python -m student --config configs/smoke.yaml --out /tmp/smoke                    # CPU, one process
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m student --config configs/smoke.yaml --out /tmp/smoke                        # two CPU ranks (gloo)

Every optimizer step draws a global batch from the run's plan (p(τ) ∝ |D_τ|^α, mixed tasks in one batch); each
process takes its slice. λ = step / total_steps moves the target from the teacher's softmax to the gold label.
The multitask options (`student.mixing`, `adversarial`, `supcon_weight`, `pair_mode`, `unfreeze_every`, and the
regression settings `task_loss`, `task_weights`, `sampling_weights`, `swap_pairs`; docs/options.md,
docs/regression.md) are modules in `student/options/`; the loop makes their calls (`opts.…`) at fixed points of the
step, and at their defaults those calls are BAM's. `student/probe.py` logs each task's gradient at the heads' input.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from pipeline.core.card import current_command
from pipeline.core.checkpoint import resume, save_checkpoint
from pipeline.core.config import RunConfig, to_dict
from pipeline.core.data import collate
from pipeline.core.errors import TrainingInterrupted
from pipeline.core.loss import annealing_lambda, multitask_loss
from pipeline.core.metrics import main_score
from pipeline.core.model import build_model, load_tokenizer, resolve_model_path, save_model
from pipeline.core.sampling import rank_slice, steps_for
from pipeline.core.selection import DevSelection
from pipeline.core.store import load_soft_targets, read_json, write_json
from pipeline.core.tasks import TaskSpec
from pipeline.core.training import (
    GracefulStop,
    check_saved_model,
    compute_record,
    evaluate,
    get_lr_multiplier,
    log_record,
    make_optimizer,
    micro_batch_size,
    model_inputs,
    set_lr,
    start_tracking,
    stop_tracking,
    to_device,
)
from student.data import student_splits
from student.options import get_options
from student.options.hooks import Logged, Options, PerTask
from student.probe import TaskGradients


def train_student(
    cfg: RunConfig, tasks: list[TaskSpec], run_dir: Path, out_dir: Path, acc: Accelerator, resume_key: str
) -> dict[str, object]:
    """Train the student on `tasks`' splits stored in `run_dir` (and, unless λ is fixed at 1, their soft targets in
    `run_dir/distill/`) with `cfg.student`; writes `out_dir/model/`, `out_dir/log.jsonl` (every `log_every` steps,
    then the dev metrics) and `out_dir/summary.json`, and sends the log's records to the trackers. Resumes from a
    checkpoint in `out_dir` made for `resume_key`."""
    sc = cfg.student
    tokenizer = load_tokenizer(resolve_model_path(cfg.model, run_dir, sc.model), cfg.model.trust_remote_code)
    splits = student_splits(cfg, tasks, run_dir, tokenizer, acc.print)  # the data's, or as student.model's reads them
    train = [splits[(t.name, "train")] for t in tasks]
    teacher = None
    if sc.fixed_lambda != 1.0:  # verified join: ids, order and the examples' fingerprint must match, or this raises
        teacher = [
            load_soft_targets(run_dir / "distill" / t.name, "train", s.ids, s.examples_fingerprint)
            for t, s in zip(tasks, train)
        ]

    # setup
    set_seed(sc.seed)
    opts = get_options(sc, tasks, train, acc.num_processes)  # the options' calls; BAM's at their defaults
    model = build_model(
        resolve_model_path(cfg.model, run_dir, sc.model), tasks, cfg.model, sc.seed, sc.pair_mode, sc.pooling,
        sc.regression_hidden, opts.head_affine, sc.layers,
    )  # fmt: skip
    probe = TaskGradients(model, [t.name for t in tasks])  # each task's gradient at the heads' input, logged
    joined = (train, tasks, teacher, model.max_outputs)  # what `collate` joins plan rows to
    split_pairs, pad_id = model.pair_mode == "siamese", model.pad_id  # a siamese model reads each sentence alone
    micro_batch_size(sc.batch_size, acc.num_processes, sc.grad_accum, "student")
    sizes = [len(s) for s in train]
    step_rows = opts.examples_per_step(len(tasks))
    total_steps = steps_for(sum(sizes), step_rows, sc.epochs)
    warmup_steps = int(sc.warmup * total_steps)
    plan = opts.plan(sizes, [s.lengths for s in train], total_steps)  # [steps, step_rows, 2]: (task, row)
    optimizer = make_optimizer(model, sc.lr, sc.layer_decay, sc.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    probs = opts.task_probabilities(sizes)
    acc.print(
        f"[student] {total_steps} steps of {step_rows}; p(task) = "
        + ", ".join(f"{t.name} {p:.3f}" for t, p in zip(tasks, probs))
    )

    # resume
    ckpt_root = out_dir / "checkpoints"
    start_step, before, found = resume(out_dir, resume_key, model, optimizer, acc, "[student]", total_steps)
    log_path = out_dir / "log.jsonl"
    devs = {(t.name, split): splits[(t.name, split)] for t in tasks for split in t.dev_splits}
    selection = DevSelection(
        sc.eval_every, sc.select, acc,
        partial(evaluate_tasks, tasks=tasks, devs=devs, acc=acc, batch_size=sc.eval_batch_size),
        lambda dev: {t.name: main_score(t, dev[t.name][t.dev_splits[0]]) for t in tasks},
        lambda record: log_record(acc, log_path, record, "student"),
    )  # fmt: skip
    selection.restore(found)  # eval_every: dev metrics during training; select: the weights kept (last or best)
    if found is not None:
        opts.restore(read_json(found / "state.json"))  # an option's own state (task_loss running: its estimate)

    # loop
    model.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        range(start_step, total_steps),
        initial=start_step,
        total=total_steps,
        desc="student",
        disable=None if acc.is_local_main_process else True,
        dynamic_ncols=True,
    )
    names = [t.name for t in tasks]
    started, windows = time.time(), {}  # windows: per log key and task, loss summed since the last log line
    ckpt_state = {"digest": resume_key, "total_steps": total_steps, "config": to_dict(cfg)}
    start_tracking(acc, cfg, "student", "student")

    def checkpoint(done: int) -> Path:  # with the training seconds so far (wall_s spans resumes) and the choice so far
        state = {
            **ckpt_state,
            "elapsed_s": before + time.time() - started,
            **selection.checkpoint_state(),
            **opts.state(),
        }
        extra = selection.checkpoint_tensors()
        return save_checkpoint(ckpt_root, done, model, optimizer, acc, state, sc.keep_checkpoints, extra)

    with GracefulStop() as stop:
        for step in bar:
            lam = annealing_lambda(step, total_steps, sc.fixed_lambda)
            set_lr(optimizer, get_lr_multiplier(step, total_steps, warmup_steps))
            opts.before_step(step, total_steps, optimizer)
            parts = opts.split(rank_slice(plan[step], acc.process_index, acc.num_processes, sc.grad_accum))
            batches = [
                to_device(collate([tuple(x) for x in p], *joined, split_pairs, pad_id, opts.swaps(step, p)), acc.device)
                for p in parts
            ]
            loss_of = partial(step_loss, model, tasks, lam, acc, sc.batch_size, opts, probe)  # forward, loss
            logged = opts.backward(step, model, acc, batches, loss_of)  # BAM: each micro-batch's loss.backward()
            probe.step()
            opts.after_backward(step, total_steps, optimizer)
            if sc.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), sc.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            add_to_windows(windows, logged, names)
            done = step + 1
            if done % sc.log_every == 0 or done == total_steps:
                record = {
                    "step": done,
                    "lambda": lam,
                    "lr": optimizer.param_groups[0]["lr"],
                    # mean loss over this process's examples since the previous line: `loss` (and, with the
                    # adversarial options, `adv_loss`: the same examples at the adversarial embeddings)
                    **{key: {n: s / c for n, (s, c) in window.items() if c} for key, window in windows.items()},
                    "grad_norm": probe.window(),  # per task, at the heads' input (student/probe.py)
                    **opts.log(),  # an option's own figures (task_loss running: each task's loss weight)
                    "examples_seen": dict(
                        zip(names, np.bincount(plan[:done, :, 0].ravel(), minlength=len(tasks)).tolist())
                    ),
                    # training only: dev evaluations (`eval_every`) are left out
                    "examples_per_s": (done - start_step) * step_rows / (time.time() - started - selection.seconds),
                }
                show_progress(acc, bar, record, [*windows], total_steps)
                log_record(acc, log_path, record, "student")
                windows = {}
            selection.after_step(model, done, total_steps)
            if sc.checkpoint_every and done % sc.checkpoint_every == 0 and done < total_steps:
                checkpoint(done)
            if stop.should_stop(acc):
                path = checkpoint(done)
                raise TrainingInterrupted(
                    f"[student] stopped by a signal after step {done}/{total_steps}; saved {path}. "
                    "Run the same command again to resume."
                )
    opts.after_training(optimizer)

    # eval: the last weights, or the best ones seen (`select`)
    last = evaluate_tasks(model, tasks, devs, acc, sc.eval_batch_size)
    metrics, selected_step = selection.finish(model, total_steps, last)
    acc.print("[student] " + "; ".join(f"{t} {m}" for t, m in metrics.items()))
    stop_tracking(acc)
    dev_examples: dict = {}
    for (name, split), dev in devs.items():
        dev_examples.setdefault(name, {})[split] = len(dev)  # predict() checks it covered each row once

    # save
    counts = np.bincount(plan[:, :, 0].ravel(), minlength=len(tasks))
    summary = {
        "total_steps": total_steps,
        "batch_size": step_rows,  # examples per optimizer step
        "processes": acc.num_processes,
        "examples_per_task": {t.name: int(c) for t, c in zip(tasks, counts)},
        "task_probabilities": {t.name: float(p) for t, p in zip(tasks, probs)},
        "dev": metrics,
        "selected_step": selected_step,  # the step of the weights kept (`select`)
        "dev_examples": dev_examples,
        "data": {f"{task}/{split}": s.fingerprint for (task, split), s in splits.items()},  # the token ids it read
        "wall_s": round(before + time.time() - started, 2),  # training time, over resumes
        "compute": compute_record(acc, start_step),
        "command": current_command(),
    }
    if acc.is_main_process:
        save_model(acc.unwrap_model(model), tokenizer, out_dir / "model")
        check_saved_model(
            acc.unwrap_model(model), out_dir / "model", [devs[(t.name, t.dev_splits[0])] for t in tasks], tasks, acc
        )
        write_json(out_dir / "summary.json", summary)
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    acc.wait_for_everyone()
    return {"total_steps": total_steps, "examples_per_task": summary["examples_per_task"]}


def evaluate_tasks(
    model, tasks: list[TaskSpec], devs: dict[tuple[str, str], object], acc: Accelerator, batch_size: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Dev metrics of every task's dev splits (`devs`: (task, split) → tokenised split), per task and split."""
    metrics: dict = {}
    for (name, split), dev in devs.items():
        i = [t.name for t in tasks].index(name)
        metrics.setdefault(name, {})[split] = evaluate(model, dev, i, tasks, acc, batch_size, f"student {name}/{split}")
    return metrics


def forward_loss(
    model, batch: dict[str, torch.Tensor], tasks: list[TaskSpec], lam: float, accelerator: Accelerator,
    aux_losses: tuple = (), weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, PerTask]:  # fmt: skip
    """One forward pass: the annealed distillation loss (the batch mean, each task's examples counting with its
    `weights` entry), plus each auxiliary loss of the features the heads read (`Options.aux_losses`: supcon).
    Returns the loss and `multitask_loss`'s per-task record."""
    with accelerator.autocast():
        result = model(**model_inputs(batch), return_features=bool(aux_losses))
    outputs, features = result if isinstance(result, tuple) else (result, None)
    teacher = batch.get("teacher")
    loss, per_task = multitask_loss(outputs, batch["task_ids"], batch["labels"], tasks, lam, teacher, weights)
    for aux_loss in aux_losses:
        loss = loss + aux_loss(features, batch)
    return loss, per_task


def step_loss(
    model, tasks: list[TaskSpec], lam: float, accelerator: Accelerator, batch_size: int, opts: Options,
    probe: TaskGradients, batch: dict[str, torch.Tensor], clean: bool = True,
) -> tuple[torch.Tensor, PerTask]:  # fmt: skip
    """The batch's share of the step's loss: its mean loss × its rows × processes / batch_size. That is BAM's mean
    over the step's rows, and when a step holds `batch_size` rows of each task (summed, pcgrad) the sum over tasks
    of each task's mean. A pass that is not `clean` (at adversarial embeddings) leaves the auxiliary losses out, and
    is not probed. Returns it and the batch's per-task record (of the mean loss, unscaled)."""
    if clean:
        probe.watch(batch["task_ids"])
    aux = opts.aux_losses if clean else ()
    loss, per_task = forward_loss(model, batch, tasks, lam, accelerator, aux, opts.loss_weights)
    return loss * (len(batch["task_ids"]) * accelerator.num_processes / batch_size), per_task


def add_to_windows(windows: dict[str, dict[str, list]], logged: Logged, names: list[str]) -> None:
    """Add each pass's per-task record to its log key's window: per task, [summed loss, examples]."""
    for key, per_task in logged:
        window = windows.setdefault(key, {n: [0.0, 0] for n in names})
        for name, (total, count) in per_task.items():
            window[name][0] += total
            window[name][1] += count


def show_progress(acc: Accelerator, bar: tqdm, record: dict, keys: list[str], total_steps: int) -> None:
    """The log line on the progress bar, or as a plain line when the output is not a terminal (CI, log files)."""
    mean_loss = np.mean(list(record["loss"].values()))
    extra = "".join(f" {k.removesuffix('_loss')} {np.mean(list(record[k].values())):.4f}" for k in keys if k != "loss")
    bar.set_postfix(lam=f"{record['lambda']:.2f}", loss=f"{mean_loss:.4f}{extra}")
    if bar.disable:
        acc.print(
            f"[student] step {record['step']}/{total_steps} λ {record['lambda']:.3f} lr {record['lr']:.2e} "
            f"loss {mean_loss:.4f}{extra} {record['examples_per_s']:.1f} ex/s"
        )
