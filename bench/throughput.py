"""Sections 1–3 of bench/run.py, at one precision: the matmul peak, training throughput (our student and teachers
against the Hugging Face Trainer's settings) and distill (our predictor against `Trainer.predict`).

Precision "fp32" runs everything in float32; "bf16" runs ours as `model.precision: bf16` does (Accelerate's bf16
autocast) and the Trainer with `bf16=True`, and measures the matmul peak on bfloat16 matrices. The Trainer's
settings: (a) every example padded to 128 (run_glue's default), (b) dynamic padding + length grouping, each also
with `torch_compile=True` (inductor); each figure records whether autocast was on in the model's forward.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import numpy as np
import torch
from accelerate.utils import set_seed
from datasets import Dataset
from transformers import AutoModelForSequenceClassification as HFModel
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments, default_data_collator

from pipeline.core.accel import make_accelerator
from pipeline.core.config import RunConfig
from pipeline.core.data import TokenizedSplit, collate, tokenize_split
from pipeline.core.glue import read_tsv_split
from pipeline.core.loss import annealing_lambda, multitask_loss
from pipeline.core.model import build_model, load_tokenizer
from pipeline.core.sampling import group_by_length, multitask_plan, rank_slice, single_task_plan, steps_for
from pipeline.core.tasks import get_glue_task
from pipeline.core.training import get_lr_multiplier, make_optimizer, model_inputs, predict, set_lr, to_device

BATCH, MAX_LEN, EVAL_BATCH, SEED = 32, 128, 128, 0
HF_ARGS = dict(logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True)
HF_ARGS |= dict(disable_tqdm=True)  # no bars; the Trainer prints its end-of-training summary instead
# The Trainer's training settings: name → (dynamic padding + length grouping, torch_compile)
SETTINGS = {
    "max_length": (False, False),
    "dynamic": (True, False),
    "max_length+compile": (False, True),
    "dynamic+compile": (True, True),
}


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
    peak: float = 0.0  # matmul GFLOP/s at `precision`
    precision: str = "fp32"  # "fp32" or "bf16"
    rows: int = 0  # > 0: training runs one untimed pass over the first `rows` rows of each task, then one timed pass
    # over the same rows (`passes`), ours and the Trainer's alike; 0: `warmup` then `steps` steps of a drawn plan


def passes(b: Bench, tasks: int) -> tuple[int, int]:
    """(untimed warm-up steps, timed steps) of a training run on `tasks` tasks: one pass each over `b.rows` rows per
    task, or `b.warmup` and `b.steps`."""
    return (tasks * b.rows // BATCH,) * 2 if b.rows else (b.warmup, b.steps)


def trainer_window(rows: int) -> int:
    """The batches the Trainer's length-grouped sampler sorts together on `rows` rows: its mega-batch,
    min(rows // (4 × batch), 50) batches (at least 1)."""
    return max(1, min(rows // (4 * BATCH), 50))


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


def load_data(glue_dir, names: list[str], n: int, tokenizer) -> dict[str, TokenizedSplit]:
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


def bench_matmul(repeats: int, precision: str = "fp32") -> float:
    """The best 2048×2048 matmul, in float32 or bfloat16, in GFLOP/s."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x, y = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    torch.matmul(x, y)
    return 2 * 2048**3 / min(timed(lambda: torch.matmul(x, y)) for _ in range(repeats)) / 1e9


# ---- 2. training: our loop (the step of student/train.py and teachers/train.py; no tqdm, log file or checkpoints) --


class Ours:
    """Model, fused AdamW and Accelerator set up as student/train.py (section "student") or teachers/train.py do,
    at the bench's precision."""

    def __init__(self, b: Bench, names: list[str], section: str, teacher: list[np.ndarray] | None = None):
        sc = getattr(b.cfg, section)
        set_seed(sc.seed)
        self.tasks, self.teacher = [get_glue_task(n) for n in names], teacher
        self.splits = [head(b.data[n], b.rows) if b.rows else b.data[n] for n in names]
        self.acc, self.clip = make_accelerator(precision=b.precision), sc.max_grad_norm
        model = build_model(b.path, self.tasks, b.cfg.model, seed=sc.seed)
        self.max_outputs = model.max_outputs if section == "student" else 1  # teachers/train.py: collate's default
        optimizer = make_optimizer(model, sc.lr, sc.layer_decay, sc.weight_decay)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.model.train()
        sizes = [len(s) for s in self.splits]
        self.total = steps_for(sum(sizes), BATCH, sc.epochs)  # λ and the lr follow a real run over these examples
        self.warm = int(sc.warmup * self.total)
        self.warmup, self.steps = passes(b, len(names))
        steps, lengths = self.warmup + self.steps, [s.lengths for s in self.splits]
        if section == "student":  # with b.rows the tasks' rows shuffled together, so that a pass holds each row once
            self.plan = multitask_plan(sizes, BATCH, steps, sc.alpha, sc.seed, shuffle_all=bool(b.rows))
        else:
            self.plan = single_task_plan(sizes[0], BATCH, steps, seed=sc.seed)
        if b.rows:  # each pass grouped on its own, in windows of the Trainer's mega-batch: neither groups better
            halves = (self.plan[: self.warmup], self.plan[self.warmup :])
            self.plan = np.concatenate([group_by_length(p, lengths, trainer_window(b.rows), sc.seed) for p in halves])
        else:
            self.plan = group_by_length(self.plan, lengths, sc.group_by_length, sc.seed)

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
        for s in range(self.warmup):
            self.step(s, lam)
        start = time.perf_counter()
        counts = [self.step(s, lam) for s in range(self.warmup, self.warmup + self.steps)]
        seconds = time.perf_counter() - start
        return rates(b, seconds, self.steps * BATCH, sum(r for r, _ in counts), sum(p for _, p in counts), 6)


# ---- 2. training: the Hugging Face Trainer ---------------------------------------------------------------------------


class StepClock(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = time.perf_counter()

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


def trainer_train(b: Bench, tokenizer, name: str, setting: str) -> dict:
    """One of SETTINGS: (a) every example padded to 128 (run_glue's default) or dynamic padding
    (DataCollatorWithPadding + train_sampling_strategy="group_by_length", transformers 5.x's spelling of
    group_by_length=True); with or without torch_compile; bf16=True at precision bf16."""
    dynamic, compiled = SETTINGS[setting]
    if compiled:  # dynamo keeps graphs per code object across models: without a reset, earlier runs' graphs count
        torch._dynamo.reset()  # towards its recompile limit, past which it falls back to eager without a word
    torch.manual_seed(SEED)
    model = HFModel.from_pretrained(b.path, num_labels=get_glue_task(name).num_labels)
    masks, autocast, clock = [], [], StepClock()  # one mask per forward = per optimizer step (no accumulation)

    model.register_forward_pre_hook(lambda m, args, kw: masks.append(kw["attention_mask"]), with_kwargs=True)
    # inside the encoder: Accelerate's autocast wraps the top model's forward, which a hook on the top model precedes
    model.base_model.encoder.register_forward_pre_hook(
        lambda m, args: autocast.append(torch.is_autocast_enabled("cpu"))
    )
    sampling, (warmup, steps) = "group_by_length" if dynamic else "random", passes(b, 1)
    with tempfile.TemporaryDirectory() as tmp:  # with b.rows: two epochs over the rows, of which the second is timed
        kw = dict(max_steps=warmup + steps, learning_rate=5e-5, weight_decay=0.01, train_sampling_strategy=sampling)
        kw |= dict(bf16=b.precision == "bf16", torch_compile=compiled)
        args = TrainingArguments(tmp, per_device_train_batch_size=BATCH, **kw, **HF_ARGS)  # weight decay as ours
        collator = DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator
        dataset = hf_dataset(head(b.data[name], b.rows) if b.rows else b.data[name], None if dynamic else MAX_LEN)
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock]).train()
    timed_masks = masks[warmup : warmup + steps]
    seconds = clock.times[warmup + steps - 1] - clock.times[warmup - 1]
    real, padded = sum(int(m.sum()) for m in timed_masks), sum(m.numel() for m in timed_masks)
    out = rates(b, seconds, sum(m.shape[0] for m in timed_masks), real, padded, 6)
    return out | {"warmup_s": clock.times[warmup - 1] - clock.begin, "autocast": all(autocast)}


def mix_rate(per_task: dict, counts: dict) -> dict:
    """The Trainer's time for the student's examples: each task's count at that task's measured per-example time."""
    seconds = sum(c / per_task[t]["examples_per_s"] for t, c in counts.items())
    tokens = sum(c * per_task[t]["real_tokens"] / per_task[t]["examples"] for t, c in counts.items())
    return {"examples_per_s": sum(counts.values()) / seconds, "tokens_per_s": tokens / seconds}


def compare(ours: dict, default: dict | None, best: dict) -> dict:
    """Our figures with the ratios to Trainer-best and (when it ran) to the Trainer's default setting (a)."""
    ratio = {"vs_trainer_best": ours["examples_per_s"] / best["examples_per_s"]}
    if default:
        ratio["vs_trainer_default"] = ours["examples_per_s"] / default["examples_per_s"]
    return ours | ratio | {"tokens_vs_trainer_best": ours["tokens_per_s"] / best["tokens_per_s"]}


def bench_training(b: Bench, tokenizer, settings: list[str]) -> tuple[dict, dict, dict]:
    """Our teachers and student against the Trainer's `settings` (names of SETTINGS); Trainer-best is, per task,
    the fastest of them."""
    trainer, teacher = {}, {}
    for name in b.names:
        runs = {setting: trainer_train(b, tokenizer, name, setting) for setting in settings}
        trainer[name] = runs | {"best_mode": max(runs, key=lambda m: runs[m]["examples_per_s"])}
        print(f"  Trainer {name}: " + ", ".join(f"{m} {r['examples_per_s']:.1f} ex/s" for m, r in runs.items()))
    for name in b.names:
        t = trainer[name]
        teacher[name] = compare(Ours(b, [name], "teachers").run(b, lam=1.0), t.get("max_length"), t[t["best_mode"]])
        print(f"  teacher {name}: {teacher[name]['examples_per_s']:.1f} ex/s")
    ours = Ours(b, b.names, "student", random_teacher(b, b.names))
    s = ours.run(b, lam=None)
    counts = np.bincount(ours.plan[ours.warmup :, :, 0].ravel(), minlength=len(b.names))
    s["task_counts"] = dict(zip(b.names, counts.tolist()))
    default = (
        mix_rate({n: trainer[n]["max_length"] for n in b.names}, s["task_counts"]) if "max_length" in settings else None
    )
    best = mix_rate({n: trainer[n][trainer[n]["best_mode"]] for n in b.names}, s["task_counts"])
    print(f"  student: {s['examples_per_s']:.1f} ex/s")
    if b.rows:
        check_same_rows(b, trainer, teacher, s)
    return compare(s, default, best) | {"trainer_mix_default": default, "trainer_mix_best": best}, teacher, trainer


def check_same_rows(b: Bench, trainer: dict, teacher: dict, student: dict) -> None:
    """With `b.rows`, every timed pass read each of the rows once: its real tokens are the rows' own, for ours and
    for every Trainer setting alike (else the bench is wrong, and says where)."""
    tokens = {n: int(head(b.data[n], b.rows).offsets[-1]) for n in b.names}
    timed = {f"Trainer {n} {m}": x["real_tokens"] for n, t in trainer.items() for m, x in t.items() if m != "best_mode"}
    timed |= {f"teacher {n}": t["real_tokens"] for n, t in teacher.items()}
    wrong = [k for k, v in timed.items() if v != tokens[k.split()[1]]]
    wrong += ["student"] * (student["real_tokens"] != sum(tokens.values()))
    if wrong:
        raise RuntimeError(f"bench: the timed pass of {wrong} did not read each of the {b.rows} rows once")


# ---- 3. distill ------------------------------------------------------------------------------------------------------


def bench_distill(b: Bench, tokenizer) -> dict:
    """pipeline.core.training.predict vs Trainer.predict, eval batch 128, dynamic padding, the same examples."""
    out = {"ours": {}, "trainer": {}, "trainer_length_grouped": {}}
    for name in b.names:
        task, split, acc = get_glue_task(name), b.data[name], make_accelerator(precision=b.precision)
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
                    tmp, per_device_eval_batch_size=EVAL_BATCH, train_sampling_strategy=sampling,
                    bf16=b.precision == "bf16", **HF_ARGS,
                )  # fmt: skip
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


# ---- sections 1–3 at one precision -----------------------------------------------------------------------------------


def bench_precision(b: Bench, tokenizer, precision: str, settings: list[str], quick: bool) -> dict:
    """Sections 1–3 at `precision`: its own matmul peak, training and distill."""
    b = dataclasses.replace(b, precision=precision)
    print(f"[bench] {precision}: 1/7 matmul peak")
    b.peak = bench_matmul(3 if quick else 10, precision)
    print(f"  {b.peak:.1f} GFLOP/s\n[bench] {precision}: 2/7 training throughput")
    student, teacher, trainer = bench_training(b, tokenizer, settings)
    print(f"[bench] {precision}: 3/7 distill")
    distill = bench_distill(b, tokenizer)
    print(f"  ours / Trainer.predict {distill['vs_trainer_predict']:.2f}")
    return {"matmul_gflops": b.peak, "student": student, "teacher": teacher, "trainer": trainer, "distill": distill}


def precision_child(b: Bench, tokenizer_path: str, precision: str, settings: list[str], quick: bool) -> dict:
    """`bench_precision` in a spawned process: Accelerate fixes one mixed precision per process."""
    import transformers
    from datasets.utils.logging import disable_progress_bar

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    disable_progress_bar()
    return bench_precision(b, load_tokenizer(tokenizer_path), precision, settings, quick)


def summary(p: dict) -> dict:
    """The headline figures of one precision (`bench_precision`'s result)."""
    keep = ("vs_trainer_best", "peak_fraction")
    return {
        "student": {k: p["student"][k] for k in keep},
        "teacher": {n: {k: t[k] for k in keep} for n, t in p["teacher"].items()},
        "distill": {
            k: p["distill"][k] for k in ("vs_trainer_predict", "vs_trainer_predict_length_grouped", "peak_fraction")
        },
    }
