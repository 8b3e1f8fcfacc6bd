"""model.precision: the BAM student's training step and the soft targets' prediction in bf16 against fp32.

    python bench/precision.py [--steps 20] [--warmup 3] [--examples 2000] [--rounds 2] [--out bench/results]

The student is set up as bench/run.py's (the bundled MiniLM, glue-small's hyperparameters, SST-2 and MRPC, stand-in
teacher targets, annealed λ); prediction is `pipeline.core.training.predict` over the same SST-2 rows (eval batch 128),
as the distill stage runs it. Each measurement runs in its own spawned process (Accelerate fixes one precision per
process), fp32 and bf16 in turn for `--rounds` rounds, so drifts in machine speed hit both alike; the figure is each
precision's total time over its rounds, and the ratio bf16 / fp32 examples per second. Also reported: how far the
bf16 prediction of the same model is from the fp32 one (largest absolute difference of the logits, and the share
of rows whose argmax agrees). Writes <out>/precision-<date>.json and .md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import glue_dir, heading, provenance, save_result  # noqa: E402
from throughput import EVAL_BATCH, SEED, Bench, Ours, head, load_data, random_teacher, rates  # noqa: E402

from pipeline.core.accel import make_accelerator  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.model import build_model, bundled_minilm_path, load_tokenizer  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402
from pipeline.core.training import predict  # noqa: E402

NAMES = ["sst2", "mrpc"]


def child(b: Bench, precision: str, what: str) -> dict:
    """In a spawned process: `b.steps` timed student steps, or one prediction pass over SST-2, in `precision`."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if what == "train":
        b = dataclasses.replace(b, precision=precision)  # Ours runs at the bench's precision
        return Ours(b, b.names, "student", random_teacher(b, b.names)).run(b, None)
    task, split = get_glue_task(b.names[0]), b.data[b.names[0]]
    model, acc = build_model(b.path, [task], b.cfg.model, SEED), make_accelerator(precision=precision)
    predict(model, head(split, 256), 0, [task], acc, EVAL_BATCH)  # warm-up
    start = time.perf_counter()
    logits = predict(model, split, 0, [task], acc, EVAL_BATCH)
    tokens = int(split.offsets[-1])
    return rates(b, time.perf_counter() - start, len(split), tokens, tokens, 2) | {"logits": logits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    glue = glue_dir(NAMES)
    load, path = os.getloadavg()[0], bundled_minilm_path()
    cfg = load_config(ROOT / "configs" / "glue-small.yaml", [f"--data.tasks={NAMES!r}"])
    b = Bench(path, NAMES, load_data(glue, NAMES, args.examples, load_tokenizer(path)), cfg, args.warmup, args.steps)
    enc = build_model(path, [get_glue_task(NAMES[0])], cfg.model, SEED).encoder
    b.params = sum(x.numel() for x in enc.parameters()) - sum(x.numel() for x in enc.embeddings.parameters())
    b.peak = 1.0  # no matmul peak here: peak_fraction is not reported
    runs: dict[str, dict[str, list[dict]]] = {w: {"fp32": [], "bf16": []} for w in ("train", "predict")}
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for _ in range(args.rounds):
            for what in ("train", "predict"):
                for precision in ("fp32", "bf16"):
                    runs[what][precision].append(pool.apply(child, (b, precision, what)))
                    print(f"[bench] {what} {precision}: {runs[what][precision][-1]['examples_per_s']:.1f} ex/s")
    rows = {}
    for what, by in runs.items():
        rate = {p: sum(r["examples"] for r in rs) / sum(r["seconds"] for r in rs) for p, rs in by.items()}
        rows[what] = {"fp32_examples_per_s": rate["fp32"], "bf16_examples_per_s": rate["bf16"]}
        rows[what]["bf16_over_fp32"] = rate["bf16"] / rate["fp32"]
    fp32, bf16 = runs["predict"]["fp32"][0]["logits"], runs["predict"]["bf16"][0]["logits"]
    agreement = {
        "max_abs_logit_difference": float(np.abs(fp32 - bf16).max()),
        "max_abs_logit_fp32": float(np.abs(fp32).max()),  # the scale of the difference (the heads are untrained)
        "argmax_agreement": float((fp32.argmax(1) == bf16.argmax(1)).mean()),
        "rows": len(fp32),
    }
    result = {
        **provenance(load),
        "settings": vars(args) | {"out": str(args.out), "tasks": NAMES, "encoder": path},
        "rows": rows,
        "prediction_agreement": agreement,
    }
    md = [
        *heading("model.precision: bf16 against fp32", result),
        "| what | fp32 examples/s | bf16 examples/s | bf16 / fp32 |",
        "|---|---:|---:|---:|",
    ]
    md += [
        f"| {what} | {r['fp32_examples_per_s']:.1f} | {r['bf16_examples_per_s']:.1f} | {r['bf16_over_fp32']:.2f}× |"
        for what, r in rows.items()
    ]
    md += [
        "",
        f"train: the BAM student's optimizer steps ({args.steps} timed after {args.warmup}, batch 32, SST-2 and MRPC); "
        f"predict: one pass over {agreement['rows']} SST-2 rows. Each precision's total over {args.rounds} rounds, "
        "alternating. The same model predicting in bf16 and fp32: largest logit difference "
        f"{agreement['max_abs_logit_difference']:.4f} (largest fp32 logit {agreement['max_abs_logit_fp32']:.4f}; the "
        f"heads are untrained), argmax agreement {agreement['argmax_agreement']:.1%}.",
        "",
    ]
    save_result(args.out, "precision", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
