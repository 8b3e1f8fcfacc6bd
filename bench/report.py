"""The benchmark's report: targets and verdicts, and the .json and .md files (used by bench/run.py); the
provenance and files of the smaller benchmarks (bench/pcgrad.py, bench/precision.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

from pipeline.core.tasks import get_glue_task


def provenance(load: float) -> dict:
    """The command, the UTC date and the machine of a benchmark run; `load`: the 1-minute load average at its start
    (other work on the machine slows every measurement alike)."""
    import torch

    return {
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_1min_at_start": load,
        },
    }


def glue_dir(tasks: list[str]) -> Path:
    """Where the benchmarks read GLUE: $GLUE_DIR, else ../shared/data/glue beside the checkout; exits naming the
    tasks whose training file is not there."""
    path = Path(os.environ.get("GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    missing = [t for t in tasks if not (path / get_glue_task(t).glue_dir / "train.tsv").is_file()]
    if missing:
        sys.exit(f"bench: no GLUE train file for {missing} in {path}; set GLUE_DIR to a folder in the GLUE TSV layout")
    return path


def heading(title: str, result: dict) -> list[str]:
    """The first lines of a smaller benchmark's .md: `# title, date`, then its command and machine (`provenance`)."""
    return [f"# {title}, {result['date']}", "", f"Command: `{result['command']}`. Machine: {result['machine']}.", ""]


