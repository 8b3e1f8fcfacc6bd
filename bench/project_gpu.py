"""A projection, not a measurement: GPU hours of configs/bam-paper.yaml (BERT-Large, nine GLUE tasks) on H100s.

    python bench/project_gpu.py [--mfu 0.4] [--pad-efficiency 0.9] [--out bench/results]

Work = useful FLOPs: 6 × non-embedding parameters per trained token, 2 × per predicted token (the benchmark's
definition; attention-score FLOPs are left out), divided by the pad efficiency (padded tokens cost compute too).
Tokens per example are measured by tokenising the GLUE files in GLUE_DIR (default ../shared/data/glue) with the
bundled MiniLM's tokenizer, which is bert-base-uncased's WordPiece vocabulary, i.e. bert-large-uncased's; a task
whose train file is absent uses its dev file, and a task with no file at all an assumed length (marked). Row counts
are GLUE's official train/dev sizes. Student examples per task follow p(τ) ∝ |D_τ|^α exactly as the sampler draws
them. Time = work / (GPUs × H100 dense bf16 peak × MFU). Writes <out>/projection-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.data import tokenize_split  # noqa: E402
from pipeline.core.glue import read_tsv_split  # noqa: E402
from pipeline.core.model import bundled_minilm_path, load_tokenizer  # noqa: E402
from pipeline.core.sampling import task_probabilities  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402

H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA H100 SXM, dense (no sparsity)
OFFICIAL_ROWS = {  # GLUE train rows; dev rows (MNLI: matched + mismatched)
    "cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500), "qqp": (363846, 40430),
    "mnli": (392702, 19647), "qnli": (104743, 5463), "rte": (2490, 277), "wnli": (635, 71),
}  # fmt: skip
ASSUMED_TOKENS = {"qqp": 30.0, "mnli": 40.0}  # used only when a task has no file here; marked in the output


def bert_large_non_embedding_params() -> int:
    """bert-large-uncased's shape (24 × 1024, FFN 4096), built on the meta device: no weights, no download."""
    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    with torch.device("meta"):
        model = BertModel(config)
    total = sum(p.numel() for p in model.parameters())
    return total - sum(p.numel() for p in model.embeddings.parameters())


def mean_tokens(task_name: str, glue_dir: Path, tokenizer, max_length: int) -> tuple[float, str]:
    task = get_glue_task(task_name)
    for split in ("train", task.dev_splits[0]):
        if (glue_dir / task.glue_dir / f"{split}.tsv").is_file():
            tokenized = tokenize_split(read_tsv_split(task, split, glue_dir), tokenizer, max_length, task.name, split)
            return float(tokenized.lengths.mean()), f"measured ({split}.tsv)"
    return ASSUMED_TOKENS[task_name], "assumed (no file here)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mfu", type=float, default=0.4, help="assumed fraction of the H100 bf16 peak (default 0.4)")
    p.add_argument("--pad-efficiency", type=float, default=0.9, help="real / padded tokens (default 0.9)")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    cfg = load_config(ROOT / "configs" / "bam-paper.yaml")
    glue_dir = Path(os.environ.get("GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    tokenizer = load_tokenizer(bundled_minilm_path())
    params = bert_large_non_embedding_params()
    tasks = list(cfg.data.tasks)
    lengths = {t: mean_tokens(t, glue_dir, tokenizer, cfg.data.max_length) for t in tasks}
    train_rows = [OFFICIAL_ROWS[t][0] for t in tasks]
    tokens = {t: lengths[t][0] for t in tasks}
    teacher_tokens = sum(cfg.teachers.for_task(t).epochs * OFFICIAL_ROWS[t][0] * tokens[t] for t in tasks)
    distill_tokens = sum(sum(OFFICIAL_ROWS[t]) * tokens[t] for t in tasks)
    draws = cfg.student.epochs * sum(train_rows) * task_probabilities(train_rows, cfg.student.alpha)
    student_tokens = sum(d * tokens[t] for d, t in zip(draws, tasks))
    work = {  # FLOPs
        "teachers": 6 * params * teacher_tokens / args.pad_efficiency,
        "distill": 2 * params * distill_tokens / args.pad_efficiency,
        "student": 6 * params * student_tokens / args.pad_efficiency,
    }
    one_pass = sum(OFFICIAL_ROWS[t][0] * tokens[t] for t in tasks)  # teachers.per_task epochs: their weighted mean
    epochs = {"teachers": teacher_tokens / one_pass, "distill": 1, "student": cfg.student.epochs}
    rate = H100_BF16_DENSE * args.mfu
    hours = {k: {"1_gpu": v / rate / 3600, f"{args.gpus}_gpus": v / rate / 3600 / args.gpus} for k, v in work.items()}
    result = {
        "label": "PROJECTION (not measured on a GPU)",
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": "configs/bam-paper.yaml",
        "non_embedding_params": params,
        "mean_tokens_per_example": {t: {"tokens": v, "source": s} for t, (v, s) in lengths.items()},
        "assumptions": {"h100_bf16_dense": H100_BF16_DENSE, "mfu": args.mfu, "pad_efficiency": args.pad_efficiency},
        "tokens": {"teachers": teacher_tokens, "distill": distill_tokens, "student": student_tokens},
        "flops": work,
        "flops_per_epoch": {k: v / epochs[k] for k, v in work.items()},
        "hours": hours,
        "total_hours": {k: sum(h[k] for h in hours.values()) for k in ("1_gpu", f"{args.gpus}_gpus")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"projection-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Projection: configs/bam-paper.yaml on H100s ({result['date']})",
        "",
        "**A projection, not a measurement.** Command: `" + result["command"] + "`.",
        "",
        f"BERT-Large non-embedding parameters: {params:,}. Work = 6 × params × trained tokens (2 × for predicted "
        f"tokens) / pad efficiency {args.pad_efficiency}; time at {args.mfu:.0%} of an H100's dense bf16 peak "
        f"({H100_BF16_DENSE / 1e12:.0f} TFLOP/s), linear scaling to {args.gpus} GPUs.",
        "",
        "| task | train rows | mean tokens / example | source |",
        "|---|---:|---:|---|",
        *[f"| {t} | {OFFICIAL_ROWS[t][0]:,} | {tokens[t]:.1f} | {lengths[t][1]} |" for t in tasks],
        "",
        f"| stage | epochs | tokens | PFLOP / epoch | PFLOP | H100-hours | hours on {args.gpus} |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {k} | {epochs[k]:g} | {result['tokens'][k]:.3g} | {work[k] / epochs[k] / 1e15:,.0f} | "
            f"{work[k] / 1e15:,.0f} | {hours[k]['1_gpu']:.2f} | {hours[k][f'{args.gpus}_gpus']:.2f} |"
            for k in work
        ],
        f"| total | | | | {sum(work.values()) / 1e15:,.0f} | {result['total_hours']['1_gpu']:.2f} | "
        f"{result['total_hours'][f'{args.gpus}_gpus']:.2f} |",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
