"""Throughput benchmark: our teacher, student and distill steps against the Hugging Face Trainer, in one process.

    python bench/run.py [--steps N] [--warmup N] [--out bench/results] [--quick]

Writes <out>/<YYYY-MM-DD>.json and .md (UTC date). Sections, in order: 1 matmul peak, 2 training throughput (student,
teachers, Trainer padded to 128 and Trainer with dynamic padding + length grouping), 3 distill (soft-target caching),
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
from accelerate.utils import set_seed
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from report import targets, write_report  # bench/report.py (the script's folder is on sys.path)
from transformers import AutoModelForSequenceClassification as HFModel
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments, default_data_collator

from pipeline.core.accel import make_accelerator
from pipeline.core.config import RunConfig, load_config
from pipeline.core.data import TokenizedSplit, collate, tokenize_split
from pipeline.core.glue import read_tsv_split
from pipeline.core.loss import annealing_lambda, multitask_loss
from pipeline.core.model import build_model, bundled_minilm_path, load_tokenizer
from pipeline.core.sampling import group_by_length, multitask_plan, rank_slice, single_task_plan, steps_for
from pipeline.core.store import load_soft_targets, save_soft_targets
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import get_lr_multiplier, make_optimizer, model_inputs, predict, set_lr, to_device

ROOT = Path(__file__).resolve().parent.parent
BATCH, MAX_LEN, EVAL_BATCH, SEED, MNLI_ROWS = 32, 128, 128, 0, 392_702
HF_ARGS = dict(logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True)
HF_ARGS |= dict(disable_tqdm=True)  # no bars; the Trainer prints its end-of-training summary instead


@dataclasses.dataclass
class Bench:
    """What every measurement shares."""

    path: str  # the bundled MiniLM
    names: list[str]  # ["sst2", pair task]
    data: dict[str, TokenizedSplit]  # seeded train subsets, tokenised by pipeline.core.data.tokenize_split
    cfg: RunConfig  # configs/glue-small.yaml: student/teacher hyperparameters, model head settings
    warmup: int
    steps: int
    params: int = 0  # non-embedding parameters
    peak: float = 0.0  # matmul GFLOP/s


def rss_mb(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak of this process image) from /proc/self/status, in MB."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(x.split()[1]) / 1024 for x in status if x.startswith(f"{field}:"))


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rates(b: Bench, seconds: float, examples: int, tokens: int, padded: int | None, flops: int) -> dict:
    """Throughput; useful FLOPs = flops (6 training, 2 inference) × non-embedding params × real (non-pad) tokens."""
    gflops = flops * b.params * tokens / seconds / 1e9
    out = {"seconds": seconds, "examples": examples, "real_tokens": tokens, "padded_tokens": padded}
    out |= {"examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds, "useful_gflops": gflops}
    return out | {"peak_fraction": gflops / b.peak, "pad_efficiency": tokens / padded if padded else None}


def load_data(glue_dir: Path, names: list[str], n: int, tokenizer) -> dict[str, TokenizedSplit]:
    """A fixed seeded subset of n train rows per task, tokenised as the data stage does."""
    out = {}
    for name in names:
        task = get_glue_task(name)
        rows = read_tsv_split(task, "train", glue_dir)
        keep = np.sort(np.random.default_rng(SEED).choice(len(rows), size=min(n, len(rows)), replace=False))
        out[name] = tokenize_split([rows[i] for i in keep], tokenizer, MAX_LEN, task.name, "train")
    return out


def head(s: TokenizedSplit, n: int) -> TokenizedSplit:
    """The first n rows of a split (for warm-up runs; all of them when it has fewer)."""
    n = min(n, len(s))
    end, cut = int(s.offsets[n]), dict(ids=s.ids[:n], labels=s.labels[:n], offsets=s.offsets[: n + 1])
    return dataclasses.replace(s, input_ids=s.input_ids[:end], token_type_ids=s.token_type_ids[:end], **cut)


def random_teacher(b: Bench, names: list[str]) -> list[np.ndarray]:
    """Stand-in soft targets: float32 [N, C_τ] per task, as the distill stage would store them."""
    rng = np.random.default_rng(SEED)
    return [rng.standard_normal((len(b.data[n]), get_glue_task(n).num_labels), dtype=np.float32) for n in names]


# ---- 1. matmul peak --------------------------------------------------------------------------------------------------


def bench_matmul(repeats: int) -> float:
    x, y = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.matmul(x, y)
    return 2 * 2048**3 / min(timed(lambda: torch.matmul(x, y)) for _ in range(repeats)) / 1e9


# ---- 2. training: our loop (the step of student/train.py and teachers/train.py; no tqdm, log file or checkpoints) --


class Ours:
    """Model, fused AdamW and Accelerator set up as student/train.py (section "student") or teachers/train.py do."""

    def __init__(
        self, b: Bench, names: list[str], section: str, teacher: list[np.ndarray] | None = None, precision="fp32"
    ):
        sc = getattr(b.cfg, section)
        set_seed(sc.seed)
        self.tasks, self.splits, self.teacher = [get_glue_task(n) for n in names], [b.data[n] for n in names], teacher
        self.acc, self.clip = make_accelerator(precision=precision), sc.max_grad_norm
        model = build_model(b.path, self.tasks, b.cfg.model, seed=sc.seed)
        self.max_outputs = model.max_outputs if section == "student" else 1  # teachers/train.py: collate's default
        optimizer = make_optimizer(model, sc.lr, sc.layer_decay, sc.weight_decay)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.model.train()
        sizes = [len(s) for s in self.splits]
        self.total = steps_for(sum(sizes), BATCH, sc.epochs)  # λ and the lr follow a real run over these examples
        self.warm = int(sc.warmup * self.total)
        if section == "student":
            self.plan = multitask_plan(sizes, BATCH, b.warmup + b.steps, sc.alpha, sc.seed)
        else:
            self.plan = single_task_plan(sizes[0], BATCH, b.warmup + b.steps, seed=sc.seed)
        self.plan = group_by_length(self.plan, [s.lengths for s in self.splits], sc.group_by_length, sc.seed)

    def step(self, s: int, lam: float | None) -> tuple[int, int]:
        """Optimizer step s. lam None: annealed λ with teacher targets (BAM); a number: fixed λ, no teacher tensor.
        Returns (real tokens, padded tokens)."""
        acc, real, padded = self.acc, 0, 0
        lam, teacher = (annealing_lambda(s, self.total), self.teacher) if lam is None else (lam, None)
        set_lr(self.optimizer, get_lr_multiplier(s, self.total, self.warm))
        parts = rank_slice(self.plan[s], acc.process_index, acc.num_processes, 1)
        for part in parts:
            batch = collate([tuple(x) for x in part], self.splits, self.tasks, teacher, self.max_outputs)
            batch = to_device(batch, acc.device)
            with acc.autocast():
                outputs = self.model(**model_inputs(batch))
            loss, _ = multitask_loss(outputs, batch["task_ids"], batch["labels"], self.tasks, lam, batch.get("teacher"))
            acc.backward(loss / len(parts))
            real, padded = real + int(batch["attention_mask"].sum()), padded + batch["attention_mask"].numel()
        if self.clip > 0:
            acc.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return real, padded

    def run(self, b: Bench, lam: float | None) -> dict:
        for s in range(b.warmup):
            self.step(s, lam)
        start, counts = time.perf_counter(), [self.step(s, lam) for s in range(b.warmup, b.warmup + b.steps)]
        seconds = time.perf_counter() - start
        return rates(b, seconds, b.steps * BATCH, sum(r for r, _ in counts), sum(p for _, p in counts), 6)


# ---- 2. training: the Hugging Face Trainer ---------------------------------------------------------------------------


class StepClock(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def hf_dataset(split: TokenizedSplit, pad_to: int | None = None, labels: bool = True) -> Dataset:
    """Our token ids as a datasets.Dataset; pad_to=128 is run_glue's default padding="max_length"."""
    cols = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    for lo, hi in zip(split.offsets[:-1], split.offsets[1:]):
        fill = [0] * (pad_to - (hi - lo) if pad_to else 0)
        cols["input_ids"].append(split.input_ids[lo:hi].tolist() + fill)
        cols["token_type_ids"].append(split.token_type_ids[lo:hi].tolist() + fill)
        cols["attention_mask"].append([1] * int(hi - lo) + fill)
    return Dataset.from_dict(cols | ({"labels": split.labels.astype(np.int64).tolist()} if labels else {}))


