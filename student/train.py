"""Train the multitask student with teacher annealing, task sampling and layer-wise learning rates.

    accelerate launch --config_file accelerate_config.yaml -m student --config configs/glue-small.yaml
    python -m student --config configs/smoke.yaml --out /tmp/smoke                    # CPU, one process
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m student --config configs/smoke.yaml --out /tmp/smoke                        # two CPU ranks (gloo)

Every optimizer step draws a global batch from the run's plan (p(τ) ∝ |D_τ|^α, mixed tasks in one batch); each
process takes its slice. λ = step / total_steps moves the target from the teacher's softmax to the gold label.
"""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext

import numpy as np
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from pipeline.card import current_command
from pipeline.checkpoint import find_resume_checkpoint, load_checkpoint, save_checkpoint
from pipeline.config import to_dict
from pipeline.dag import Context
from pipeline.data import collate, load_split
from pipeline.model import build_model, load_tokenizer, resolve_model_path, save_model
from pipeline.store import load_soft_targets, trim_log, write_json
from pipeline.tasks import get_task
from pipeline.training import (
    GracefulStop,
    TrainingInterrupted,
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
from student.loss import annealing_lambda, multitask_loss
from student.sampling import group_by_length, multitask_plan, rank_slice, steps_for, task_probabilities


def train_student(ctx: Context) -> dict[str, object]:
    """Train the student; writes `student/model/`, `student/log.jsonl` (every `log_every` steps, then the dev
    metrics) and `student/summary.json`, and sends the log's records to the trackers."""
    cfg, acc, sc = ctx.cfg, ctx.accelerator, ctx.cfg.student
    out_dir = ctx.run_dir / "student"
    tasks = [get_task(name) for name in cfg.data.tasks]
    train = [load_split(ctx.run_dir, t.name, "train") for t in tasks]
    uses_teacher = sc.fixed_lambda != 1.0
    teacher = None
    if uses_teacher:  # verified join: ids, order and data fingerprint must match, or this raises
        teacher = [
            load_soft_targets(ctx.run_dir / "distill" / t.name, "train", s.ids, s.fingerprint)
            for t, s in zip(tasks, train)
        ]

    # setup
    set_seed(sc.seed)
    model_path = resolve_model_path(cfg.model, ctx.run_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    model = build_model(model_path, tasks, cfg.model, seed=sc.seed)
    max_outputs = model.max_outputs
    micro_batch_size(sc.batch_size, acc.num_processes, sc.grad_accum, "student")
    sizes = [len(s) for s in train]
    total_steps = steps_for(sum(sizes), sc.batch_size, sc.epochs)
    warmup_steps = int(sc.warmup * total_steps)
    plan = multitask_plan(sizes, sc.batch_size, total_steps, sc.alpha, sc.seed, sc.shuffle_all)
    plan = group_by_length(plan, [s.lengths for s in train], sc.group_by_length, sc.seed)
    optimizer = make_optimizer(model, sc.lr, sc.layer_decay, sc.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    probs = task_probabilities(sizes, 1.0 if sc.shuffle_all else sc.alpha)
    acc.print(
        f"[student] {total_steps} steps of {sc.batch_size}; p(task) = "
        + ", ".join(f"{t.name} {p:.3f}" for t, p in zip(tasks, probs))
    )

    # resume
    ckpt_root = out_dir / "checkpoints"
    start_step = 0
    found = find_resume_checkpoint(ckpt_root, ctx.digest, log=acc.print)
    if found is not None:
        start_step = load_checkpoint(found[0], model, optimizer, acc)["step"]
        acc.print(f"[student] resuming from {found[0].name} ({start_step}/{total_steps} steps done)")
    if acc.is_main_process:
        trim_log(out_dir / "log.jsonl", start_step)

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
    names = [t.name for t in tasks]
    started, window = time.time(), {n: [0.0, 0] for n in names}
    ckpt_state = {"digest": ctx.digest, "total_steps": total_steps, "config": to_dict(cfg)}
    start_tracking(acc, cfg, "student", "student")
    with GracefulStop() as stop:
        for step in bar:
            lam = annealing_lambda(step, total_steps, sc.fixed_lambda)
            set_lr(optimizer, get_lr_multiplier(step, total_steps, warmup_steps))
            parts = rank_slice(plan[step], acc.process_index, acc.num_processes, sc.grad_accum)
            for k, part in enumerate(parts):
                items = [tuple(x) for x in part]
                batch = collate(items, train, tasks, teacher if uses_teacher else None, max_outputs)
                batch = to_device(batch, acc.device)
                sync = nullcontext() if k == len(parts) - 1 else acc.no_sync(model)
                with sync:
                    with acc.autocast():
                        outputs = model(**model_inputs(batch))
                    loss, per_task = multitask_loss(
                        outputs, batch["task_ids"], batch["labels"], tasks, lam, batch.get("teacher")
                    )
                    acc.backward(loss / len(parts))
                for name, (total, count) in per_task.items():
                    window[name][0] += total
                    window[name][1] += count
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
                    "examples_seen": dict(
                        zip(names, np.bincount(plan[:done, :, 0].ravel(), minlength=len(tasks)).tolist())
                    ),
                    "examples_per_s": (done - start_step) * sc.batch_size / (time.time() - started),
                }
                mean_loss = np.mean(list(record["loss"].values()))
                bar.set_postfix(lam=f"{lam:.2f}", loss=f"{mean_loss:.4f}")
                if bar.disable:  # not a terminal (CI, log files): plain lines instead of a bar
                    acc.print(
                        f"[student] step {done}/{total_steps} λ {lam:.3f} lr {record['lr']:.2e} loss {mean_loss:.4f} "
                        f"{record['examples_per_s']:.1f} ex/s"
                    )
                log_record(acc, log_path, record, "student")
                window = {n: [0.0, 0] for n in names}
            if sc.checkpoint_every and done % sc.checkpoint_every == 0 and done < total_steps:
                save_checkpoint(ckpt_root, done, model, optimizer, acc, ckpt_state, sc.keep_checkpoints)
            if stop.should_stop(acc):
                path = save_checkpoint(ckpt_root, done, model, optimizer, acc, ckpt_state, sc.keep_checkpoints)
                raise TrainingInterrupted(
                    f"[student] stopped by a signal after step {done}/{total_steps}; saved {path}. "
                    "Run the same command again to resume."
                )

    # eval
    metrics, dev_examples = {}, {}
    for i, task in enumerate(tasks):
        for split in task.dev_splits:
            dev = load_split(ctx.run_dir, task.name, split)
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
        "batch_size": sc.batch_size,
        "processes": acc.num_processes,
        "examples_per_task": {t.name: int(c) for t, c in zip(tasks, counts)},
        "task_probabilities": {t.name: float(p) for t, p in zip(tasks, probs)},
        "dev": metrics,
        "dev_examples": dev_examples,
        "wall_s": round(time.time() - started, 2),
        "command": current_command(),
    }
    if acc.is_main_process:
        save_model(acc.unwrap_model(model), tokenizer, out_dir / "model")
        write_json(out_dir / "summary.json", summary)
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    acc.wait_for_everyone()
    return {"total_steps": total_steps, "examples_per_task": summary["examples_per_task"]}
