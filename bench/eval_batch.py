"""Prediction speed against the batch size: ours (the distill stage's and the dev evaluation's predictor) and
`Trainer.predict`, at several eval batch sizes, on the same rows.

    python bench/eval_batch.py [--examples 2000] [--sizes 128,64,32] [--precision bf16] [--rounds 3]

Each round times every (side, size) once, on the same seeded train rows of SST-2 and MRPC (bench/throughput.py's
`load_data`), the order of the settings reversed every other round; figures are examples/s over both tasks, the
median of the rounds. Ours: `pipeline.core.training.predict` (length-sorted batches of at most SIZE rows and 16,384
tokens, `inference_mode`); the Trainer's: `predict` with dynamic padding and `per_device_eval_batch_size` SIZE, with
and without length grouping. Writes <out>/eval-batch-<precision>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from report import glue_dir, provenance, save_result  # bench/report.py (the script's folder is on sys.path)
from throughput import HF_ARGS, SEED, hf_dataset, load_data
from transformers import AutoModelForSequenceClassification as HFModel
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from pipeline.core.accel import make_accelerator
from pipeline.core.config import load_config
from pipeline.core.model import build_model, bundled_minilm_path, load_tokenizer
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import predict

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["sst2", "mrpc"]
TRAINER = {"trainer": "random", "trainer_length_grouped": "group_by_length"}


def sides(path: str, data: dict, precision: str, size: int):
    """(name, function predicting every task's rows) of each side at this eval batch size."""
    cfg, acc = load_config(ROOT / "configs" / "glue-small.yaml"), make_accelerator(precision=precision)
    ours = {n: build_model(path, [get_glue_task(n)], cfg.model, SEED) for n in NAMES}
    yield "ours", lambda: [predict(ours[n], data[n], 0, [get_glue_task(n)], acc, size) for n in NAMES]
    tokenizer = load_tokenizer(path)
    for key, sampling in TRAINER.items():
        trainers = {}
        for n in NAMES:
            args = TrainingArguments(
                tempfile.mkdtemp(prefix="eval-batch-"), per_device_eval_batch_size=size,
                train_sampling_strategy=sampling, bf16=precision == "bf16", **HF_ARGS,
            )  # fmt: skip
            model = HFModel.from_pretrained(path, num_labels=get_glue_task(n).num_labels)
            trainers[n] = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))
        datasets = {n: hf_dataset(data[n], labels=False) for n in NAMES}
        yield key, lambda t=trainers, d=datasets: [t[n].predict(d[n]) for n in NAMES]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=2000, help="seeded train rows per task")
    p.add_argument("--sizes", default="128,64,32", help="eval batch sizes (rows)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    result = provenance(os.getloadavg()[0]) | {"precision": args.precision, "examples_per_task": args.examples}
    path = bundled_minilm_path()
    data = load_data(glue_dir(NAMES), NAMES, args.examples, load_tokenizer(path))
    examples = sum(len(data[n]) for n in NAMES)
    settings = {
        (name, size): fn
        for size in map(int, args.sizes.split(","))
        for name, fn in sides(path, data, args.precision, size)
    }
    for fn in settings.values():  # warm-up: the first call of each setting allocates and picks its kernels
        fn()
    rates: dict = {key: [] for key in settings}
    for r in range(args.rounds):
        for key in list(settings) if r % 2 == 0 else list(settings)[::-1]:
            start = time.perf_counter()
            settings[key]()
            rates[key].append(examples / (time.perf_counter() - start))
    median = {f"{name}@{size}": statistics.median(v) for (name, size), v in rates.items()}
    result["examples_per_s"] = median
    result["rounds"] = {f"{name}@{size}": v for (name, size), v in rates.items()}
    md = report(result, args.sizes.split(","))
    save_result(args.out, f"eval-batch-{args.precision}", result, md)
    print("\n".join(md))


def report(r: dict, sizes: list[str]) -> list[str]:
    m, rates = r["machine"], r["examples_per_s"]
    base = rates[f"trainer@{sizes[0]}"]
    lines = [
        f"# Prediction speed against the eval batch size, {r['precision']}", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cores']} cores, {m['torch_threads']} torch threads; torch {m['torch']}; {r['date'][:10]}  ",
        f"Rows: {r['examples_per_task']} seeded SST-2 and MRPC train rows each. Examples/s over both (median of the "
        f"rounds), and in brackets ÷ `Trainer.predict` at {sizes[0]} rows.", "",
        "| eval batch (rows) | ours | Trainer.predict | Trainer.predict, length-grouped | ours ÷ the best Trainer |",
        "|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    best = max(rates[f"{k}@{s}"] for k in TRAINER for s in sizes)
    for s in sizes:
        cells = [f"{rates[f'{k}@{s}']:.0f} ({rates[f'{k}@{s}'] / base:.2f}×)" for k in ("ours", *TRAINER)]
        lines.append(f"| {s} | {' | '.join(cells)} | {rates[f'ours@{s}'] / best:.2f}× |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