def trainer_train(b: Bench, tokenizer, name: str, dynamic: bool) -> dict:
    """dynamic False: every example padded to 128 (run_glue's default); True: DataCollatorWithPadding +
    train_sampling_strategy="group_by_length" (transformers 5.x's spelling of group_by_length=True)."""
    torch.manual_seed(SEED)
    model = HFModel.from_pretrained(b.path, num_labels=get_glue_task(name).num_labels)
    masks, clock = [], StepClock()  # one mask per forward = per optimizer step (no accumulation)
    model.register_forward_pre_hook(lambda m, args, kw: masks.append(kw["attention_mask"]), with_kwargs=True)
    sampling = "group_by_length" if dynamic else "random"
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(max_steps=b.warmup + b.steps, learning_rate=5e-5, weight_decay=0.01, train_sampling_strategy=sampling)
        args = TrainingArguments(tmp, per_device_train_batch_size=BATCH, **kw, **HF_ARGS)  # weight decay as ours
        collator = DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator
        dataset = hf_dataset(b.data[name], None if dynamic else MAX_LEN)
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock]).train()
    timed_masks = masks[b.warmup : b.warmup + b.steps]
    seconds = clock.times[b.warmup + b.steps - 1] - clock.times[b.warmup - 1]
    real, padded = sum(int(m.sum()) for m in timed_masks), sum(m.numel() for m in timed_masks)
    return rates(b, seconds, sum(m.shape[0] for m in timed_masks), real, padded, 6)


