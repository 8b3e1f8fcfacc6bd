"""Where a training step's time goes, from a py-spy profile: each sample's stack put into one category (the first
that matches, in the order of CATEGORIES), as shares of the sampled time of the training thread.

    py-spy record --native -r 50 -d 40 -f raw -o PROFILE.txt -p PID      # a running student (or teacher)
    python bench/profile_split.py PROFILE.txt --out bench/results/profile-NAME.md --note "what ran"

Native frames inside code that oneDNN generates at run time (its matrix-product kernels, among others) have no
symbols: such samples are counted by the nearest named frame above them (a `Linear` forward, the backward pass).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from collections import Counter
from pathlib import Path

import torch

# (category, substrings of a frame, lower case); the first category with a match in a sample's stack takes it
CATEGORIES = (
    ("optimizer step (fused AdamW)", ("adamw",)),
    ("dropout (its random mask)", ("bernoulli", "dropout")),
    ("attention (SDPA, its batched fp32 products)", ("sdpa", "scaled_dot_product", "gemm_batch")),
    ("softmax / log-softmax", ("softmax",)),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu",)),
    ("bf16 <-> fp32 copies", ("reduced_float_copy", "_to_copy")),
    ("memory allocation", ("empty_generic", "empty_strided", "malloc", "resize_bytes")),
    ("Linear forward (matrix products)", ("linear.forward", "addmm", "mkldnn_gemm", "brgemm", "sgemm")),
    ("backward pass, unattributed (mostly matrix products)", ("_engine_run_backward", "run_backward")),
)
OTHER_THREAD = "thread._bootstrap"  # a thread Python started (tqdm's monitor, a tracker's): not the training step


def split(lines: list[str]) -> tuple[Counter, int]:
    """Samples per category of a py-spy raw profile (`stack count` per line), of the main thread alone."""
    shares, total = Counter(), 0
    for number, line in enumerate(lines, 1):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            raise SystemExit(f"line {number}: expected 'frame;frame;... COUNT' (py-spy record -f raw), got {line!r}")
        low = stack.lower()
        if OTHER_THREAD in low:
            continue
        total += int(count)
        name = next((cat for cat, words in CATEGORIES if any(w in low for w in words)), "other")
        shares[name] += int(count)
    return shares, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--note", default="", help="what was profiled, and how (written under the table)")
    args = parser.parse_args()
    shares, total = split(args.profile.read_text().splitlines())
    if total == 0:
        raise SystemExit(f"{args.profile}: no samples of the main thread")
    rows = [f"| {name} | {100 * n / total:.1f} % |" for name, n in shares.most_common()]
    shown = [str(args.profile.name), "--out", str(args.out)] + (["--note", "NOTE"] if args.note else [])
    text = "\n".join([
        f"# Profile split, {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        "",
        f"Command: `python bench/profile_split.py {' '.join(shown)}` (NOTE: the paragraph below); {total} samples.",
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__} (CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}), {platform.platform()}.",
        "",
        "| category | share of the step's sampled time |",
        "|---|---:|",
        *rows,
        "",
        args.note,
        "",
    ])  # fmt: skip
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
