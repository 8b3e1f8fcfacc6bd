"""Train the multitask student with teacher annealing, task sampling and layer-wise learning rates.

    accelerate launch --config_file accelerate_config.yaml -m student --config configs/bam-paper.yaml   # GPUs, bf16
    python -m student --config configs/smoke.yaml --out /tmp/smoke                    # CPU, one process
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m student --config configs/smoke.yaml --out /tmp/smoke                        # two CPU ranks (gloo)

Every optimizer step draws a global batch from the run's plan (p(τ) ∝ |D_τ|^α, mixed tasks in one batch); each
process takes its slice. λ = step / total_steps moves the target from the teacher's softmax to the gold label.
The multitask options (`student.mixing`, `adversarial`, `supcon_weight`, `pair_mode`, `unfreeze_every`; README
"Options") change how a step is drawn and what is backpropagated; their defaults are BAM's.
"""

from __future__ import annotations

import math
import shutil
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from pipeline.core.card import current_command
from pipeline.core.checkpoint import resume, save_checkpoint
from pipeline.core.config import ConfigError, RunConfig, StudentConfig, to_dict
from pipeline.core.data import collate, load_split
from pipeline.core.loss import annealing_lambda, multitask_loss, supervised_contrastive_loss
from pipeline.core.model import build_model, load_tokenizer, resolve_model_path, save_model
from pipeline.core.sampling import examples_per_step, rank_slice, steps_for, student_plan, task_probabilities
from pipeline.core.store import load_soft_targets, write_json
from pipeline.core.tasks import TaskSpec
from pipeline.core.training import (
    GracefulStop,
    TrainingInterrupted,
    backward_if_trained,
    compute_record,
    drop_frozen_grads,
    evaluate,
    freeze_deeper,
    get_lr_multiplier,
    log_record,
    make_optimizer,
    micro_batch_size,
    model_inputs,
    set_lr,
    start_tracking,
    stop_tracking,
    to_device,
    trainable_depth,
)
from student.adversarial import adversarial_backward
from student.pcgrad import pcgrad_backward


