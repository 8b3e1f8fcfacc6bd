"""Teachers one after the other on every core, or side by side on one core each: which trains more examples per second?

    python bench/task_parallel.py [--steps 30] [--warmup 3] [--examples 2000] [--out bench/results]

Each task in `--tasks` (default SST-2 and MRPC: short single sentences, long pairs) trains our teacher step (bench/
throughput.py's `Ours`, configs/glue-small.yaml's settings, fp32) for `--steps` timed steps after `--warmup`:
"in turn", one process at a time with a torch thread per core (what the teachers stage does today); "side by side",
one process per task started together, one torch thread each, timed from a barrier after every warm-up. Figures:
each way's examples/s over all tasks (the sum of the side-by-side processes' own rates: the throughput a scheduler
keeping every core busy would see), and the side-by-side wall time against the in-turn total. Writes
<out>/task-parallel-<date>.json and .md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import heading, provenance, save_result  # noqa: E402
from throughput import BATCH, Bench, Ours, load_data  # noqa: E402

from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.tasks import get_glue_task  # noqa: E402


def _glue_dir() -> Path:
    return Path(os.environ.get("GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))


def _bench(task: str, args: argparse.Namespace) -> Bench:
    from pipeline.core.model import bundled_minilm_path, load_tokenizer

    path = bundled_minilm_path()
    data = load_data(_glue_dir(), [task], args.examples, load_tokenizer(path))
    cfg = load_config(ROOT / "configs" / "glue-small.yaml")
    return Bench(path, [task], data, cfg, args.warmup, args.steps, peak=1.0)


def train(task: str, args: argparse.Namespace, threads: int, barrier=None) -> dict:
    """`task`'s teacher step at `threads` torch threads: warm-up, (wait for the others), the timed steps."""
    import torch

    torch.set_num_threads(threads)
    b = _bench(task, args)
    ours = Ours(b, [task], "teachers")
    for s in range(b.warmup):
        ours.step(s, 1.0)
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    for s in range(b.warmup, b.warmup + b.steps):
        ours.step(s, 1.0)
    seconds = time.perf_counter() - start
    return {"task": task, "threads": threads, "seconds": seconds, "examples_per_s": b.steps * BATCH / seconds}


def _child(task: str, args: argparse.Namespace, barrier, queue) -> None:
    queue.put(train(task, args, 1, barrier))


def side_by_side(args: argparse.Namespace) -> list[dict]:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(args.tasks)), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(t, args, barrier, queue)) for t in args.tasks]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
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
    missing = [t for t in args.tasks if not (_glue_dir() / get_glue_task(t).glue_dir / "train.tsv").is_file()]
    if missing:
        sys.exit(f"bench: no GLUE train file for {missing} in {_glue_dir()}; set GLUE_DIR")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:  # each in-turn run in a fresh process too, as a teacher of the stage would run
        in_turn = [pool.apply(train, (t, args, cores)) for t in args.tasks]
    parallel = side_by_side(args)
    examples = len(args.tasks) * args.steps * BATCH
    turn_rate = examples / sum(r["seconds"] for r in in_turn)
    side_rate = sum(r["examples_per_s"] for r in parallel)
    wall = max(r["seconds"] for r in parallel)
    result = {
        **provenance(load),
        "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
        "in_turn": in_turn,
        "side_by_side": parallel,
        "examples_per_s": {"in_turn": turn_rate, "side_by_side": side_rate},
        "side_by_side_over_in_turn": side_rate / turn_rate,
        "wall_s": {"in_turn": sum(r["seconds"] for r in in_turn), "side_by_side": wall},
    }
    md = [
        *heading("Teachers in turn on every core, or side by side on one core each", result),
        "| task | in turn: threads | examples/s | side by side: threads | examples/s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {a['task']} | {a['threads']} | {a['examples_per_s']:.1f} | {b['threads']} | {b['examples_per_s']:.1f} |"
            for a, b in zip(in_turn, parallel)
        ),
        "",
        f"All tasks: in turn {turn_rate:.1f} examples/s, side by side {side_rate:.1f} (sum of the processes' rates): "
        f"**{side_rate / turn_rate:.2f}×**. Wall time for {args.steps} timed steps of each: in turn "
        f"{result['wall_s']['in_turn']:.1f} s, side by side {wall:.1f} s (the slower task's; the other's core idles "
        "once it is done).",
        "",
    ]
    save_result(args.out, "task-parallel", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
