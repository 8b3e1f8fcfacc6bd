"""What each command does (`python -m pipeline …`, pipeline/cli.py): loaded once the command line is parsed, so
that `--help` and a bad argument answer without importing torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from pipeline.core.accel import make_accelerator
from pipeline.core.config import ConfigError, RunConfig, to_dict
from pipeline.core.config_doc import show_config
from pipeline.core.errors import DataError, ExportError
from pipeline.core.export import export_model, hub_repo
from pipeline.core.model import load_tokenizer
from pipeline.core.predict import load_student, predict_texts, read_inputs, task_specs
from pipeline.core.store import write_text
from pipeline.core.tasks import get_glue_task
from pipeline.dag import clean, run_stages, stage_order, stage_status, stray_files
from pipeline.experiments.run import reproduce
from pipeline.experiments.variants import parse_seeds, parse_tune, parse_variants
from stages import STAGES

__all__ = ["cmd_config", "cmd_reproduce", "cmd_run", "cmd_status", "run_export", "run_predict", "show_config"]


def run_predict(
    model_dir: str, task_name: str, input_path: str, output: str | None, batch_size: int, max_length: int = 128
) -> int:
    accelerator = make_accelerator(precision=None)
    model = load_student(model_dir).to(accelerator.device)
    specs = {task.name: task for task in task_specs(model)}
    if task_name not in specs:
        try:
            task_name = get_glue_task(task_name).name  # "SST-2" → "sst2"
        except ValueError:
            pass
    if task_name not in specs:
        raise DataError(f"{model_dir} has no head for '{task_name}' (it has: {', '.join(model.task_names)})")
    task = specs[task_name]
    tokenizer = load_tokenizer(model_dir)
    positions = getattr(model.encoder.config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        raise ConfigError(f"--max-length {max_length} is more than the model's {positions} position embeddings")
    texts = read_inputs(input_path, task)
    results = predict_texts(model, tokenizer, task, texts, accelerator, batch_size, max_length)
    lines = "".join(json.dumps(r) + "\n" for r in results)
    if output is None:
        sys.stdout.write(lines)
    else:
        write_text(output, lines)
    return 0


def run_export(model_dir: str, to: str, task: str | None, repo: str | None, private: bool = False) -> int:
    try:
        folders = export_model(model_dir, to, task, repo, private)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, folder in folders.items():
        pushed = f" (pushed to the Hub: {hub_repo(repo, name, task is not None)})" if repo else ""
        print(f"{name}: {folder}{pushed}")
    return 0


def cmd_run(cfg: RunConfig, run_dir: Path, stage: str | None, force: bool, report_to: str = "none") -> None:
    accelerator = make_accelerator(report_to, run_dir, cfg.model.precision)
    ran = run_stages(STAGES, cfg, run_dir, accelerator, target=stage, force=force)
    if accelerator.is_main_process:  # written after success, so a failed run never replaces a good record
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    accelerator.print(f"done: ran {', '.join(ran) or 'nothing (all up to date)'}; run folder {run_dir}")
    accelerator.end_training()


def cmd_status(cfg: RunConfig, run_dir: Path, remove_extras: bool = False) -> None:
    """Each stage in running order with the stages it needs (the DAG), whether it is done, and why not; then the
    files that are no stage's output (removed with `remove_extras`)."""
    memo: dict = {}
    needs = {name: ", ".join(STAGES[name].needs(cfg)) or "-" for name in stage_order(STAGES, cfg)}
    width = max(len(n) for n in needs.values())
    print(f"run folder {run_dir}")
    print(f"  {'stage':<9} {'needs':<{width}} {'state':<8} why")
    for name, upstream in needs.items():
        state, why = stage_status(STAGES, name, cfg, run_dir, memo)
        print(f"  {name:<9} {upstream:<{width}} {state:<8} {why}")
    extras = clean(STAGES, cfg, run_dir) if remove_extras else stray_files(STAGES, cfg, run_dir, memo)
    if extras:
        print(("removed" if remove_extras else "extras (no stage made them; status --clean removes them)") + ":")
        print("".join(f"  {path.relative_to(run_dir)}\n" for path in extras), end="")


def cmd_reproduce(cfg: RunConfig, run_dir: Path, args, command: str) -> None:
    variants, (grid, teacher_grid) = parse_variants(args.variants), parse_tune(args.tune, cfg)
    accelerator = make_accelerator(precision=cfg.model.precision)
    only = parse_seeds(args.seeds, args.only_seeds) if args.only_seeds is not None else None
    reproduce(cfg, run_dir, args.seeds, variants, accelerator, command, args.dry_run, grid, teacher_grid, only)
    accelerator.end_training()


def cmd_config(cfg: RunConfig) -> None:
    print(show_config(cfg))
