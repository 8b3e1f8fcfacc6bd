"""`model.fast_dropout` against PyTorch's dropout in the training step: what dropout costs, what the cheaper mask wins.

    python bench/dropout.py [--lengths 24,40,56,72] [--batch 32] [--rounds 4] [--precisions fp32,bf16]

PyTorch's dropout on a CPU draws one Bernoulli number per element (`bernoulli_`, a 32-bit draw each) and
multiplies in a second pass; a profile of a bf16 student step puts dropout at about 11 % of its time. Five
models, identical but for their dropout, take the same training steps (forward of a `MultiTaskModel` with an SST-2
head, a loss, backward and AdamW), in rounds that alternate their order:

  stock         the model as the loops train it by default
  eager         PyTorch's dropout, attention written out by transformers ("eager"): the same product as `fast`
                writes out, with PyTorch's mask, to tell the two parts of the gain apart
  fast-hidden   every dropout module with `model.fast_dropout`'s 16-bit mask (pipeline/core/dropout.py), attention
                left to SDPA, which on a CPU runs its unfused maths kernel with PyTorch's dropout whenever p > 0
  fast          `model.fast_dropout: true`: the same, and attention written out in training with the 16-bit mask
                on its probabilities
  no-attn-drop  the attention probabilities' dropout off (p = 0): not a candidate (it changes the model) but the
                bound on what any cheaper attention-dropout could win

Half of each batch's rows end 6 tokens early (padding), so that the attention masks are real ones.

Writes <out>/dropout-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compile import batch, train_step  # noqa: E402
from report import heading, provenance, save_result  # noqa: E402

from pipeline.core.config import ModelConfig  # noqa: E402
from pipeline.core.dropout import fast_dropout, rounded  # noqa: E402
from pipeline.core.model import build_model, bundled_minilm_path  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402

SETTINGS = ("stock", "eager", "fast-hidden", "fast", "no-attn-drop")


def model(setting: str) -> nn.Module:
    fast = setting in ("fast-hidden", "fast")
    cfg = ModelConfig(name_or_path="minilm", fast_dropout=fast)
    m = build_model(bundled_minilm_path(), [get_glue_task("sst2")], cfg, seed=1)
    if setting == "fast-hidden":
        m.encoder.set_attn_implementation("sdpa")
    if setting == "eager":
        m.encoder.set_attn_implementation("eager")
    if setting == "no-attn-drop":
        for layer in m.encoder.encoder.layer:
            layer.attention.self.dropout.p = 0.0
    return m.train()


def mask_check() -> dict:
    """The 16-bit mask keeps 1 − p of the elements, scales them exactly, and its backward uses the same mask."""
    x = torch.ones(1_000_003, requires_grad=True)
    y = fast_dropout(x, 0.1)
    y.sum().backward()
    kept = y != 0
    return {"p": rounded(0.1), "kept_fraction": kept.float().mean().item(), "scale": y[kept].mean().item(),
            "backward_same_mask": bool(torch.equal(x.grad, y.detach()))}  # fmt: skip


def measure(args, precision: str) -> dict:
    bf16, models = precision == "bf16", [model(s) for s in SETTINGS]
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-5) for m in models]

    def one_pass(i: int) -> float:
        start = time.perf_counter()
        for length in args.lengths:
            b = batch(length, args.batch)
            b["attention_mask"][: args.batch // 2, length - 6 :] = 0
            train_step(models[i], optimizers[i], b, bf16)
        return time.perf_counter() - start

    for i in range(len(models)):
        one_pass(i)  # warm-up
    seconds = [0.0] * len(models)
    for r in range(args.rounds):
        order = list(range(len(models)))
        for i in order[r % len(order) :] + order[: r % len(order)]:
            seconds[i] += one_pass(i)
    per_batch = dict(zip(SETTINGS, (s / (args.rounds * len(args.lengths)) for s in seconds)))
    return {"seconds_per_batch": per_batch, "speed_vs_stock": {s: per_batch["stock"] / t for s, t in per_batch.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="24,40,56,72")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.lengths = [int(x) for x in args.lengths.split(",")]
    load, runs = os.getloadavg()[0], {}
    check = mask_check()
    for precision in args.precisions.split(","):
        print(f"[dropout] {precision}", flush=True)
        runs[precision] = measure(args, precision)
    result = {**provenance(load), "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
              "mask_check": check, "runs": runs}  # fmt: skip
    md = [
        *heading("model.fast_dropout against PyTorch's dropout in the training step", result),
        f"Lengths {args.lengths}, batch {args.batch}, {args.rounds} rounds after a warm-up pass, in turn. The 16-bit "
        f"mask on 1,000,003 elements: p {check['p']:.6f}, kept {check['kept_fraction']:.4f}, scale "
        f"{check['scale']:.6f}, backward through the same mask: {check['backward_same_mask']}.",
        "",
        "| precision | "
        + " | ".join(f"{s} s/batch" for s in SETTINGS)
        + " | "
        + " | ".join(f"{s} speed / stock" for s in SETTINGS[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(SETTINGS) - 1),
    ]
    for precision, r in runs.items():
        cells = [f"{r['seconds_per_batch'][s]:.3f}" for s in SETTINGS]
        speed = [f"{r['speed_vs_stock'][s]:.3f}×" for s in SETTINGS[1:]]
        md.append(f"| {precision} | " + " | ".join(cells + speed) + " |")
    save_result(args.out, "dropout", result, md + [""])
    print("\n".join(md))


if __name__ == "__main__":
    main()