def mix_rate(per_task: dict, counts: dict) -> dict:
    """The Trainer's time for the student's examples: each task's count at that task's measured per-example time."""
    seconds = sum(c / per_task[t]["examples_per_s"] for t, c in counts.items())
    tokens = sum(c * per_task[t]["real_tokens"] / per_task[t]["examples"] for t, c in counts.items())
    return {"examples_per_s": sum(counts.values()) / seconds, "tokens_per_s": tokens / seconds}


def compare(ours: dict, default: dict, best: dict) -> dict:
    ratio = {"vs_trainer_best": ours["examples_per_s"] / best["examples_per_s"]}
    ratio["vs_trainer_default"] = ours["examples_per_s"] / default["examples_per_s"]
    return ours | ratio | {"tokens_vs_trainer_best": ours["tokens_per_s"] / best["tokens_per_s"]}


def bench_training(b: Bench, tokenizer) -> tuple[dict, dict, dict]:
    trainer, teacher = {}, {}
    for name in b.names:
        runs = {
            "max_length": trainer_train(b, tokenizer, name, False),
            "dynamic": trainer_train(b, tokenizer, name, True),
        }
        trainer[name] = runs | {"best_mode": max(runs, key=lambda m: runs[m]["examples_per_s"])}
        print(f"  Trainer {name}: " + ", ".join(f"{m} {r['examples_per_s']:.1f} ex/s" for m, r in runs.items()))
    for name in b.names:
        t = trainer[name]
        teacher[name] = compare(Ours(b, [name], "teachers").run(b, lam=1.0), t["max_length"], t[t["best_mode"]])
        print(f"  teacher {name}: {teacher[name]['examples_per_s']:.1f} ex/s")
    ours = Ours(b, b.names, "student", random_teacher(b, b.names))
    s = ours.run(b, lam=None)
    counts = np.bincount(ours.plan[b.warmup :, :, 0].ravel(), minlength=len(b.names))
    s["task_counts"] = dict(zip(b.names, counts.tolist()))
    default = mix_rate({n: trainer[n]["max_length"] for n in b.names}, s["task_counts"])
    best = mix_rate({n: trainer[n][trainer[n]["best_mode"]] for n in b.names}, s["task_counts"])
    print(f"  student: {s['examples_per_s']:.1f} ex/s")
    return compare(s, default, best) | {"trainer_mix_default": default, "trainer_mix_best": best}, teacher, trainer


# ---- 3. distill, 4. distillation overhead ----------------------------------------------------------------------------


def bench_distill(b: Bench, tokenizer) -> dict:
    """pipeline.core.training.predict vs Trainer.predict, eval batch 128, dynamic padding, the same examples."""
    out = {"ours": {}, "trainer": {}, "trainer_length_grouped": {}}
    for name in b.names:
        task, split, acc = get_glue_task(name), b.data[name], make_accelerator()
        tokens, model = int(split.offsets[-1]), build_model(b.path, [task], b.cfg.model, SEED)
        predict(model, head(split, 256), 0, [task], acc, EVAL_BATCH)  # warm-up
        sec = timed(lambda: predict(model, split, 0, [task], acc, EVAL_BATCH))
        out["ours"][name] = rates(b, sec, len(split), tokens, tokens, 2)
        dataset = hf_dataset(split, labels=False)  # no labels, so no loss: pure inference, as ours
        for key, sampling in (("trainer", "random"), ("trainer_length_grouped", "group_by_length")):
            hf = HFModel.from_pretrained(b.path, num_labels=task.num_labels)
            with tempfile.TemporaryDirectory() as tmp:
                # the eval sampler follows train_sampling_strategy
                args = TrainingArguments(
                    tmp, per_device_eval_batch_size=EVAL_BATCH, train_sampling_strategy=sampling, **HF_ARGS
                )
                trainer = Trainer(model=hf, args=args, data_collator=DataCollatorWithPadding(tokenizer))
                trainer.predict(dataset.select(range(min(256, len(dataset)))))  # warm-up
                out[key][name] = rates(b, timed(lambda: trainer.predict(dataset)), len(split), tokens, None, 2)
    for parts in out.values():
        sec, ex, tok = (sum(p[k] for p in parts.values()) for k in ("seconds", "examples", "real_tokens"))
        parts["all"] = rates(b, sec, ex, tok, None, 2)
    ours, hf, grouped = (out[k]["all"] for k in ("ours", "trainer", "trainer_length_grouped"))
    result = {k: ours[k] for k in ("examples_per_s", "useful_gflops", "peak_fraction")}
    result["vs_trainer_predict"] = ours["examples_per_s"] / hf["examples_per_s"]
    return result | {
        "vs_trainer_predict_length_grouped": ours["examples_per_s"] / grouped["examples_per_s"],
        "detail": out,
    }


