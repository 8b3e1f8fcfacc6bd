"""glue-small end to end: our pipeline against the same work done the way a Trainer user does it, per precision.

    python bench/end_to_end.py --data-dir PATH_TO_GLUE [--examples 1000] [--precisions fp32,bf16] [--out bench/results]

Ours: `python -m pipeline run --config configs/glue-small.yaml` (data, five teachers, their soft targets, the BAM
student, evaluation, report). The Trainer user's route: five run_glue-style fine-tunes
(AutoModelForSequenceClassification, the Trainer's fastest setting in bench/run.py: dynamic padding + length
grouping) and one multitask fine-tune (a
shared encoder with a linear head per task on the pooled [CLS] vector, the tasks' training sets concatenated), each
scored on its dev sets. Both routes read the same examples (each training set capped at --examples rows, by the
data stage's seeded choice), with glue-small's epochs, batch size, learning rates and warm-up, at the same
precision, each in a fresh process, one after the other. The ratio is the Trainer route's wall time ÷ ours (the
issue's target: ≥ 1.5). Writes <out>/<date>-end-to-end-<examples>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets
from datasets.utils.logging import disable_progress_bar
from report import provenance  # bench/report.py (the script's folder is on sys.path)
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from pipeline.core.config import load_config
from pipeline.core.glue import read_split
from pipeline.core.metrics import compute_metrics, main_score
from pipeline.core.model import bundled_minilm_path
from pipeline.core.tasks import get_glue_task

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "glue-small.yaml"
STAGE_NAMES = ("data", "teachers", "distill", "student", "evaluate", "report")


def pipeline_command(data_dir: str, precision: str, examples: int, out: Path) -> list[str]:
    """`python -m pipeline run` of glue-small into `out` at `precision`, every training set capped at `examples`."""
    caps = "{" + ", ".join(f"{t}: {examples}" for t in _tasks()) + "}"
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(CONFIG), "--data-dir", data_dir, "--out", str(out)]
    return [*cmd, f"--model.precision={precision}", f"--data.max_train_examples={caps}"]


def run_ours(data_dir: str, precision: str, examples: int, out: Path) -> dict:
    """The pipeline in a fresh process; wall time, each stage's (its manifest's wall_s) and the dev scores."""
    cmd, start = pipeline_command(data_dir, precision, examples, out), time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    stages = {s: json.loads((out / "manifests" / f"{s}.json").read_text())["wall_s"] for s in STAGE_NAMES}
    metrics = json.loads((out / "metrics.json").read_text())
    scores = {t: v["student_score"] for t, v in metrics["tasks"].items()}
    teachers = {t: v["teacher_score"] for t, v in metrics["tasks"].items()}
    return {"wall_s": wall, "stages_s": stages, "scores": scores, "teacher_scores": teachers}


def run_trainer_route(data_dir: str, precision: str, examples: int, out_json: Path) -> None:
    """The Trainer user's route in this process (started by `main` as a child); writes its figures to out_json."""
    start = time.perf_counter()
    disable_progress_bar()
    cfg, path = _config(), bundled_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = {t: _datasets(t, data_dir, examples, tokenizer, cfg) for t in _tasks()}
    teachers, teacher_s = {}, {}
    for name, (task, train, dev) in data.items():
        begin = time.perf_counter()
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=_outputs(task))
        trainer = _trainer(model, train, tokenizer, cfg.teachers, precision)
        trainer.train()
        scored = trainer.predict(dev)  # in its length-grouped sampler's order: score against its own label_ids
        teachers[name] = _score(task, scored.predictions, scored.label_ids, scaled=False)
        teacher_s[name] = time.perf_counter() - begin
    scores, multitask_s = trainer_multitask(data, path, tokenizer, cfg, precision)
    result = {"in_process_s": time.perf_counter() - start, "teachers_s": teacher_s, "multitask_s": multitask_s}
    out_json.write_text(json.dumps(result | {"scores": scores, "teacher_scores": teachers}))


