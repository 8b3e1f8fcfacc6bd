"""torch.compile (inductor) of the encoder against eager, for a training step and for prediction, fp32 and bf16.

    python bench/compile.py [--lengths 24,40,56,72] [--batch 32] [--eval-batch 128] [--rounds 4] [--out bench/results]

Training step = forward of a `MultiTaskModel` (an SST-2 head), a loss, backward and AdamW; prediction = a forward
under `torch.inference_mode()`, as the distill stage's predictor runs it. Each precision (fp32, and bf16 autocast
as `model.precision: bf16` runs) and each mode builds two identical models; one has its encoder compiled in place
(`nn.Module.compile(dynamic=False)`: with lengths bucketed to multiples of 8, one graph per length, compiled once).
Both take batches of the lengths given, first one pass over every length (the compiled one compiles there: its
extra time is the compile time), then `--rounds` rounds, alternating which goes first. Also reported: the largest
difference of the loss and of the gradients (training) or of the outputs (prediction) between the two on the same
batch, dropout off. Compiles into a fresh inductor cache (a temporary folder), so compile times are cold ones.
Writes <out>/compile-<date>.json and .md.
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


def models(compiled: bool, train: bool):
    """Two identical models; the second's encoder compiled in place (its state_dict keys unchanged)."""
    out = []
    for compile_it in (False, compiled):
        model = build_model(bundled_minilm_path(), [get_glue_task("sst2")], ModelConfig(name_or_path="minilm"), seed=1)
        model.train(train)
        if compile_it:
            model.encoder.compile(dynamic=False)
        out.append(model)
    return out


def train_step(model, optimizer, b: dict[str, torch.Tensor], bf16: bool) -> float:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**b).float().logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


@torch.inference_mode()
def predict_step(model, b: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(**b).float()


def differences(eager, compiled, b: dict[str, torch.Tensor], train: bool, bf16: bool) -> dict:
    """Largest |eager − compiled| of the loss and gradients (training) or outputs (prediction), dropout off."""
    if not train:
        out = (predict_step(eager, b, bf16) - predict_step(compiled, b, bf16)).abs().max().item()
        return {"output_difference": out}
    losses, grads = [], []
    for model in (eager, compiled):
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**b).float().logsumexp(-1).mean()
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.zero_grad(set_to_none=True)
        model.train()
    diff = max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])
    scale = max(g.abs().max().item() for g in grads[0].values())
    return {"loss_difference": abs(losses[0] - losses[1]), "max_gradient_difference": diff, "max_gradient": scale}


def measure(args, precision: str, train: bool) -> dict:
    torch._dynamo.reset()  # dynamo's graphs are kept per code object (BertModel.forward), across models: start afresh
    bf16, size, lengths = precision == "bf16", args.batch if train else args.eval_batch, args.lengths
    eager, compiled = models(True, train)
    result = differences(eager, compiled, batch(lengths[0], size), train, bf16)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-5) for m in (eager, compiled)] if train else [None, None]

    def one_pass(i: int) -> float:
        model, start = (eager, compiled)[i], time.perf_counter()
        for length in lengths:
            b = batch(length, size)
            train_step(model, optimizers[i], b, bf16) if train else predict_step(model, b, bf16)
        return time.perf_counter() - start

    first = [one_pass(0), one_pass(1)]
    seconds = [0.0, 0.0]
    for r in range(args.rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            seconds[i] += one_pass(i)
    per_batch = [s / (args.rounds * len(lengths)) for s in seconds]
    names = ("eager", "compiled")
    result |= {"seconds_per_batch": dict(zip(names, per_batch)), "speedup": per_batch[0] / per_batch[1]}
    return result | {"compile_seconds": first[1] - first[0], "first_pass_seconds": dict(zip(names, first))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="24,40,56,72")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.lengths = [int(x) for x in args.lengths.split(",")]
    # one graph per length and mode, each a recompile of the same forward: keep them all (the default limit, 8, would
    # fall back to eager silently)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(args.lengths))
    load, runs = os.getloadavg()[0], {}
    for precision in args.precisions.split(","):
        for mode in ("train", "predict"):
            print(f"[compile] {precision} {mode}", flush=True)
            runs[f"{precision} {mode}"] = measure(args, precision, mode == "train")
    result = {**provenance(load), "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)}, "runs": runs}
    md = [
        *heading("torch.compile of the encoder against eager", result),
        f"Lengths {args.lengths}, batch {args.batch} (training) / {args.eval_batch} (prediction), {args.rounds} "
        "rounds after a first pass; fresh inductor cache.",
        "",
        "| precision, mode | eager s/batch | compiled s/batch | compiled speed / eager | compile time (s) | "
        "break-even (batches) | largest difference |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, r in runs.items():
        eager, comp = r["seconds_per_batch"]["eager"], r["seconds_per_batch"]["compiled"]
        even = f"{r['compile_seconds'] / (eager - comp):.0f}" if eager > comp else "never"
        diff = ", ".join(f"{k} {v:.1e}" for k, v in r.items() if k.endswith("difference"))
        cells = [key, f"{eager:.3f}", f"{comp:.3f}", f"{r['speedup']:.2f}×", f"{r['compile_seconds']:.0f}", even, diff]
        md.append("| " + " | ".join(cells) + " |")
    save_result(args.out, "compile", result, md + [""])
    print("\n".join(md))


if __name__ == "__main__":
    main()