def train_student(
    cfg: RunConfig, tasks: list[TaskSpec], run_dir: Path, out_dir: Path, acc: Accelerator, resume_key: str
) -> dict[str, object]:
    """Train the student on `tasks`' splits stored in `run_dir` (and, unless λ is fixed at 1, their soft targets in
    `run_dir/distill/`) with `cfg.student`; writes `out_dir/model/`, `out_dir/log.jsonl` (every `log_every` steps,
    then the dev metrics) and `out_dir/summary.json`, and sends the log's records to the trackers. Resumes from a
    checkpoint in `out_dir` made for `resume_key`."""
    sc = cfg.student
    train = [load_split(run_dir, t.name, "train") for t in tasks]
    uses_teacher = sc.fixed_lambda != 1.0
    teacher = None
    if uses_teacher:  # verified join: ids, order and data fingerprint must match, or this raises
        teacher = [
            load_soft_targets(run_dir / "distill" / t.name, "train", s.ids, s.fingerprint) for t, s in zip(tasks, train)
        ]

    # setup
    set_seed(sc.seed)
    model_path = resolve_model_path(cfg.model, run_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    check_options(sc, tasks, train, acc.num_processes)
    model = build_model(model_path, tasks, cfg.model, seed=sc.seed, pair_mode=sc.pair_mode)
    max_outputs, siamese, pad_id = model.max_outputs, sc.pair_mode == "siamese", model.pad_id
    embeddings = model.encoder.get_input_embeddings()  # where adversarial perturbations go
    micro_batch_size(sc.batch_size, acc.num_processes, sc.grad_accum, "student")
    sizes = [len(s) for s in train]
    step_rows = examples_per_step(sc.mixing, sc.batch_size, len(tasks))
    total_steps = steps_for(sum(sizes), step_rows, sc.epochs)
    warmup_steps = int(sc.warmup * total_steps)
    lengths = [s.lengths for s in train]
    plan = student_plan(
        sc.mixing, sizes, lengths, sc.batch_size, total_steps, sc.alpha, sc.seed, sc.shuffle_all, sc.group_by_length
    )
    unfreeze_steps = sc.unfreeze_every * (total_steps / sc.epochs if sc.unfreeze_unit == "epochs" else 1)
    optimizer = make_optimizer(model, sc.lr, sc.layer_decay, sc.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    probs = task_probabilities(sizes, 1.0 if sc.shuffle_all else sc.alpha)
    if sc.mixing != "mixed":  # every task gets the same number of batches
        probs = task_probabilities(sizes, 0.0)
    acc.print(
        f"[student] {total_steps} steps of {step_rows}; p(task) = "
        + ", ".join(f"{t.name} {p:.3f}" for t, p in zip(tasks, probs))
    )

    # resume
    ckpt_root = out_dir / "checkpoints"
    start_step, before = resume(out_dir, resume_key, model, optimizer, acc, "[student]", total_steps)

    # loop
    model.train()
    log_path = out_dir / "log.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        range(start_step, total_steps),
        initial=start_step,
        total=total_steps,
        desc="student",
        disable=None if acc.is_local_main_process else True,
        dynamic_ncols=True,
    )
    names, adv = [t.name for t in tasks], sc.adversarial != "none"

    def empty_window() -> dict[str, list]:  # per task: summed loss and examples since the last log line
        return {n: [0.0, 0] for n in names}

    started, window, adv_window = time.time(), empty_window(), empty_window()
    ckpt_state = {"digest": resume_key, "total_steps": total_steps, "config": to_dict(cfg)}

    def state() -> dict:  # a checkpoint's state: with the training seconds so far, so wall_s spans resumes
        return {**ckpt_state, "elapsed_s": before + time.time() - started}

    joined = (train, tasks, teacher if uses_teacher else None, max_outputs)  # what `collate` joins plan rows to

    def loss_of(batch: dict[str, torch.Tensor], kind: str = "clean") -> torch.Tensor:
        """The batch's share of the step's loss: its mean loss × its rows × processes / batch_size. That is BAM's
        mean over the step's rows, and with summed and pcgrad (batch_size rows of each task per step) the sum over
        tasks of each task's mean. `kind` is the pass (`adversarial_backward`): the clean pass adds supcon and is
        logged as `loss`; the pass at the final adversarial δ is logged as `adv_loss`; PGD's probes are not logged."""
        loss, per_task = forward_loss(model, batch, tasks, lam, sc, acc, contrastive=kind == "clean")
        logged = {"clean": window, "adversarial": adv_window}.get(kind)
        if logged is not None:
            for name, (total, count) in per_task.items():
                logged[name][0] += total
                logged[name][1] += count
        return loss * (len(batch["task_ids"]) * acc.num_processes / sc.batch_size)

    start_tracking(acc, cfg, "student", "student")
    with GracefulStop() as stop:
        for step in bar:
            lam = annealing_lambda(step, total_steps, sc.fixed_lambda)
            set_lr(optimizer, get_lr_multiplier(step, total_steps, warmup_steps))
            parts = rank_slice(plan[step], acc.process_index, acc.num_processes, sc.grad_accum)
            if unfreeze_steps and acc.num_processes == 1:
                freeze_deeper(optimizer, trainable_depth(step, unfreeze_steps))
            if sc.mixing in ("summed", "pcgrad"):
                # a batch per task of each micro-batch: PCGrad needs each task's own gradient, and summed pads each
                # task to its own lengths (the loss, a sum of task means, is the same as over the whole step)
                parts = [part[part[:, 0] == t] for part in parts for t in np.unique(part[:, 0])]
            batches = [
                to_device(collate([tuple(x) for x in part], *joined, siamese, pad_id), acc.device) for part in parts
            ]
            if sc.mixing == "pcgrad":
                losses = ((int(b["task_ids"][0]), loss_of(b)) for b in batches)  # lazy: one graph at a time
                scaled = ((t, loss if acc.scaler is None else acc.scaler.scale(loss)) for t, loss in losses)
                pcgrad_backward(acc.unwrap_model(model), scaled, len(tasks), np.random.default_rng([sc.seed, step]))
            else:
                for k, batch in enumerate(batches):
                    sync = nullcontext() if k == len(batches) - 1 else acc.no_sync(model)
                    if not adv:
                        with sync:
                            backward_if_trained(acc, loss_of(batch))
                    else:
                        adversarial_backward(model, acc, embeddings, partial(loss_of, batch), sc, sync)
            drop_frozen_grads(optimizer, trainable_depth(step, unfreeze_steps))
            if sc.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), sc.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % sc.log_every == 0 or done == total_steps:
                record = {
                    "step": done,
                    "lambda": lam,
                    "lr": optimizer.param_groups[0]["lr"],
                    # mean loss over this process's examples since the previous line
                    "loss": {n: s / c for n, (s, c) in window.items() if c},
                    # the same examples' loss at the adversarial embeddings (adversarial options only)
                    **({"adv_loss": {n: s / c for n, (s, c) in adv_window.items() if c}} if adv else {}),
                    "examples_seen": dict(
                        zip(names, np.bincount(plan[:done, :, 0].ravel(), minlength=len(tasks)).tolist())
                    ),
                    "examples_per_s": (done - start_step) * step_rows / (time.time() - started),
                }
                mean_loss = np.mean(list(record["loss"].values()))
                adv_loss = f" adv {np.mean(list(record['adv_loss'].values())):.4f}" if adv else ""
                bar.set_postfix(lam=f"{lam:.2f}", loss=f"{mean_loss:.4f}{adv_loss}")
                if bar.disable:  # not a terminal (CI, log files): plain lines instead of a bar
                    acc.print(
                        f"[student] step {done}/{total_steps} λ {lam:.3f} lr {record['lr']:.2e} loss {mean_loss:.4f}"
                        f"{adv_loss} {record['examples_per_s']:.1f} ex/s"
                    )
                log_record(acc, log_path, record, "student")
                window, adv_window = empty_window(), empty_window()
            if sc.checkpoint_every and done % sc.checkpoint_every == 0 and done < total_steps:
                save_checkpoint(ckpt_root, done, model, optimizer, acc, state(), sc.keep_checkpoints)
            if stop.should_stop(acc):
                path = save_checkpoint(ckpt_root, done, model, optimizer, acc, state(), sc.keep_checkpoints)
                raise TrainingInterrupted(
                    f"[student] stopped by a signal after step {done}/{total_steps}; saved {path}. "
                    "Run the same command again to resume."
                )

    if unfreeze_steps:
        freeze_deeper(optimizer, math.inf)  # all parameters trainable again (the model leaves this function)

    # eval
    metrics, dev_examples = {}, {}
    for i, task in enumerate(tasks):
        for split in task.dev_splits:
            dev = load_split(run_dir, task.name, split)
            desc = f"student {task.name}/{split}"
            metrics.setdefault(task.name, {})[split] = evaluate(model, dev, i, tasks, acc, sc.eval_batch_size, desc)
            dev_examples.setdefault(task.name, {})[split] = len(dev)  # predict() checks it covered each row once
    acc.print("[student] " + "; ".join(f"{t} {m}" for t, m in metrics.items()))
    log_record(acc, log_path, {"step": total_steps, "dev": metrics}, "student")
    stop_tracking(acc)

    # save
    counts = np.bincount(plan[:, :, 0].ravel(), minlength=len(tasks))
    summary = {
        "total_steps": total_steps,
        "batch_size": step_rows,  # examples per optimizer step
        "processes": acc.num_processes,
        "examples_per_task": {t.name: int(c) for t, c in zip(tasks, counts)},
        "task_probabilities": {t.name: float(p) for t, p in zip(tasks, probs)},
        "dev": metrics,
        "dev_examples": dev_examples,
        "wall_s": round(before + time.time() - started, 2),  # training time, over resumes
        "compute": compute_record(acc, start_step),
        "command": current_command(),
    }
    if acc.is_main_process:
        save_model(acc.unwrap_model(model), tokenizer, out_dir / "model")
        write_json(out_dir / "summary.json", summary)
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    acc.wait_for_everyone()
    return {"total_steps": total_steps, "examples_per_task": summary["examples_per_task"]}


