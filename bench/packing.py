"""Sequence packing against padded batches: a training step (forward, loss, backward) of MiniLM on the same
examples, padded or packed several to a row with a block-diagonal attention mask.

    python bench/packing.py [--examples 2000] [--steps 20] [--rounds 3] [--out bench/results]

Per task (SST-2: short single sentences; MRPC: long pairs), two batch plans of `--steps` batches of 32: the
teachers' own (shuffled, then grouped by length: `group_by_length` with glue-small's window) and plain shuffled
batches (what packing usually replaces). Each plan's batches run in three layouts of the same examples:

* padded: one row per example, padded to the batch's longest (our loops' dynamic padding);
* packed: first-fit decreasing into rows as long as the batch's longest example;
* packed-128: first-fit decreasing into rows of 128 tokens (the common packing recipe).

A packed row restarts its position ids at each example and attends within the example only (a [rows, 1, L, L]
boolean mask, to the same SDPA attention); each example's [CLS] goes through the pooler and a linear head. The same
model and weights serve every layout, in turn for `--rounds` rounds after a warm-up, so drifts in machine speed hit
all alike; the figure is each layout's examples over its seconds. Before timing, the maths is checked: with dropout
off, the largest difference between padded and packed of the loss and of every gradient. Writes
<out>/packing-<date>.json and .md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import glue_dir, heading, provenance, save_result  # noqa: E402
from throughput import BATCH, SEED, load_data  # noqa: E402

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.data import TokenizedSplit, collate  # noqa: E402
from pipeline.core.model import bundled_minilm_path, load_encoder, load_tokenizer  # noqa: E402
from pipeline.core.sampling import group_by_length, single_task_plan  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402

NAMES = ["sst2", "mrpc"]
LAYOUTS = ("padded", "packed", "packed-128")


def padded(split: TokenizedSplit, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """One row per example, padded to the longest (the loops' `collate`); `starts` = each example's [CLS] as (row,
    column)."""
    batch = collate([(0, int(r)) for r in rows], [split], [get_glue_task(split.task)])
    starts = torch.stack([torch.arange(len(rows)), torch.zeros(len(rows), dtype=torch.long)], dim=1)
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")} | {"starts": starts}


def packed(split: TokenizedSplit, rows: np.ndarray, capacity: int | None) -> dict[str, torch.Tensor]:
    """The examples first-fit decreasing into rows of `capacity` tokens (None: the longest example's); positions
    restart at each example, which attends to itself alone. `starts[i]` is example i's [CLS] (in `rows` order)."""
    lengths = split.lengths[rows].astype(int)
    capacity = capacity or int(lengths.max())
    bins: list[list[int]] = []  # example indices per packed row
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -lengths[i]):
        j = next((j for j, free in enumerate(room) if free >= lengths[i]), None)
        if j is None:
            bins.append([]), room.append(capacity)
            j = len(bins) - 1
        bins[j].append(i)
        room[j] -= lengths[i]
    width = max(capacity - free for free in room)
    ids, types, positions = (torch.zeros(len(bins), width, dtype=torch.long) for _ in range(3))
    mask = torch.zeros(len(bins), 1, width, width, dtype=torch.bool)
    starts = torch.zeros(len(rows), 2, dtype=torch.long)
    for b, members in enumerate(bins):
        at = 0
        for i in members:
            lo, hi, n = split.offsets[rows[i]], split.offsets[rows[i] + 1], int(lengths[i])
            ids[b, at : at + n] = torch.from_numpy(split.input_ids[lo:hi].astype(np.int64))
            types[b, at : at + n] = torch.from_numpy(split.token_type_ids[lo:hi].astype(np.int64))
            positions[b, at : at + n] = torch.arange(n)
            mask[b, 0, at : at + n, at : at + n] = True
            starts[i] = torch.tensor([b, at])
            at += n
        mask[b, 0, at:, at:] = torch.eye(width - at, dtype=torch.bool)  # padding attends to itself: no empty rows
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "position_ids": positions,
            "starts": starts}  # fmt: skip


