"""torch.compile (inductor) of the student's training step against eager, on the bundled MiniLM.

    python bench/compile.py [--lengths 32,48,64] [--batch 32] [--rounds 3] [--out bench/results]

One training step = forward of a `MultiTaskModel` (an SST-2 head), a loss, backward and AdamW. Batches have the
sequence lengths given (bucketed, as a compiled loop would pad to a few multiples of 8, so each length is one graph
compiled once); two identical models, one eager and one `torch.compile(..., dynamic=False)`, take the same batches
in turn for `--rounds` rounds after a first pass over every length (the compiled model compiles there: its time is
reported on its own). Also reported: the largest difference of the loss and of the gradients between the two on
the first batch (the maths must not change). Compiles into a fresh inductor cache (a temporary folder), so the
compile time is a cold one. Writes <out>/compile-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# A fresh inductor cache, so that the compile time is a first compile's, not a cache hit of an earlier run.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-compile-")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import heading, provenance, save_result  # noqa: E402

from pipeline.core.config import ModelConfig  # noqa: E402
from pipeline.core.model import build_model, bundled_minilm_path  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402


def batch(length: int, size: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 20000, (size, length), generator=torch.Generator().manual_seed(length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
            "task_ids": torch.zeros(size, dtype=torch.long)}  # fmt: skip


def step(model, optimizer, b: dict[str, torch.Tensor]) -> float:
    loss = model(**b).float().logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="32,48,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    load, path, tasks = os.getloadavg()[0], bundled_minilm_path(), [get_glue_task("sst2")]
    models = {}
    for name in ("eager", "compiled"):
        model = build_model(path, tasks, ModelConfig(name_or_path="minilm"), seed=1)
        model.train()
        models[name] = model
    # the maths: one forward and backward of each on the same batch, dropout off
    first = batch(lengths[0], args.batch)
    compiled = torch.compile(models["compiled"], dynamic=False)
    grads, losses = {}, {}
    for name, model in (("eager", models["eager"]), ("compiled", compiled)):
        model.eval()
        loss = model(**first).float().logsumexp(-1).mean()
        loss.backward()
        losses[name] = loss.item()
        grads[name] = {n: p.grad.clone() for n, p in models[name].named_parameters() if p.grad is not None}
        models[name].zero_grad(set_to_none=True)
        model.train()
    grad_diff = max((grads["eager"][n] - grads["compiled"][n]).abs().max().item() for n in grads["eager"])
    grad_scale = max(g.abs().max().item() for g in grads["eager"].values())
    runners = {"eager": models["eager"], "compiled": compiled}
    optimizers = {name: torch.optim.AdamW(models[name].parameters(), lr=1e-5) for name in runners}
    warm = {}
    for name, model in runners.items():  # the compiled one compiles one graph per length here
        start = time.perf_counter()
        for length in lengths:
            step(model, optimizers[name], batch(length, args.batch))
        warm[name] = time.perf_counter() - start
    seconds = {name: 0.0 for name in runners}
    for _ in range(args.rounds):
        for name, model in runners.items():
            start = time.perf_counter()
            for length in lengths:
                step(model, optimizers[name], batch(length, args.batch))
            seconds[name] += time.perf_counter() - start
    steps = args.rounds * len(lengths)
    per_step = {name: s / steps for name, s in seconds.items()}
    ratio = per_step["eager"] / per_step["compiled"]
    result = {
        **provenance(load),
        "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
        "seconds_per_step": per_step,
        "compiled_speedup": ratio,
        "first_pass_seconds": warm,
        "compile_seconds": warm["compiled"] - warm["eager"],
        "loss_difference": abs(losses["eager"] - losses["compiled"]),
        "max_gradient_difference": grad_diff,
        "max_gradient": grad_scale,
    }
    md = [
        *heading("torch.compile of the student's step against eager", result),
        "| step | seconds per step | first pass over the lengths (s) |",
        "|---|---:|---:|",
        *(f"| {name} | {per_step[name]:.3f} | {warm[name]:.1f} |" for name in runners),
        "",
        f"Compiled / eager speed: **{ratio:.2f}×** in steady state; compiling the {len(lengths)} lengths "
        f"({args.lengths}, batch {args.batch}, fp32) took about {result['compile_seconds']:.0f} s, which "
        f"{result['compile_seconds'] / max(1e-9, per_step['eager'] - per_step['compiled']):.0f} steps of the "
        "saving pay back. Same batch, dropout off: loss difference "
        f"{result['loss_difference']:.2e}, largest gradient difference {grad_diff:.2e} (largest gradient "
        f"{grad_scale:.2e}).",
        "",
    ]
    save_result(args.out, "compile", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
