"""A smaller student's prediction throughput against its teachers': the 6-layer MiniLM and the same model with every
other layer kept (`student.layers: every_other`), through the distill-style length-sorted predictor.

    python bench/small_student.py [--examples 2000] [--rounds 3] [--precision fp32] [--out bench/results]

Both models predict the same rows (`--examples` seeded training rows of each glue-small task, tokenised as the data
stage does) with `pipeline.core.training.predict` at the eval batch of the distill stage, in turn for `--rounds`
rounds after one warm-up pass each, so drifts in machine speed hit both alike; the figure is each model's total
rows over its total seconds, and the ratio small / full. The target (docs/smaller-student.md): >= 1.8x. Writes
<out>/small-student-<date>.json and .md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import glue_dir, heading, provenance, save_result  # noqa: E402
from throughput import EVAL_BATCH, SEED, head, load_data  # noqa: E402

from pipeline.core.accel import make_accelerator  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.model import build_model, bundled_minilm_path, load_tokenizer  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402
from pipeline.core.training import predict  # noqa: E402

NAMES = ["cola", "sst2", "mrpc", "stsb", "rte"]
TARGET = 1.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="training rows per task (seeded subset)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    glue = glue_dir(NAMES)
    load, path = os.getloadavg()[0], bundled_minilm_path()
    cfg = load_config(ROOT / "configs" / "glue-small.yaml")
    data = load_data(glue, NAMES, args.examples, load_tokenizer(path))
    acc = make_accelerator(precision=args.precision)
    models = {}
    for name, layers in (("full", "all"), ("small", "every_other")):
        tasks = [get_glue_task(n) for n in NAMES]
        models[name] = (build_model(path, tasks, cfg.model, SEED, layers=layers).to(acc.device), tasks)
    seconds = {name: 0.0 for name in models}
    rows = sum(len(split) for split in data.values())
    for name, (model, tasks) in models.items():  # warm-up
        predict(model, head(data[NAMES[0]], 256), 0, tasks, acc, EVAL_BATCH)
    for _ in range(args.rounds):
        for name, (model, tasks) in models.items():
            start = time.perf_counter()
            for i, task in enumerate(NAMES):
                predict(model, data[task], i, tasks, acc, EVAL_BATCH)
            seconds[name] += time.perf_counter() - start
            print(f"[bench] {name}: {rows / (time.perf_counter() - start):.1f} rows/s")
    rate = {name: rows * args.rounds / s for name, s in seconds.items()}
    depth = {name: model.encoder.config.num_hidden_layers for name, (model, _) in models.items()}
    ratio = rate["small"] / rate["full"]
    result = {
        **provenance(load),
        "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT), "tasks": NAMES},
        "layers": depth,
        "examples_per_s": rate,
        "small_over_full": ratio,
        "target": TARGET,
        "met": ratio >= TARGET,
    }
    md = [
        *heading("A smaller student's prediction throughput", result),
        "| model | layers | examples/s |",
        "|---|---:|---:|",
        *(f"| {name} | {depth[name]} | {rate[name]:.1f} |" for name in models),
        "",
        f"Small / full: **{ratio:.2f}×** (target ≥ {TARGET}×: {'met' if ratio >= TARGET else 'missed'}). Each model "
        f"predicts {rows} rows ({args.examples} seeded training rows of each of {', '.join(NAMES)}; eval batch "
        f"{EVAL_BATCH}, length-sorted, {args.precision}) per round, {args.rounds} rounds in turn after a warm-up; "
        "each figure is its total rows over its total seconds.",
        "",
    ]
    save_result(args.out, "small-student", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
