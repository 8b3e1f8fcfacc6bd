"""Command line: `python -m pipeline run|status`.

    python -m pipeline run --config configs/smoke.yaml --out /tmp/smoke          # every stage, tiny model, ~1 min
    python -m pipeline run --stage teachers --config configs/glue-small.yaml --data-dir ../shared/data/glue
    python -m pipeline status --out artifacts/smoke
    python -m pipeline predict --model artifacts/smoke/student/model --task sst2 --input texts.jsonl
    python -m pipeline run --config configs/smoke.yaml --student.lr=3e-4        # reruns student and later only

Overrides are `--section.key=value` (values parsed as Python literals); they win over the YAML file, which wins
over the defaults in pipeline/config.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import yaml

from pipeline.config import ConfigError, RunConfig, load_config, to_dict
from pipeline.glue import DataError
from pipeline.model import ModelLoadError
from pipeline.store import StoreError
from pipeline.training import TrainingInterrupted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run stages (and whatever they need)"), ("status", "show what is done")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, help="YAML run config (default: the run folder's config.yaml)")
        p.add_argument("--out", type=Path, help="run folder (default: artifacts/<config name>/)")
        p.add_argument("--data-dir", help="folder in the GLUE TSV layout (sets data.data_dir)")
        if name == "run":
            p.add_argument("--stage", help="run this stage and what it needs (default: all stages)")
            p.add_argument("--force", action="store_true", help="rerun the stage (all stages without --stage)")
    p = sub.add_parser("predict", help="run a trained model on new text (see pipeline/predict.py)")
    p.add_argument("--model", required=True, help="a saved model folder, e.g. artifacts/RUN/student/model")
    p.add_argument("--task", required=True, help="which head to use, e.g. sst2")
    p.add_argument("--input", required=True, help="TSV, CSV or JSONL file, or - for JSON Lines on stdin")
    p.add_argument("--output", help="write JSON Lines here (default: stdout)")
    p.add_argument("--batch-size", type=int, default=128)
    return parser


def resolve(args: argparse.Namespace, extra: list[str], for_status: bool = False) -> tuple[RunConfig, Path]:
    overrides = list(extra)
    if args.data_dir is not None:
        overrides.append(f"--data.data_dir={str(args.data_dir)!r}")
    config_path = args.config
    if config_path is None and args.out is not None and (args.out / "config.yaml").is_file():
        config_path = args.out / "config.yaml"
    cfg = load_config(config_path, overrides)
    run_dir = args.out if args.out is not None else Path("artifacts") / cfg.name
    return cfg, run_dir


def make_accelerator():
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    # Several processes but no GPU (e.g. `accelerate launch --multi_gpu` on a CPU machine): Accelerate only sets
    # up gloo ranks (MULTI_CPU) when asked for the CPU explicitly; otherwise each rank would train alone.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # Heads of tasks absent from a batch get no gradient; DDP must be told so.
    # Only the main process reads and tokenises the data while the others wait: allow hours, not NCCL's minutes.
    handlers = [
        DistributedDataParallelKwargs(find_unused_parameters=True),
        InitProcessGroupKwargs(timeout=timedelta(hours=3)),
    ]
    return Accelerator(cpu=cpu, kwargs_handlers=handlers)


def cmd_run(cfg: RunConfig, run_dir: Path, stage: str | None, force: bool) -> None:
    from pipeline.dag import run_stages
    from pipeline.store import write_text

    accelerator = make_accelerator()
    ran = run_stages(cfg, run_dir, accelerator, target=stage, force=force)
    if accelerator.is_main_process:  # written after success, so a failed run never replaces a good record
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    accelerator.print(f"done: ran {', '.join(ran) or 'nothing (all up to date)'}; run folder {run_dir}")
    accelerator.end_training()


def cmd_status(cfg: RunConfig, run_dir: Path) -> None:
    from pipeline.dag import stage_order, stage_status

    memo: dict = {}
    print(f"run folder {run_dir}")
    for name in stage_order(cfg):
        state, why = stage_status(name, cfg, run_dir, memo)
        print(f"  {name:<9} {state:<8} {why}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars drown the stage output
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "predict":
            if extra:
                raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
            from pipeline.predict import run_predict

            return run_predict(args.model, args.task, args.input, args.output, args.batch_size)
        cfg, run_dir = resolve(args, extra)
        if args.command == "run":
            cmd_run(cfg, run_dir, args.stage, args.force)
        else:
            cmd_status(cfg, run_dir)
    except (ConfigError, DataError, StoreError, ModelLoadError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 143
    return 0
