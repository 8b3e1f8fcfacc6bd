"""Fine-tune one single-task teacher ("Single"), exactly the student's architecture with one head.

Run through the pipeline (it prepares the data first):

    python -m pipeline run --stage teachers --config configs/smoke.yaml              # CPU, tiny model, seconds
    accelerate launch --config_file accelerate_config.yaml -m pipeline run --stage teachers \
        --config configs/bam-paper.yaml                                                 # GPUs, bf16
"""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from pipeline.core.card import card_data, current_command, hub_base_model, metrics_table, portable, render_card
from pipeline.core.checkpoint import resume, save_checkpoint
from pipeline.core.config import RunConfig, to_dict
from pipeline.core.data import collate, load_split
from pipeline.core.errors import TrainingInterrupted
from pipeline.core.loss import multitask_loss
from pipeline.core.metrics import main_score
from pipeline.core.model import build_model, build_model_from, load_tokenizer, resolve_model_path, save_model
from pipeline.core.sampling import group_by_length, rank_slice, single_task_plan, steps_for
from pipeline.core.selection import DevSelection
from pipeline.core.store import write_json, write_text
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


def train_teacher(
    cfg: RunConfig, task: TaskSpec, run_dir: Path, out_dir: Path, acc: Accelerator, resume_key: str
) -> dict[str, dict[str, float]]:
    """Fine-tune the teacher of `task` on its splits stored in `run_dir` with `cfg.teachers` (the task's own
    settings); writes `out_dir/model/` (with its card), `metrics.json` and `log.jsonl` (every 10 steps, then the
    dev metrics), and sends the same records to the trackers. Resumes from a checkpoint in `out_dir` made for
    `resume_key` (what the teacher depends on: another key is another teacher)."""
    tc = cfg.teachers
    tasks = [task]
    train = load_split(run_dir, task.name, "train")
    devs = {split: load_split(run_dir, task.name, split) for split in task.dev_splits}

    # setup
    set_seed(tc.seed)
    model_path = resolve_model_path(cfg.model, run_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    if tc.init_from is None:
        model = build_model(model_path, tasks, cfg.model, seed=tc.seed, layers=tc.layers, layers_key="teachers.layers")
    else:
        model = build_model_from(tc.init_from, tasks, cfg.model, tc.seed, tokenizer, need_heads=tc.epochs == 0)
    pad_id = model.pad_id
    micro_batch_size(tc.batch_size, acc.num_processes, tc.grad_accum, "teachers")
    total_steps = steps_for(len(train), tc.batch_size, tc.epochs) if tc.epochs else 0  # 0: the init_from model as is
    warmup_steps = int(tc.warmup * total_steps)
    plan = single_task_plan(len(train), tc.batch_size, total_steps, seed=tc.seed)
    plan = group_by_length(plan, [train.lengths], tc.group_by_length, tc.seed)
    optimizer = make_optimizer(model, tc.lr, tc.layer_decay, tc.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)

    # resume
    ckpt_root = out_dir / "checkpoints"
    start_step, before, found = resume(
        out_dir, resume_key, model, optimizer, acc, f"[teachers] {task.name}:", total_steps
    )
    log_path = out_dir / "log.jsonl"
    track = f"teachers/{task.name}"

    def dev_metrics(model) -> dict[str, dict[str, float]]:
        return {
            split: evaluate(model, dev, 0, tasks, acc, tc.eval_batch_size, desc=f"teacher {task.name}/{split}")
            for split, dev in devs.items()
        }

    selection = DevSelection(
        tc.eval_every, tc.select, acc, dev_metrics,
        lambda dev: {task.name: main_score(task, dev[task.dev_splits[0]])},
        lambda record: log_record(acc, log_path, record, track),
    )  # fmt: skip
    selection.restore(found)  # eval_every: dev metrics during training; select: the weights kept (last or best)

    # loop
    model.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        range(start_step, total_steps),
        initial=start_step,
        total=total_steps,
        desc=f"teacher {task.name}",
        disable=None if acc.is_local_main_process else True,
        dynamic_ncols=True,
    )
    started, examples = time.time(), 0
    start_tracking(acc, cfg, "teachers", track)
    ckpt_state = {"digest": resume_key, "total_steps": total_steps, "config": to_dict(cfg)}

    def checkpoint(done: int) -> Path:  # with the training seconds so far (wall_s spans resumes) and the choice
        state = {**ckpt_state, "elapsed_s": before + time.time() - started, **selection.checkpoint_state()}
        extra = selection.checkpoint_tensors()
        return save_checkpoint(ckpt_root, done, model, optimizer, acc, state, tc.keep_checkpoints, extra)

    with GracefulStop() as stop:
        for step in bar:
            set_lr(optimizer, get_lr_multiplier(step, total_steps, warmup_steps))
            parts = rank_slice(plan[step], acc.process_index, acc.num_processes, tc.grad_accum)
            step_loss = 0.0
            for k, part in enumerate(parts):
                batch = to_device(collate([tuple(x) for x in part], [train], tasks, pad_id=pad_id), acc.device)
                sync = nullcontext() if k == len(parts) - 1 else acc.no_sync(model)
                with sync:
                    with acc.autocast():
                        outputs = model(**model_inputs(batch))
                    loss, _ = multitask_loss(outputs, batch["task_ids"], batch["labels"], tasks, lam=1.0)
                    acc.backward(loss / len(parts))
                step_loss += loss.item() / len(parts)
            if tc.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            examples += tc.batch_size
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if (step + 1) % 10 == 0 or step + 1 == total_steps:
                rate = examples / (time.time() - started - selection.seconds)  # dev evaluations left out
                if bar.disable and ((step + 1) % 50 == 0 or step + 1 == total_steps):  # not a terminal: plain lines
                    acc.print(
                        f"[teachers] {task.name}: step {step + 1}/{total_steps} loss {step_loss:.4f} {rate:.1f} ex/s"
                    )
                record = {"step": step + 1, "loss": step_loss, "lr": optimizer.param_groups[0]["lr"]}
                log_record(acc, log_path, record | {"examples_per_s": rate}, track)
            selection.after_step(model, step + 1, total_steps)
            if tc.checkpoint_every and (step + 1) % tc.checkpoint_every == 0 and step + 1 < total_steps:
                checkpoint(step + 1)
            if stop.should_stop(acc):
                path = checkpoint(step + 1)
                raise TrainingInterrupted(
                    f"[teachers] {task.name}: stopped by a signal after step {step + 1}/{total_steps}; saved {path}. "
                    "Run the same command again to resume."
                )

    # eval: the last weights, or the best ones seen (`select`)
    metrics, selected_step = selection.finish(model, total_steps, dev_metrics(model))
    acc.print(f"[teachers] {task.name}: " + ", ".join(f"{s} {m}" for s, m in metrics.items()))
    stop_tracking(acc)

    # save
    if acc.is_main_process:
        save_model(acc.unwrap_model(model), tokenizer, out_dir / "model")
        check_saved_model(acc.unwrap_model(model), out_dir / "model", [devs[task.dev_splits[0]]], [task], acc)
        origin = f"`{portable(cfg.model.name_or_path, run_dir)}`"
        start = origin if tc.init_from is None else f"the model in `{portable(tc.init_from, run_dir)}`"
        trained = f"fine-tuned on {task.name} alone" if total_steps else f"taken as it is for {task.name}"
        about = (
            f'A single-task teacher ("Single" in BAM!, Clark et al., 2019): {start} {trained}, with the student\'s '
            "architecture and one head. The multitask student of this run learns from its cached predictions."
        )
        config = {"teachers": to_dict(tc), "model": to_dict(cfg.model)}
        base = hub_base_model(cfg.model.name_or_path) if tc.init_from is None else None  # a folder's origin: unknown
        data = card_data(cfg.data, tasks, f"bam-{cfg.name}-teacher-{task.name}", {task.name: metrics}, base)
        card = render_card(
            f"BAM! teacher: {task.name} ({cfg.name})", about, out_dir / "model", run_dir, tasks,
            metrics_table(metrics), config, current_command(), data,
        )  # fmt: skip
        write_text(out_dir / "model" / "README.md", card)
        write_json(
            out_dir / "metrics.json",
            {
                "task": task.name,
                "dev": metrics,
                "score": main_score(task, metrics[task.dev_splits[0]]),
                "steps": total_steps,
                "selected_step": selected_step,  # the step of the weights kept (`select`)
                "train_examples": len(train),
                "wall_s": round(before + time.time() - started, 2),  # training time, over resumes
                "compute": compute_record(acc, start_step),
            },
        )
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    acc.wait_for_everyone()
    return metrics
