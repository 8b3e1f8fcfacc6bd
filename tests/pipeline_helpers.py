"""Shared by the test_pipeline_* files: the files a smoke run holds, a stage's manifest, the student's log."""

from __future__ import annotations

import json
from pathlib import Path

TASKS = ["sst2", "mrpc", "stsb", "rte"]
GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE"}
SPLIT_FILES = [
    "ids.json",
    "input_ids.npy",
    "labels.npy",
    "offsets.npy",
    "split.json",
    "texts.json",
    "token_type_ids.npy",
]
MODEL_FILES = ["checksums.json", "config.json", "heads.json", "heads.safetensors", "model.safetensors",
               "tokenizer.json", "tokenizer_config.json"]  # fmt: skip


def expected_files() -> dict[str, set[str]]:
    data = {"data/sizes.json", "data/tasks.json"}
    data |= {f"data/synthetic-glue/{GLUE_DIRS[t]}/{s}.tsv" for t in TASKS for s in ("train", "dev")}
    data |= {f"data/tiny-random/{f}" for f in ("config.json", "model.safetensors", "tokenizer.json",
                                                 "tokenizer_config.json", "vocab.txt")}  # fmt: skip
    data |= {f"data/{t}/{s}/{f}" for t in TASKS for s in ("train", "dev") for f in SPLIT_FILES}
    teachers = {f"teachers/{t}/{f}" for t in TASKS for f in ("done.json", "log.jsonl", "metrics.json")}
    teachers |= {f"teachers/{t}/model/{f}" for t in TASKS for f in [*MODEL_FILES, "README.md"]}
    distill = {f"distill/{t}/{s}.{ext}" for t in TASKS for s in ("train", "dev") for ext in
               ("npy", "ids.json", "record.json")} | {f"distill/{t}/done.json" for t in TASKS}  # fmt: skip
    student = {"student/log.jsonl", "student/summary.json"} | {f"student/model/{f}" for f in MODEL_FILES}
    # the student's model card is the report's: it needs the dev scores of `evaluate`
    report = {"report.md", "plots/scores.png", "plots/training.png", "student/model/README.md"}
    return {"data": data, "teachers": teachers, "distill": distill, "student": student,
            "evaluate": {"metrics.json"}, "report": report}  # fmt: skip


def manifest(run: Path, stage: str) -> dict:
    return json.loads((run / "manifests" / f"{stage}.json").read_text())


def training_lines(run: Path) -> list[dict]:
    """The student log's step records (its last line holds the dev metrics)."""
    lines = [json.loads(x) for x in (run / "student" / "log.jsonl").read_text().splitlines()]
    return [x for x in lines if "dev" not in x]