class Model(torch.nn.Module):
    """MiniLM, its pooler over each example's [CLS], a linear head."""

    def __init__(self, path: str, outputs: int):
        super().__init__()
        self.encoder = load_encoder(path)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, outputs)

    def forward(self, starts: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(**inputs).last_hidden_state
        return self.head(self.encoder.pooler.activation(self.encoder.pooler.dense(hidden[starts[:, 0], starts[:, 1]])))


def step(model: Model, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    loss = torch.nn.functional.cross_entropy(model(**batch), labels)
    loss.backward()
    return loss.detach()


def layouts(split: TokenizedSplit, rows: np.ndarray) -> dict[str, dict[str, torch.Tensor]]:
    return {"padded": padded(split, rows), "packed": packed(split, rows, None), "packed-128": packed(split, rows, 128)}


def differences(model: Model, split: TokenizedSplit, rows: np.ndarray) -> dict[str, float]:
    """Largest |padded − packed| of the loss and of any gradient, dropout off."""
    model.eval()
    labels = torch.from_numpy(split.labels[rows].astype(np.int64))
    out = {}
    for name, batch in layouts(split, rows).items():
        model.zero_grad(set_to_none=True)
        loss = step(model, batch, labels)
        out[name] = (loss, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    model.zero_grad(set_to_none=True)
    model.train()
    base_loss, base_grads = out["padded"]
    return {
        name: max([abs(float(loss - base_loss))] + [float((g - base_grads[k]).abs().max()) for k, g in grads.items()])
        for name, (loss, grads) in out.items()
        if name != "padded"
    }


def bench_task(model: Model, split: TokenizedSplit, args, window: int) -> dict:
    plans = {"grouped": single_task_plan(len(split), BATCH, args.steps, seed=SEED)}
    plans["shuffled"] = plans["grouped"].copy()
    plans["grouped"] = group_by_length(plans["grouped"], [split.lengths], window, SEED)
    out = {"max_difference": differences(model, split, plans["grouped"][0, :, 1])}
    for plan_name, plan in plans.items():
        batches = [layouts(split, b[:, 1]) for b in plan]
        labels = [torch.from_numpy(split.labels[b[:, 1]].astype(np.int64)) for b in plan]
        tokens = {k: sum(int(b[k]["input_ids"].numel()) for b in batches) for k in LAYOUTS}
        seconds = dict.fromkeys(LAYOUTS, 0.0)
        for name in LAYOUTS:  # warm-up
            step(model, batches[0][name], labels[0])
        for _ in range(args.rounds):
            for name in LAYOUTS:
                start = time.perf_counter()
                for batch, y in zip(batches, labels):
                    step(model, batch[name], y)
                seconds[name] += time.perf_counter() - start
                model.zero_grad(set_to_none=True)
        examples = args.steps * BATCH * args.rounds
        real = int(split.lengths[plan[:, :, 1]].sum())
        out[plan_name] = {
            name: {
                "examples_per_s": examples / seconds[name],
                "token_slots": tokens[name],
                "real_tokens": real,
                "fill": real / tokens[name],
                "rows_per_batch": sum(int(b[name]["input_ids"].shape[0]) for b in batches) / len(batches),
            }
            for name in LAYOUTS
        }
        for name in LAYOUTS:
            r = out[plan_name][name]
            r["vs_padded_grouped"] = r["examples_per_s"] / out["grouped"]["padded"]["examples_per_s"]
        print(f"[bench] {split.task} {plan_name}: " + ", ".join(
            f"{n} {out[plan_name][n]['examples_per_s']:.1f} ex/s" for n in LAYOUTS))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="training rows per task (seeded subset)")
    parser.add_argument("--steps", type=int, default=20, help="batches of 32 per plan")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    glue = glue_dir(NAMES)
    load, path = os.getloadavg()[0], bundled_minilm_path()
    window = load_config(ROOT / "configs" / "glue-small.yaml").teachers.group_by_length
    data = load_data(glue, NAMES, args.examples, load_tokenizer(path))
    results = {}
    for name in NAMES:
        torch.manual_seed(SEED)
        model = Model(path, get_glue_task(name).num_labels).train()
        results[name] = bench_task(model, data[name], args, window)
    result = {**provenance(load), "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)}, "tasks": results}
    md = report(result, window)
    save_result(args.out, "packing", result, md)
    print("\n".join(md))


def report(result: dict, window: int) -> list[str]:
    rows = []
    for task, r in result["tasks"].items():
        for plan in ("grouped", "shuffled"):
            for name in LAYOUTS:
                x = r[plan][name]
                rows.append(f"| {task} | {plan} | {name} | {x['rows_per_batch']:.1f} | {x['fill']:.2f} | "
                            f"{x['examples_per_s']:.1f} | {x['vs_padded_grouped']:.2f}× |")  # fmt: skip
    diffs = "; ".join(
        f"{task}: " + ", ".join(f"{n} {d:.1e}" for n, d in r["max_difference"].items())
        for task, r in result["tasks"].items()
    )
    return [
        *heading("Sequence packing against padded batches (training step)", result),
        "| task | batches | layout | rows per batch of 32 | real / token slots | examples/s | / padded, grouped |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"grouped: the teachers' plan (shuffled, then `group_by_length` with a window of {window} batches); shuffled: "
        "the same examples in plain shuffled batches. Step = forward, cross-entropy, backward (no optimizer: the same "
        "for every layout). Largest |padded − packed| of the loss and any gradient, dropout off, on the first grouped "
        f"batch: {diffs}.",
        "",
    ]


if __name__ == "__main__":
    main()