def bench_overhead(b: Bench) -> dict:
    """BAM step (teacher tensor, annealed λ < 1) vs Multi step (λ = 1, no teacher tensor): interleaved step by step,
    alternating which goes first, on one model and the same plan, so drifts in machine speed hit both alike."""
    ours, seconds = Ours(b, b.names, "student", random_teacher(b, b.names)), {"bam": 0.0, "multi": 0.0}
    for s in range(b.warmup + b.steps):
        for key, lam in [("bam", None), ("multi", 1.0)][:: 1 if s % 2 == 0 else -1]:
            t = timed(lambda: ours.step(s, lam))
            seconds[key] += t if s >= b.warmup else 0.0
    return {"percent": 100 * (seconds["bam"] / seconds["multi"] - 1), "seconds": seconds, "steps": b.steps}


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
    steps, out = min(10, b.warmup + b.steps), {}
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


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per setting (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps per setting, >= 1 (default 5)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the .json and .md go")
    p.add_argument("--examples", type=int, default=2000, help="seeded train rows per task (default 2000)")
    p.add_argument("--pair-task", default="mrpc", choices=["mrpc", "rte"], help="the sentence-pair task (default mrpc)")
    p.add_argument("--quick", action="store_true", help="sanity check: 2 warm-up + 3 timed steps, 256 rows per task")
    a = p.parse_args()
    if a.quick:
        a.warmup, a.steps, a.examples = 2, 3, 256
    if a.warmup < 1 or a.steps < 1:
        p.error("--warmup and --steps must be >= 1")
    return a


def main() -> None:
    a = parse_args()
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"  # beside the checkout
    glue_dir, names = Path(os.environ.get("GLUE_DIR", default)), ["sst2", a.pair_task]
    missing = [str(f) for n in names if not (f := glue_dir / get_glue_task(n).glue_dir / "train.tsv").is_file()]
    if missing:
        sys.exit(f"bench: no GLUE train file {', '.join(missing)}; set GLUE_DIR to a folder in the GLUE TSV layout")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # weight-loading bars
    disable_progress_bar()
    now, config, path = dt.datetime.now(dt.timezone.utc), "configs/glue-small.yaml", bundled_minilm_path()
    r = {"date": now.isoformat(timespec="seconds"), "command": shlex.join(sys.orig_argv), "cwd": os.getcwd()}
    r["machine"] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    r["machine"] |= {"transformers": transformers.__version__, "accelerate": accelerate.__version__}
    r["machine"] |= {"platform": platform.platform(), "python": platform.python_version()}
    r["settings"] = {"steps": a.steps, "warmup": a.warmup, "quick": a.quick, "examples_per_task": a.examples}
    r["settings"] |= {"tasks": ", ".join(names), "batch": BATCH, "max_length": MAX_LEN, "glue_dir": str(glue_dir)}
    r["settings"] |= {"encoder": path, "hyperparameters": config}
    cfg, tokenizer = load_config(ROOT / config, [f"--data.tasks={names!r}"]), load_tokenizer(path)
    b = Bench(path, names, load_data(glue_dir, names, a.examples, tokenizer), cfg, a.warmup, a.steps)
    enc = build_model(path, [get_glue_task(names[0])], cfg.model, SEED).encoder
    b.params = sum(x.numel() for x in enc.parameters()) - sum(x.numel() for x in enc.embeddings.parameters())
    r["non_embedding_params"] = b.params
    print("[bench] 1/7 matmul peak")
    b.peak = r["matmul_gflops"] = bench_matmul(3 if a.quick else 10)
    print(f"  {b.peak:.1f} GFLOP/s\n[bench] 2/7 training throughput")
    r["student"], r["teacher"], r["trainer"] = bench_training(b, tokenizer)
    print("[bench] 3/7 distill")
    r["distill"] = bench_distill(b, tokenizer)
    print(f"  ours / Trainer.predict {r['distill']['vs_trainer_predict']:.2f}\n[bench] 4/7 distillation overhead")
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
