"""Model cards: the `README.md` of a saved model folder.

A card says what the model is, which tasks it answers and with which labels, its dev scores, the config and
command that trained it, and how to load it. Teachers get theirs when they are saved; the student's is written
by the report stage, once the teachers' and the student's dev scores are both known.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import yaml

from pipeline.core.tasks import TaskSpec


def current_command() -> str:
    """This process's command line as it was typed, e.g. `python -m pipeline run --config configs/smoke.yaml`."""
    return shlex.join(["python", *sys.orig_argv[1:]])


def render_card(
    title: str, about: str, model_dir: Path, tasks: list[TaskSpec], scores: list[str], config: dict, command: str
) -> str:
    """The card of the model saved in `model_dir` (its `config.json` and `heads.json` describe the architecture).

    Args:
        title: first heading.
        about: a paragraph on what the model is and how it was made.
        model_dir: the saved model folder (also the path shown in the loading examples).
        tasks: the model's tasks, in head order.
        scores: markdown lines (a table) of dev scores.
        config: the config sections that trained it, shown as YAML.
        command: the command line that trained it.
    """
    encoder = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    heads = json.loads((model_dir / "heads.json").read_text(encoding="utf-8"))
    shape = f"{encoder.get('num_hidden_layers', '?')} layers, hidden size {encoder.get('hidden_size', '?')}"
    siamese = ""
    if heads.get("pair_mode") == "siamese":
        siamese = (
            " Sentence pairs are encoded one sentence at a time (a siamese bi-encoder): a pair's classification head "
            "reads [u, v, |u − v|, u ∗ v] of the two sentences' vectors, its regression score is cos(u, v)."
        )
    lines = [
        "---",
        "library_name: transformers",
        "tags: [bam, multitask, distillation]",
        "---",
        "",
        f"# {title}",
        "",
        about,
        "",
        f"Architecture: a `{encoder.get('model_type', '?')}` encoder ({shape}); its `{heads['pooling']}` vector "
        f"feeds one linear head per task.{siamese}",
        "",
        "## Tasks",
        "",
        "| task | kind | outputs, in order | dev metric |",
        "|---|---|---|---|",
        *(f"| {t.name} | {t.kind} | {_outputs(t)} | {t.main_metric} |" for t in tasks),
        "",
        "## Dev scores",
        "",
        *scores,
        "",
        "## Use",
        "",
        "```python",
        "from pipeline import load_student",
        "",
        f'model = load_student("{model_dir}")  # MultiTaskModel in eval mode, one head per task',
        "```",
        "",
        "```bash",
        f"python -m pipeline predict --model {shlex.quote(str(model_dir))} --task {tasks[0].name} --input texts.jsonl",
        "```",
        "",
        "The folder is also a plain Hugging Face model: `transformers.AutoModel.from_pretrained(path)` loads the "
        "encoder and `AutoTokenizer.from_pretrained(path)` its tokenizer. The heads are in `heads.safetensors` "
        "(`<task>.weight` [outputs, hidden] and `<task>.bias`), applied to the pooled vector; `heads.json` gives the "
        "pooling, the task order and each head's size.",
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def metrics_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    """Markdown table of one model's dev metrics (split → metric → value, 0–100)."""
    names = list(dict.fromkeys(name for values in metrics.values() for name in values))
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for split, values in metrics.items():
        lines.append(f"| {split} | " + " | ".join(f"{values[n]:.1f}" if n in values else "" for n in names) + " |")
    return lines


def _outputs(task: TaskSpec) -> str:
    if task.kind == "regression":
        lo, hi = task.label_range
        return f"a score in [{lo:g}, {hi:g}]; the head outputs it rescaled to [0, 1]"
    return ", ".join(task.labels)
