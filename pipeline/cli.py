"""Command line: `python -m pipeline run|status|predict|export|config|reproduce-glue`.

    python -m pipeline run --config configs/smoke.yaml --out /tmp/smoke          # every stage, tiny model, ~20 s
    python -m pipeline run --stage teachers --config configs/glue-small.yaml --data-dir ../shared/data/glue
    python -m pipeline status --out artifacts/smoke
    python -m pipeline config show --config configs/glue-small.yaml --student.lr=2e-4   # every key, explained
    python -m pipeline predict --model artifacts/smoke/student/model --task sst2 --input texts.jsonl
    python -m pipeline export --model artifacts/smoke/student/model --to exported  # exported/<task>/: transformers
    python -m pipeline run --config configs/smoke.yaml --student.lr=3e-4        # reruns student and later only
    python -m pipeline run --config configs/smoke.yaml --report-to tensorboard  # curves in RUN/tracking/
    python -m pipeline reproduce-glue --config configs/glue-small.yaml --data-dir ../shared/data/glue \
        --seeds 3 --out results/repro                                            # the paper's table; --dry-run
    python -m pipeline reproduce-glue ... --tune student.lr=5e-5,1e-4,2e-4   # each student variant tuned on dev
    python -m pipeline reproduce-glue ... --tune teachers.lr=5e-5,1e-4        # each task's teacher tuned on dev

Overrides are `--section.key=value` (values parsed as Python literals); they win over the YAML file, which wins
over the defaults in pipeline/core/config.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.core.config import TEACHER_KEYS, TRACKERS, RunConfig, load_config
from pipeline.core.errors import ConfigError, PipelineError, TrainingInterrupted

STAGE_NAMES = "data, teachers, distill, student, evaluate, report"  # for --help; the registry is stages.STAGES


def add_run_arguments(p: argparse.ArgumentParser, stage: bool = True, run: bool = True) -> None:
    """The arguments of `run` (of `status` without `run`'s own); `stage`: --stage too (not for `python -m student`)."""
    p.add_argument("--config", type=Path, help="YAML run config (default: the run folder's config.yaml)")
    p.add_argument("--out", type=Path, help="run folder (default: artifacts/<config name>/)")
    p.add_argument("--data-dir", help="folder in the GLUE TSV layout (sets data.data_dir)")
    if not run:
        return
    if stage:
        p.add_argument("--stage", help=f"run this stage and what it needs (default: all stages; {STAGE_NAMES})")
    redo = "rerun the stage (all stages without --stage)" if stage else "rerun the student even when it is done"
    p.add_argument("--force", action="store_true", help=redo)
    p.add_argument(
        "--report-to",
        choices=list(TRACKERS),
        default="none",
        help="also send training curves to TensorBoard / W&B (all = both), logged under RUN/tracking/",
    )


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
        add_run_arguments(p, run=name == "run")
        if name == "status":
            p.add_argument(
                "--clean", action="store_true", help="remove the files no stage made and the leftovers of interrupted "
                "writes (*.previous, .*.tmp) that status lists as extras"
            )  # fmt: skip
    p = sub.add_parser("config", help="print a config as it resolves (file, overrides, defaults), every key explained")
    p.add_argument("action", choices=["show"], help="show: the resolved config, each key with its meaning")
    add_run_arguments(p, run=False)
    p = sub.add_parser("reproduce-glue", help="Single vs Multi vs BAM and ablations over seeds (pipeline/experiments/)")
    p.add_argument("--config", type=Path, required=True, help="YAML run config, e.g. configs/glue-small.yaml")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs, results.json, table.md and plots")
    p.add_argument("--data-dir", help="folder in the GLUE TSV layout (sets data.data_dir)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 1..N for every variant (default 3)")
    p.add_argument("--only-seeds", metavar="S1,S2,...",
                   help="run only these of the seeds 1..N (e.g. one per process or machine, all in the same --out); "
                   "the table reports every finished run of the N")  # fmt: skip
    p.add_argument("--variants", help="comma-separated subset of: single, multi, bam, no-layerwise, no-sampling, "
                   "no-annealing (default: these); the paper's variants made of several runs single-single, "
                   "multi-multi, bam-ft; and the multitask options round-robin, summed, pcgrad, fgm, fgsm, pgd, "
                   "supcon, siamese, unfreeze; the regression settings label-scale, standardised, "
                   "standardised-0.6, prior, running, stsb-x2, swap-pairs, mlp-head, mean-pool, multi-label-scale, "
                   "multi-standardised; "
                   "the smaller student and ensembles single-small, multi-small, bam-small, distil-small, "
                   "single-bottom, multi-bottom, bam-bottom, bam-ensemble (--seeds 3) "
                   "(these four groups run only "
                   "when named)")  # fmt: skip
    p.add_argument("--tune", action="append", metavar="SECTION.KEY=V1,V2,...",
                   help="student.KEY: tune each student variant on the first seed's dev average over these values; "
                   f"teachers.KEY ({', '.join(TEACHER_KEYS)}): tune the teachers per task on their dev score, "
                   "before the students; repeat for a "
                   "grid; every seed then runs with the best; e.g. --tune student.lr=5e-5,1e-4,2e-4 --tune "
                   "teachers.lr=5e-5,1e-4")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan, what is done and the time it expects")
    p = sub.add_parser("predict", help="run a trained model on new text (see pipeline/core/predict.py)")
    p.add_argument("--model", required=True, help="a saved model folder, e.g. artifacts/RUN/student/model")
    p.add_argument("--task", required=True, help="which head to use, e.g. sst2")
    p.add_argument("--input", required=True, help="TSV, CSV or JSONL file, or - for JSON Lines on stdin")
    p.add_argument("--output", help="write JSON Lines here (default: stdout)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="texts per forward pass (default 128)")
    p.add_argument(
        "--max-length", type=_positive_int, default=128, help="tokens per text (pair) after truncation (default 128)"
    )
    p = sub.add_parser("export", help="write each task of a model as a transformers classifier (core/export.py)")
    p.add_argument("--model", required=True, help="a saved model folder, e.g. artifacts/RUN/student/model")
    p.add_argument("--to", required=True, help="where to write: one folder per task, TO/<task>/")
    p.add_argument("--task", help="export only this task (default: every task of the model)")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload each task's folder to the Hub model repository "
                   "REPO-<task> (with --task, to REPO itself), e.g. user/bam-glue-small")  # fmt: skip
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repositories private")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command in ("predict", "export") and extra:
            raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
        cfg, run_dir = (None, None) if args.command in ("predict", "export") else resolve(args, extra)
        from transformers.utils import logging as hf_logging

        from pipeline import commands  # torch, transformers and the stages: only once a command runs

        hf_logging.disable_progress_bar()  # weight loading/saving bars drown the stage output
        if args.command == "predict":
            return commands.run_predict(args.model, args.task, args.input, args.output, args.batch_size,
                                        args.max_length)  # fmt: skip
        if args.command == "export":
            return commands.run_export(args.model, args.to, args.task, args.push_to_hub, args.private)
        if args.command == "reproduce-glue":
            command = "python -m pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
            commands.cmd_reproduce(cfg, run_dir, args, command)
        elif args.command == "config":
            commands.cmd_config(cfg)
        elif args.command == "run":
            commands.cmd_run(cfg, run_dir, args.stage, args.force, args.report_to)
        else:
            commands.cmd_status(cfg, run_dir, args.clean)
    except (PipelineError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 143
    return 0
