"""Teachers one after the other on every core, or side by side on one core each: which trains faster?

    python bench/task_parallel.py [--tasks sst2,mrpc] [--steps 30] [--warmup 3] [--examples 2000] [--out bench/results]

Each task in `--tasks` (default SST-2 and MRPC: short single sentences, long pairs) trains our teacher step (bench/
throughput.py's `Ours`, configs/glue-small.yaml's settings, fp32) for `--steps` timed steps after `--warmup`:
"in turn", one fresh process at a time with a torch thread per core (what the teachers stage does today); "side by
side", one process per task started together, one torch thread each, timed from a barrier after every warm-up.
A side-by-side task's time per step is taken while all of them run (up to the first to finish: after that the
others would have a core to themselves). Figures: the in-turn time of the work (`--steps` steps of each task), the
side-by-side time of the same work with every core kept busy (Σ steps × time per step ÷ processes), and their
ratio (> 1: side by side is faster). Writes <out>/task-parallel-<date>.json and .md with the command, the machine
and the date.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_module
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from report import glue_dir, heading, provenance, save_result  # noqa: E402
from throughput import BATCH, Bench, Ours, load_data  # noqa: E402

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.model import bundled_minilm_path, load_tokenizer  # noqa: E402

TIMEOUT = 3600  # seconds a process may take for its task


def _bench(task: str, args: argparse.Namespace) -> Bench:
    path = bundled_minilm_path()
    data = load_data(glue_dir([task]), [task], args.examples, load_tokenizer(path))
    cfg = load_config(ROOT / "configs" / "glue-small.yaml")
    return Bench(path, [task], data, cfg, args.warmup, args.steps, peak=1.0)


def train(task: str, args: argparse.Namespace, threads: int, barrier=None) -> dict:
    """`task`'s teacher step at `threads` torch threads: warm-up, (wait for the others), the timed steps."""
    torch.set_num_threads(threads)
    b = _bench(task, args)
    ours = Ours(b, [task], "teachers")
    for s in range(b.warmup):
        ours.step(s, 1.0)
    if barrier is not None:
        barrier.wait()
    start, ends = time.perf_counter(), []  # perf_counter: the system's monotonic clock, shared by the processes
    for s in range(b.warmup, b.warmup + b.steps):
        ours.step(s, 1.0)
        ends.append(time.perf_counter())
    seconds = ends[-1] - start
    out = {"task": task, "threads": threads, "seconds": seconds, "examples_per_s": b.steps * BATCH / seconds}
    return out | {"start": start, "ends": ends}


def step_seconds(run: dict, until: float) -> float:
    """A run's mean time per step over the steps it finished by `until` (all of them when none)."""
    done = [t for t in run["ends"] if t <= until] or run["ends"]
    return (done[-1] - run["start"]) / len(done)


def _child(task: str, args: argparse.Namespace, barrier, queue) -> None:
    queue.put(train(task, args, 1, barrier))


def side_by_side(args: argparse.Namespace) -> list[dict]:
    """One spawned process per task, together; a child that dies ends the bench instead of leaving the rest waiting."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(args.tasks), timeout=TIMEOUT), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(t, args, barrier, queue)) for t in args.tasks]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=TIMEOUT) for _ in procs]
    except queue_module.Empty:
        codes = [p.exitcode for p in procs]
        for p in procs:
            p.kill()
        sys.exit(f"bench: a side-by-side process gave no result within {TIMEOUT} s (exit codes {codes})")
    for p in procs:
        p.join()
    return sorted(results, key=lambda r: args.tasks.index(r["task"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=lambda s: s.split(","), default=["sst2", "mrpc"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2000, help="training rows per task (seeded subset)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    glue_dir(args.tasks)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if len(args.tasks) > cores:
        sys.exit(f"bench: {len(args.tasks)} tasks side by side need as many cores; this machine has {cores}")
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # each in-turn run in a fresh process of its own too
        in_turn = [pool.apply(train, (t, args, cores)) for t in args.tasks]
    parallel = side_by_side(args)
    turn = sum(r["seconds"] for r in in_turn)
    overlap = min(r["ends"][-1] for r in parallel)  # until the first side-by-side process is done
    per_step = {r["task"]: step_seconds(r, overlap) for r in parallel}
    balanced = sum(args.steps * t for t in per_step.values()) / len(parallel)
    wall = max(r["seconds"] for r in parallel)
    for r in in_turn + parallel:
        del r["start"], r["ends"]
    result = {
        **provenance(load),
        "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
        "in_turn": in_turn,
        "side_by_side": parallel,
        "side_by_side_step_s": per_step,
        "seconds": {"in_turn": turn, "side_by_side_balanced": balanced, "side_by_side_wall": wall},
        "in_turn_over_side_by_side": turn / balanced,
    }
    md = [
        *heading("Teachers in turn on every core, or side by side on one core each", result),
        "| task | in turn: threads | s per step | side by side: threads | s per step, all running |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {a['task']} | {a['threads']} | {a['seconds'] / args.steps:.3f} | {b['threads']} | "
            f"{per_step[b['task']]:.3f} |"
            for a, b in zip(in_turn, parallel)
        ),
        "",
        f"{args.steps} timed steps of each task: in turn {turn:.1f} s; side by side {balanced:.1f} s with every core "
        f"kept busy (Σ steps × time per step while all ran, ÷ {len(parallel)} processes), {wall:.1f} s as run (the "
        f"slower task's wall time: the other core idles once its task is done). In turn ÷ side by side: "
        f"**{turn / balanced:.2f}×** (> 1: side by side is faster).",
        "",
    ]
    save_result(args.out, "task-parallel", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
