"""What a config alone cannot check: the limits of the pretrained models it names (their position embeddings and
depth), read from each model's config.json before any stage runs."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from pipeline.core.config import RunConfig
from pipeline.core.config_checks import kept_layers, too_long
from pipeline.core.errors import ModelLoadError
from pipeline.core.model import bundled_minilm_path


def check_model_limits(cfg: RunConfig) -> list[str]:
    """`data.max_length` against the position embeddings of the models the teachers and the student start from
    (model.name_or_path, teachers.init_from, student.model), and `student.layers` and `teachers.layers` against
    their encoders' depth: call before any stage runs. Reads only each model's config.json, and
    downloads nothing: a Hub model not in the local cache is checked when a stage loads it. tiny-random, built by the
    data stage, is checked by config validation.

    Returns:
        Every problem found, naming the key and the model (empty when all fit).
    """
    problems = []
    models = [("model.name_or_path", cfg.model.name_or_path), ("teachers.init_from", cfg.teachers.init_from)]
    models.append(("student.model", cfg.student.model))
    student_key = "model.name_or_path" if cfg.student.model is None else "student.model"
    for key, name in models:
        if name is None or name == "tiny-random":
            continue
        try:
            path = bundled_minilm_path() if name == "minilm" else name
            config = AutoConfig.from_pretrained(
                path, trust_remote_code=cfg.model.trust_remote_code, local_files_only=True
            )
        except ModelLoadError as err:
            problems.append(str(err))
            continue
        except (OSError, ValueError) as err:  # a Hub name not cached: checked when it loads; a folder: now
            if not Path(path).expanduser().exists() and path.startswith(("/", ".", "~")):
                problems.append(f"'{key}': the folder '{path}' does not exist")
            elif Path(path).expanduser().exists():
                problems.append(f"'{key}': cannot read the model's config.json from '{path}': {err}")
            continue
        shrunk = [("student", cfg.student.layers)] * (key == student_key)
        shrunk += [("teachers", cfg.teachers.layers)] * (key == "model.name_or_path")
        for section, layers in shrunk if isinstance(getattr(config, "num_hidden_layers", None), int) else []:
            try:
                kept_layers(layers, config.num_hidden_layers, f"{section}.layers")
            except ValueError as err:
                problems.append(f"{err} ({key} '{name}')")
        positions = getattr(config, "max_position_embeddings", None)
        if not isinstance(positions, int):
            continue  # no absolute positions (e.g. relative or rotary): no limit to check
        if config.model_type in ("roberta", "xlm-roberta", "camembert", "data2vec-text"):
            positions -= (config.pad_token_id or 0) + 1  # their positions start after the padding index
        if cfg.data.max_length > positions:
            problems.append(too_long(cfg.data.max_length, positions, key, name))
    return problems