def trainer_multitask(data: dict, path: str, tokenizer, cfg, precision: str) -> tuple[dict[str, float], float]:
    """The Trainer user's multitask fine-tune on `data` (task name → (task, train, dev)), scored on each dev set:
    the dev scores and the seconds it took (model, training, prediction)."""
    begin = time.perf_counter()
    tasks = [task for task, _, _ in data.values()]
    model = TrainerMultitask(path, tasks)
    train = _concatenate([(i, task, train) for i, (task, train, _) in enumerate(data.values())])
    trainer = _trainer(model, train, tokenizer, cfg.student, precision)
    trainer.train()
    scores = {}
    for i, (name, (task, _, dev)) in enumerate(data.items()):
        scored = trainer.predict(dev.add_column("task_ids", [i] * len(dev)))
        scores[name] = _score(task, scored.predictions[:, : _outputs(task)], scored.label_ids, scaled=True)
    return scores, time.perf_counter() - begin


class TrainerMultitask(nn.Module):
    """What a Trainer user writes for one multitask model: the shared pretrained encoder, one linear head per task
    on BERT's pooled [CLS] vector (as ours), cross-entropy or squared error (on the label scaled to [0, 1]) per
    example, averaged over the batch."""

    def __init__(self, path: str, tasks: list) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(path)
        hidden, self.tasks = self.encoder.config.hidden_size, tasks
        self.dropout = nn.Dropout(self.encoder.config.hidden_dropout_prob)
        self.heads = nn.ModuleList(nn.Linear(hidden, _outputs(t)) for t in tasks)
        self.width = max(_outputs(t) for t in tasks)

    def forward(self, input_ids, attention_mask, token_type_ids, task_ids, labels=None):
        pooled = self.dropout(self.encoder(input_ids, attention_mask, token_type_ids).pooler_output)
        logits = pooled.new_zeros(len(input_ids), self.width)
        loss = pooled.new_zeros(())
        for i, task in enumerate(self.tasks):
            rows = (task_ids == i).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            out = self.heads[i](pooled[rows])
            logits[rows, : out.shape[1]] = out.to(logits.dtype)
            if labels is not None and task.kind == "regression":
                loss = loss + nn.functional.mse_loss(out[:, 0].float(), labels[rows].float(), reduction="sum")
            elif labels is not None:
                loss = loss + nn.functional.cross_entropy(out.float(), labels[rows].long(), reduction="sum")
        return {"loss": loss / len(input_ids), "logits": logits}


def _trainer(model, train, tokenizer, section, precision: str):
    """The Trainer with glue-small's hyperparameters for `section` (teachers or student) at its fastest setting."""
    args = TrainingArguments(
        tempfile.mkdtemp(prefix="trainer-"), num_train_epochs=section.epochs,
        per_device_train_batch_size=section.batch_size, per_device_eval_batch_size=section.eval_batch_size,
        learning_rate=section.lr, warmup_steps=section.warmup, weight_decay=section.weight_decay,
        bf16=precision == "bf16", train_sampling_strategy="group_by_length", logging_strategy="no",
        save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True, disable_tqdm=True,
        seed=section.seed,
    )  # fmt: skip
    return Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))


def _datasets(name: str, data_dir: str, examples: int, tokenizer, cfg):
    """One task's capped training set and its dev set, tokenised as run_glue does (datasets.map, batched)."""
    task = get_glue_task(name)
    rows = read_split(task, "train", data_dir)
    if examples < len(rows):  # the data stage's seeded choice
        keep = np.sort(np.random.default_rng(cfg.data.seed).choice(len(rows), size=examples, replace=False))
        rows = [rows[i] for i in keep]

    def tokenised(exs):
        cols = {"a": [e.text_a for e in exs], "b": [e.text_b or "" for e in exs], "label": [e.label for e in exs]}
        pair = exs[0].text_b is not None
        encode = lambda batch: tokenizer(batch["a"], batch["b"] if pair else None, truncation=True, max_length=128)  # noqa: E731
        return Dataset.from_dict(cols).map(encode, batched=True, remove_columns=["a", "b"])

    return task, tokenised(rows), tokenised(read_split(task, task.dev_splits[0], data_dir))


def _concatenate(parts):
    """The multitask training set: every task's examples with their task index; regression labels scaled to [0, 1]."""
    out = []
    for i, task, train in parts:
        lo, hi = task.label_range if task.kind == "regression" else (0.0, 1.0)
        labels = [(y - lo) / (hi - lo) for y in train["label"]]
        out.append(train.remove_columns("label").add_column("label", labels).add_column("task_ids", [i] * len(train)))
    return concatenate_datasets(out)