def save_result(out: Path, name: str, result: dict, md: list[str]) -> None:
    """`result` (with `provenance`'s keys) as <out>/<name>-<date>.json, `md` as the .md beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"{name}-{result['date'][:10]}"
    (out / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{stamp}.md").write_text("\n".join(md), encoding="utf-8")


def targets(r: dict) -> list[list]:
    """[figure, measured, target, met], decided on the unrounded values; the speed figures at each precision."""
    sr, rows = r["second_run"], []
    for precision, p in r["detail"].items():
        for who, x in [("student", p["student"])] + [(f"teacher {n}", t) for n, t in p["teacher"].items()]:
            rows += [[f"{precision} {who}: examples/s / Trainer-best", x["vs_trainer_best"], ">=", 1.3]]
            rows += [[f"{precision} {who}: useful FLOP/s / {precision} matmul peak", x["peak_fraction"], ">=", 0.7]]
        d = p["distill"]
        rows += [
            [f"{precision} distill: examples/s / Trainer.predict", d["vs_trainer_predict"], ">=", 2.0],
            [
                f"{precision} distill: / Trainer.predict length-grouped",
                d["vs_trainer_predict_length_grouped"],
                ">=",
                1.5,
            ],
            [f"{precision} distill: inference FLOP/s / {precision} matmul peak", d["peak_fraction"], ">=", 0.8],
        ]
    first_step = bool(sr.get("data_skipped") and not sr.get("retokenised") and sr.get("first_logged_student_step_s"))
    rows += [
        ["distillation overhead, % (BAM vs Multi step time)", r["distill_overhead"], "<=", 3.0],
        ["student peak RSS / largest single-task fine-tune", r["rss"]["student_vs_single_max"], "<=", 1.2],
        ["(the same / smallest single-task fine-tune)", r["rss"]["student_vs_single_min"], "<=", 1.2],
        ["soft-target store memory-mapped", r["store"]["memory_mapped"], "", True],
        ["second run reaches its first step without re-tokenising", first_step, "", True],
    ]
    ops = {">=": lambda v, x: v >= x, "<=": lambda v, x: v <= x, "": lambda v, x: v is x}
    return [[f, v, f"{op} {fmt(x)}".strip(), ops[op](v, x)] for f, v, op, x in rows]


def fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "n/a"}[v]
    if isinstance(v, int):
        return f"{v:,}"
    return (f"{v:.3f}" if abs(v) < 100 else f"{v:,.1f}") if isinstance(v, float) else str(v)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = [f"| {' | '.join(fmt(c) for c in row)} |" for row in [header] + rows]
    return lines[:1] + ["|" + "---|" * len(header)] + lines[1:] + [""]


def flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [[f"{prefix}{k}", v]]


def write_report(r: dict, out: Path, stamp: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    quick = " **--quick: a sanity check; these numbers mean nothing.**" * r["settings"]["quick"]
    command = f"Command: `{r['command']}` (in `{r['cwd']}` of the repository).{quick}"
    md = [f"# Throughput benchmark, {r['date']}", "", command, ""]
    md += table(["machine, setting", "value"], [[k, v] for k, v in (r["machine"] | r["settings"]).items()])
    peaks = ", ".join(f"{p} **{x['matmul_gflops']:.1f} GFLOP/s**" for p, x in r["detail"].items())
    md += [
        f"Matmul peak (best 2048×2048 matmul at each precision): {peaks}. Useful FLOP/s = 6 (training) or 2 "
        "(inference) × non-embedding parameters × real (non-pad) tokens / time, against the peak of its own "
        f"precision; non-embedding parameters = all encoder parameters minus the embeddings module's = "
        f"{r['non_embedding_params']:,} (pooler included, task heads not). Verdicts use the unrounded values (in the "
        "JSON); bench/README.md defines every figure.\n",
        "## Targets\n",
    ]
    md += table(["figure", "measured", "target", "met"], targets(r))
    for precision, p in r["detail"].items():
        md += precision_tables(precision, p)
    other = {k: r[k] for k in ("distill_overhead_detail", "store", "rss", "second_run")}
    md += ["## Other figures (fp32)", ""] + table(["figure", "value"], list(flat(other)))
    (out / f"{stamp}.md").write_text("\n".join(md), encoding="utf-8")


def precision_tables(precision: str, p: dict) -> list[str]:
    """Training and distill tables of one precision (bench/throughput.py `bench_precision`)."""
    st = p["student"]
    rows = [[f"ours: student (BAM), examples {st['task_counts']}", st]]
    rows += [[f"ours: teacher {n}", t] for n, t in p["teacher"].items()]
    for n, t in p["trainer"].items():
        rows += [[f"Trainer {n}: {setting}", x] for setting, x in t.items() if setting != "best_mode"]
    keys = ["examples_per_s", "tokens_per_s", "pad_efficiency", "useful_gflops", "peak_fraction", "vs_trainer_best"]
    head = ["run", "examples/s", "real tokens/s", "pad efficiency", "useful GFLOP/s", "of peak", "/ Trainer-best"]
    extra = ["/ Trainer (a)", "warm-up s", "autocast"]
    rows = [[name] + [x.get(k) for k in keys + ["vs_trainer_default", "warmup_s", "autocast"]] for name, x in rows]
    best = {n: t["best_mode"] for n, t in p["trainer"].items()}
    md = [f"## {precision}: training throughput", ""] + table(head + extra, rows)
    mix = {k: st[f"trainer_mix_{k}"] for k in ("best", "default")}
    default = f", (a) {mix['default']['examples_per_s']:.1f} ex/s" if mix["default"] else ""
    md += [
        f"Trainer settings: (a) max_length = every example padded to 128 (run_glue's default); dynamic = dynamic "
        "padding + length grouping; +compile = `torch_compile=True` (inductor; its compile time is in the warm-up "
        f"pass, `warm-up s`). Trainer-best = the fastest setting per task: {best}. Every run makes an untimed pass "
        "over the same rows of each task, then a timed pass over them again: every figure of a task is over the same "
        "examples (checked by their real tokens). The student's Trainer figure is the Trainer's time for the "
        "student's examples of each task, at that task's measured rate: best "
        f"{mix['best']['examples_per_s']:.1f} ex/s{default}. Teachers are compared with the Trainer on their "
        "own task. `autocast`: whether bf16 autocast was on in the Trainer's forward.\n",
        f"## {precision}: distill (soft-target caching, eval batch 128)\n",
        "ours = pipeline.core.training.predict (length-sorted); trainer = Trainer.predict with dynamic padding "
        "(sequential order); trainer_length_grouped = Trainer.predict with the length-grouped sampler, for reference "
        "only (its outputs come back in a shuffled order, unusable for caching).\n",
    ]
    keys = ["examples_per_s", "tokens_per_s", "useful_gflops", "peak_fraction"]
    rows = [[k, n] + [x[c] for c in keys] for k, parts in p["distill"]["detail"].items() for n, x in parts.items()]
    return md + table(["run", "task"] + head[1:3] + ["inference GFLOP/s", "of peak"], rows)
