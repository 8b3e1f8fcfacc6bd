"""The student stage against the Trainer user's multitask fine-tune, alternated in rounds on the same examples.

    python bench/student_ab.py --data-dir PATH_TO_GLUE [--examples 1000] [--precision bf16] [--rounds 3] [--run DIR]

bench/end_to_end.py times each route once, one after the other, so one slow minute of the machine lands on one side
only. This script times the part where the two routes do the same work, the multitask training and its dev scores:
ours is `python -m pipeline run --stage student --force` on a run folder whose data, teachers and soft targets are
made once, untimed (the stage's own wall time from its manifest: training with the distillation loss, the dev
evaluation, saving the model and checking it loads; and the whole process's); the Trainer's is end_to_end.py's
multitask fine-tune with its dev predictions (and its whole process, tokenising included), each in a fresh process.
The rounds alternate which goes first. Writes <out>/student-ab-<precision>-<date>.json and .md; the ratio is the
Trainer's time ÷ ours, per round and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasets.utils.logging import disable_progress_bar
from end_to_end import (
    ROOT,
    _config,
    _datasets,
    _tasks,
    command_and_machine,
    cpu_bf16_flags,
    pipeline_command,
    trainer_multitask,
)
from report import provenance, save_result  # bench/report.py (the script's folder is on sys.path)
from transformers import AutoTokenizer

from pipeline.core.model import bundled_minilm_path


def ours(data_dir: str, precision: str, examples: int, out: Path, stage: str) -> dict:
    """`pipeline run --stage STAGE` in a fresh process (the student stage forced); its wall times."""
    cmd = [*pipeline_command(data_dir, precision, examples, out), "--stage", stage]
    start = time.perf_counter()
    subprocess.run(
        [*cmd, *(["--force"] if stage == "student" else [])], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    return {"process_s": wall, "stage_s": json.loads((out / "manifests" / f"{stage}.json").read_text())["wall_s"]}


def trainer(data_dir: str, precision: str, examples: int) -> dict:
    """The Trainer's multitask fine-tune in a fresh process (this script's --child); its wall times and scores."""
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "trainer.json"
        cmd = [sys.executable, __file__, "--child", "--data-dir", data_dir, "--precision", precision]
        start = time.perf_counter()
        subprocess.run([*cmd, "--examples", str(examples), "--child-out", str(out_json)], check=True)
        return {"process_s": time.perf_counter() - start, **json.loads(out_json.read_text())}


def child(data_dir: str, precision: str, examples: int, out_json: Path) -> None:
    disable_progress_bar()
    cfg, path = _config(), bundled_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = {t: _datasets(t, data_dir, examples, tokenizer, cfg) for t in _tasks()}
    scores, seconds = trainer_multitask(data, path, tokenizer, cfg, precision)
    out_json.write_text(json.dumps({"stage_s": seconds, "scores": scores}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--examples", type=int, default=1000, help="training rows per task (the data stage's cap)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument(
        "--run", help="the run folder to keep (and reuse) its teachers and soft targets; default: a temporary one"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.data_dir, args.precision, args.examples, Path(args.child_out))
    result = provenance(os.getloadavg()[0]) | {"examples_per_task": args.examples, "precision": args.precision}
    result["machine"]["cpu_bf16_flags"] = cpu_bf16_flags()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "run"
        ours(args.data_dir, args.precision, args.examples, run, "distill")  # data, teachers, soft targets: untimed
        for r in range(args.rounds):
            timed = {}
            for side in ("ours", "trainer") if r % 2 == 0 else ("trainer", "ours"):
                if side == "ours":
                    timed[side] = ours(args.data_dir, args.precision, args.examples, run, "student")
                else:
                    timed[side] = trainer(args.data_dir, args.precision, args.examples)
            timed["ratio"] = {k: timed["trainer"][k] / timed["ours"][k] for k in ("stage_s", "process_s")}
            print(f"round {r + 1}: ours {timed['ours']['stage_s']:.1f} s, Trainer {timed['trainer']['stage_s']:.1f} s")
            rounds.append(timed)
    result["rounds"] = rounds
    result["median_ratio"] = {k: statistics.median(t["ratio"][k] for t in rounds) for k in ("stage_s", "process_s")}
    save_result(Path(args.out), f"student-ab-{args.precision}", result, report(result))


def report(r: dict) -> list[str]:
    lines = [
        f"# The student stage vs the Trainer's multitask fine-tune, {r['precision']}, alternated", "",
        *command_and_machine(r),
        f"Training rows per task: {r['examples_per_task']} (dev sets whole). Ratio = Trainer ÷ ours.", "",
        "| round | first | ours: stage / process (s) | Trainer: multitask / process (s) | ratio: stage / process |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for i, t in enumerate(r["rounds"]):
        o, tr, ratio = t["ours"], t["trainer"], t["ratio"]
        lines.append(
            f"| {i + 1} | {'ours' if i % 2 == 0 else 'Trainer'} | {o['stage_s']:.1f} / {o['process_s']:.1f} | "
            f"{tr['stage_s']:.1f} / {tr['process_s']:.1f} | {ratio['stage_s']:.2f}× / {ratio['process_s']:.2f}× |"
        )
    med = r["median_ratio"]
    return [*lines, "", f"Median ratio: stage {med['stage_s']:.2f}×, process {med['process_s']:.2f}×.", ""]


if __name__ == "__main__":
    main()