def _score(task, predictions: np.ndarray, labels: list, scaled: bool) -> float:
    predictions = np.asarray(predictions, dtype=np.float64)
    if task.kind == "regression":
        lo, hi = task.label_range
        predictions = predictions[:, 0] * (hi - lo) + lo if scaled else predictions[:, 0]
    return main_score(task, compute_metrics(task, predictions, np.asarray(labels)))


def _outputs(task) -> int:
    return 1 if task.kind == "regression" else task.num_labels


def _config():
    return load_config(CONFIG)


def _tasks() -> list[str]:
    return list(_config().data.tasks)


def run_trainer(data_dir: str, precision: str, examples: int) -> dict:
    """The Trainer route in a fresh process (as ours): its wall time, with what the child measured inside."""
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "trainer.json"
        cmd = [sys.executable, __file__, "--child", "--data-dir", data_dir, "--precisions", precision]
        start = time.perf_counter()
        subprocess.run([*cmd, "--examples", str(examples), "--child-out", str(out_json)], check=True)
        return {"wall_s": time.perf_counter() - start, **json.loads(out_json.read_text())}


def cpu_bf16_flags() -> list[str]:
    """This CPU's instructions that make bf16 fast (none: PyTorch emulates it; docs/performance.md)."""
    flags = Path("/proc/cpuinfo").read_text().split()
    return sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--examples", type=int, default=1000, help="training rows per task (the data stage's cap)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return run_trainer_route(args.data_dir, args.precisions, args.examples, Path(args.child_out))
    result = provenance(os.getloadavg()[0]) | {"examples_per_task": args.examples, "precision": {}}
    result["machine"]["cpu_bf16_flags"] = cpu_bf16_flags()
    for precision in args.precisions.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_ours(args.data_dir, precision, args.examples, Path(tmp) / "run")
        trainer = run_trainer(args.data_dir, precision, args.examples)
        ratio = trainer["wall_s"] / ours["wall_s"]
        result["precision"][precision] = {"ours": ours, "trainer": trainer, "trainer_over_ours": ratio}
        print(f"{precision}: ours {ours['wall_s']:.0f} s, Trainer route {trainer['wall_s']:.0f} s: {ratio:.2f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{result['date'][:10]}-end-to-end-{args.examples}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(report(result))


def command_and_machine(r: dict) -> list[str]:
    """The .md lines of a run's command and machine (`provenance`, with the CPU's bf16 instructions) and date."""
    m = r["machine"]
    return [
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cores']} cores, {m['torch_threads']} torch threads, bf16 CPU instructions: "
        f"{', '.join(m['cpu_bf16_flags']) or 'none'}; torch {m['torch']}; {r['date'][:10]}  ",
    ]


def report(r: dict) -> str:
    lines = [
        "# glue-small end to end: our pipeline vs the Trainer user's route", "",
        *command_and_machine(r),
        f"Training rows per task: {r['examples_per_task']} (dev sets whole). "
        "Ratio = Trainer route ÷ ours (≥ 1.5 wanted).",
        "", "| precision | ours (s) | Trainer route (s) | ratio | ours: teachers / distill / student (s) | "
        "Trainer: fine-tunes / multitask (s) | avg dev: ours student / teachers | Trainer multitask / fine-tunes |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for precision, v in r["precision"].items():
        o, t = v["ours"], v["trainer"]
        stages = " / ".join(f"{o['stages_s'][s]:.0f}" for s in ("teachers", "distill", "student"))
        trainer = f"{sum(t['teachers_s'].values()):.0f} / {t['multitask_s']:.0f}"
        avg = lambda d: f"{np.mean(list(d.values())):.1f}"  # noqa: E731
        ours_avg, trainer_avg = (
            f"{avg(o['scores'])} / {avg(o['teacher_scores'])}",
            f"{avg(t['scores'])} / {avg(t['teacher_scores'])}",
        )
        lines.append(
            f"| {precision} | {o['wall_s']:.0f} | {t['wall_s']:.0f} | **{v['trainer_over_ours']:.2f}×** | {stages} | "
            f"{trainer} | {ours_avg} | {trainer_avg} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
