"""The meaning of every config key, read from the dataclasses in config.py and their comments: the configuration
reference (docs/configuration.md, `scripts/config_reference.py`) and `python -m pipeline config show`.

The meaning is the field's comment in config.py: the comment on its line (with the comment lines right below it),
or, for a field without one, the comment block above it. A comment block above a field that has its own comment
heads a group of keys. The few fields that have no comment at all take their meaning from FALLBACK below; a comment
added in config.py wins over it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import tokenize
from typing import Any

import yaml

import pipeline.core.config as config

# (section, title, dataclass): the order of docs/configuration.md
SECTIONS = [
    ("", "Top level", config.RunConfig),
    ("data", "`data`", config.DataConfig),
    ("data.custom_tasks.NAME", "`data.custom_tasks.NAME`: a task of your own", config.CustomTaskConfig),
    ("model", "`model`", config.ModelConfig),
    ("teachers", "`teachers`", config.TeacherConfig),
    ("teachers.per_task.TASK", "`teachers.per_task.TASK`: one task's teacher", config.TeacherTaskConfig),
    ("student", "`student`", config.StudentConfig),
    ("distill", "`distill`", config.DistillConfig),
]

# Meanings of the fields that have no comment in config.py (checked against the code that reads them).
FALLBACK = {
    "model.tiny_layers": "tiny-random only: transformer layers",
    "model.tiny_heads": "tiny-random only: attention heads",
    "data.custom_tasks.NAME.kind": "`classification` (labels) or `regression` (scores)",
    "teachers.weight_decay": "AdamW weight decay (none on biases and LayerNorm weights)",
    "teachers.eval_batch_size": "rows per prediction batch (length-sorted, at most 16,384 tokens): dev scores and "
    "the distill stage's soft targets",
    "teachers.seed": "seed of the heads' initialisation, the batch order and dropout",
    "student.weight_decay": "AdamW weight decay (none on biases and LayerNorm weights)",
    "student.grad_accum": "gradient accumulation steps",
    "student.eval_batch_size": "rows per prediction batch (length-sorted, at most 16,384 tokens): dev scores",
    "student.seed": "seed of the heads' initialisation, the batch plan, dropout and the options' random draws",
    "student.unfreeze_unit": "what `unfreeze_every` counts: optimizer steps or epochs",
}


def comments_by_line(source: str) -> dict[int, str]:
    """Line number (1-based) → the text of the comment on that line, without the `#`."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def field_comments(cls: type, lines: list[str], comments: dict[int, str]) -> dict[str, tuple[str, str]]:
    """Field name → (group note, meaning) from the comments around the field's statement in `lines`."""
    tree = ast.parse(inspect.getsource(cls))
    first = inspect.getsourcelines(cls)[1] - 1  # offset of the class in the module
    statements = [s for s in tree.body[0].body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]

    def alone(n: int) -> bool:  # a line holding nothing but a comment
        return 1 <= n <= len(lines) and lines[n - 1].strip().startswith("#")

    claimed: set[int] = set()
    result = {}
    for stmt in statements:
        start, end = stmt.lineno + first, stmt.end_lineno + first
        own = [comments[n] for n in range(start, end + 1) if n in comments]
        if own:  # the comment lines right below continue it
            n = end + 1
            while alone(n):
                own.append(comments[n])
                claimed.add(n)
                n += 1
        above = []
        n = start - 1
        while alone(n) and n not in claimed:
            above.insert(0, comments[n])
            n -= 1
        note, meaning = (" ".join(above), " ".join(own)) if own else ("", " ".join(above))
        result[stmt.target.id] = (note, meaning)
    return result


def show_type(annotation: str) -> str:
    """`Literal["a", "b"]` → `a | b`; other annotations as written."""
    return re.sub(r"Literal\[([^\]]*)\]", lambda m: " | ".join(v.strip().strip("'\"") for v in m.group(1).split(",")),
                  annotation)  # fmt: skip


def show_default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if dataclasses.is_dataclass(value):
        return "—"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, float) and 0 < abs(value) < 1e-3:  # 1e-4, not 0.0001
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if value == "":
        return '""'
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def meanings() -> dict[str, tuple[str, str, str]]:
    """`section.key` (custom tasks' and per-task keys with NAME / TASK) → (group note, meaning, type as written)."""
    source = inspect.getsource(config)
    lines, comments = source.splitlines(), comments_by_line(source)
    found = {}
    for section, _, cls in SECTIONS:
        described = field_comments(cls, lines, comments)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}" if section else f.name
            note, meaning = described.get(f.name, ("", ""))
            if not meaning and cls is config.TeacherTaskConfig:
                meaning = f"this task's `teachers.{f.name}`"
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory()):
                meaning = f"the section [`{f.name}`](#{f.name}) below"
            found[key] = (note, meaning or FALLBACK.get(key, ""), show_type(str(f.type)))
    return found


def show_config(cfg: config.RunConfig) -> str:
    """The resolved config as YAML-like lines, `key: value  # meaning`, section by section."""
    described = meanings()
    out = []
    for section, value in config.to_dict(cfg).items():
        if not isinstance(value, dict):
            out.append(f"{section}: {_show(value)}  # {described.get(section, ('', '', ''))[1]}")
            continue
        out.append(f"{section}:")
        for key, item in value.items():
            meaning = described.get(f"{section}.{key}", ("", "", ""))[1]
            out.append(f"  {key}: {_show(item)}" + (f"  # {meaning}" if meaning else ""))
    return "\n".join(out)


def _show(value: Any) -> str:
    """`value` as YAML (PyYAML) reads it back, in flow style: a plain string unquoted when YAML takes it as that
    string, a float always with a point in its mantissa (PyYAML reads `1e-05` as a string, `1.0e-05` as a number)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_show(str(k))}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float) and "e" in repr(value) and "." not in repr(value).split("e")[0]:
        mantissa, exponent = repr(value).split("e")
        return f"{mantissa}.0e{exponent}"
    if isinstance(value, str) and yaml.safe_load(f"x: {value}") == {"x": value} and not set(value) & set(",[]{}"):
        return value
    return json.dumps(value, ensure_ascii=False)