def forward_loss(
    model, batch: dict[str, torch.Tensor], tasks: list[TaskSpec], lam: float, sc: StudentConfig, accelerator,
    contrastive: bool = True,
) -> tuple[torch.Tensor, dict[str, tuple[float, int]]]:  # fmt: skip
    """One forward pass: the annealed distillation loss (the batch mean), plus, with `contrastive` and
    `student.supcon_weight` > 0, the weighted supervised contrastive loss of the batch's classification rows.
    Returns the loss and `multitask_loss`'s per-task record."""
    with accelerator.autocast():
        result = model(**model_inputs(batch), return_features=contrastive and sc.supcon_weight > 0)
    outputs, features = result if isinstance(result, tuple) else (result, None)
    loss, per_task = multitask_loss(outputs, batch["task_ids"], batch["labels"], tasks, lam, batch.get("teacher"))
    if features is not None:
        classes = torch.tensor([t.kind == "classification" for t in tasks], device=outputs.device)[batch["task_ids"]]
        labels, groups = batch["labels"][classes].long(), batch["task_ids"][classes]
        supcon = supervised_contrastive_loss(features[classes], labels, groups, sc.supcon_temperature)
        loss = loss + sc.supcon_weight * supcon
    return loss, per_task


def check_options(sc: StudentConfig, tasks: list[TaskSpec], train: list, processes: int) -> None:
    """The option checks that need the run: PCGrad's process count, the token types a siamese model cuts pairs by.

    PCGrad runs on one process: it needs every task's whole gradient in one place, before any is summed, and
    DistributedDataParallel only ever all-reduces sums.
    """
    if sc.mixing == "pcgrad" and processes > 1:
        raise ConfigError(
            f"'student.mixing' pcgrad runs on one process (it projects each task's whole gradient); this run has "
            f"{processes}. Run it without `accelerate launch`, or choose 'student.mixing' summed"
        )
    if sc.pair_mode == "siamese":
        for task, split in zip(tasks, train):
            if len(task.text_columns) == 2 and not (split.token_type_ids == 1).any():
                raise ConfigError(
                    f"'student.pair_mode' siamese cuts sentence pairs by token type, but the tokenizer gave "
                    f"{task.name}'s pairs none (no token type 1); use 'student.pair_mode' cross with this model"
                )
