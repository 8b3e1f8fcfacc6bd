"""PCGrad's surgery: ours (on the tasks' Gram matrix) against the per-vector reference, in the same process.

    python bench/pcgrad.py [--repeats 5] [--out bench/results]

Both take the same [T, P] task gradients (random normal, P = the bundled MiniLM's parameter count, T = 5 as
glue-small and 9 as GLUE) and the same random orders, and return the sum of the projected gradients, which is what
the optimizer gets. The reference is Algorithm 1 as Yu et al.'s code writes it: a copy of the gradients, then for
each task and each other task one dot product and, on a conflict, one update of a P-vector. Ours
(`student.options.pcgrad.projected_sum`, what training calls): the T × T Gram matrix, the projection on its
coefficients, one weighted sum. Reported: the best time of `--repeats` for each, their ratio, and the largest
difference between the two results. Writes <out>/pcgrad-<date>.json and .md with the command, the machine and the date.
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

from report import heading, provenance, save_result  # noqa: E402  (bench/report.py: the script's folder is on sys.path)

from pipeline.core.model import bundled_minilm_path, load_encoder  # noqa: E402
from student.options.pcgrad import projected_sum  # noqa: E402


def reference(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    projected = grads.clone()
    norms = (grads * grads).sum(1)
    for i in range(len(grads)):
        for j in rng.permutation(len(grads)):
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / norms[j] * grads[j]
    return projected.sum(0)


def best_of(fn, grads: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(grads, np.random.default_rng(0))
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    params = sum(p.numel() for p in load_encoder(bundled_minilm_path()).parameters())
    rows = []
    for tasks in (5, 9):
        grads = torch.randn(tasks, params, generator=torch.Generator().manual_seed(tasks))
        t_ref, a = best_of(reference, grads, args.repeats)
        t_ours, b = best_of(projected_sum, grads, args.repeats)
        rows.append(
            {
                "tasks": tasks,
                "parameters": params,
                "reference_s": t_ref,
                "ours_s": t_ours,
                "speed-up": t_ref / t_ours,
                "max_abs_difference": float((a - b).abs().max()),
                "gradient_copies_reference": 3,  # the input, its clone and the squared temporary, each [T, P]
                "gradient_copies_ours": 1,
            }
        )
        del grads
    result = {**provenance(load), "rows": rows}
    md = [
        *heading("PCGrad surgery", result),
        "| tasks | parameters | reference (s) | ours (s) | speed-up | max abs difference |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['tasks']} | {r['parameters']:,} | {r['reference_s']:.3f} | {r['ours_s']:.3f} | {r['speed-up']:.1f}× "
        f"| {r['max_abs_difference']:.1e} |"
        for r in rows
    ]
    md += ["", "Best of each; both from the same gradients and orders (bench/pcgrad.py's docstring).", ""]
    save_result(args.out, "pcgrad", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
