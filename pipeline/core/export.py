"""Export each task of a saved model as a standard Hugging Face classifier: `python -m pipeline export`.

    python -m pipeline export --model artifacts/smoke/student/model --to exported       # exported/<task>/
    python -m pipeline export --model artifacts/smoke/teachers/rte/model --to exported  # exported/rte/
    python -m pipeline export --model RUN/student/model --to exported --push-to-hub user/bam  # user/bam-<task>

A task's folder is the family's own `*ForSequenceClassification`, which `AutoModelForSequenceClassification` and
`transformers.pipeline("text-classification")` load with no custom code: the shared encoder and the task's head as
the family's classifier (BERT, ALBERT: the encoder's pooler, then `classifier` = the head; RoBERTa-like families:
`classifier.dense` = the encoder's pooler dense, `classifier.out_proj` = the head), `id2label` / `label2id` from
the task's labels, the tokenizer, and a model card (`README.md`) with the task's dev results. A regression task is
`problem_type: regression` with one output, the score on the label's own scale (STS-B: 0–5): the head's affine map
and the [0, 1] label scaling of training are folded into the classifier's weight and bias.

An export is exact or it is not written: each one is compared with the multitask model on a few inputs first.
What the family's classifier cannot express is refused before anything is written, naming the task, the reason
and the setting to train with instead: a pooling other than the encoder's pooler, a sigmoid or MLP regression head,
a sentence-pair task of a siamese bi-encoder, a family whose classifier has layers our head lacks (DistilBERT).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from pipeline.core.card import LICENSE, TAGS
from pipeline.core.errors import ExportError
from pipeline.core.model import CLASSIFIER_DROPOUT_KEYS, MultiTaskModel, load_tokenizer
from pipeline.core.predict import load_student, task_specs
from pipeline.core.store import replace_folder, write_text
from pipeline.core.tasks import TaskSpec

HEAD_LAYERS = ("classifier", "classifier.out_proj")  # the family's last linear layer: the task's (folded) head
POOLER_LAYERS = {"classifier.dense": "pooler.dense"}  # a RoBERTa-like head's dense + tanh over [CLS]: our pooler
TOLERANCE = 1e-4  # largest difference allowed between an export's outputs and the multitask model's (label scale)


def classifier_config(encoder_config: PretrainedConfig, task: TaskSpec) -> PretrainedConfig:
    """The exported model's config: the encoder's, unmarked (`mark_multi_head`), with the task's labels and problem
    type."""
    config = copy.deepcopy(encoder_config)
    defaults = type(config)()
    for key in CLASSIFIER_DROPOUT_KEYS:  # the mark's -1: back to the family's default
        if hasattr(config, key):
            setattr(config, key, getattr(defaults, key, None))
    if hasattr(config, "bam_multi_head"):
        delattr(config, "bam_multi_head")
    labels = task.labels if task.kind == "classification" else (task.label_column,)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = "regression" if task.kind == "regression" else "single_label_classification"
    config.architectures = None  # save_pretrained writes the classifier's class
    return config


def weight_sources(keys: list[str], prefix: str) -> tuple[dict[str, str], list[str]]:
    """Where each weight of the family's classifier (`keys`, its state dict; `prefix`, its encoder's attribute) comes
    from: `encoder:<key>` or `head:<weight|bias>`; and the weights that have no counterpart in our model."""
    sources, unknown = {}, []
    for key in keys:
        layer, _, param = key.rpartition(".")
        if key.startswith(prefix + "."):
            sources[key] = "encoder:" + key[len(prefix) + 1 :]
        elif layer in HEAD_LAYERS:
            sources[key] = "head:" + param
        elif layer in POOLER_LAYERS:
            sources[key] = f"encoder:{POOLER_LAYERS[layer]}.{param}"
        else:
            unknown.append(key)
    return sources, unknown


def family_problems(model: MultiTaskModel, tasks: list[TaskSpec]) -> tuple[str, list[str]]:
    """The name of the family's classifier and what keeps every task of `model` from being exported as one."""
    config = classifier_config(model.encoder.config, tasks[0])
    try:
        with torch.device("meta"):  # only its weights' names: nothing allocated
            skeleton = AutoModelForSequenceClassification.from_config(config)
    except ValueError:
        return "?", [f"the encoder's family '{config.model_type}' has no AutoModelForSequenceClassification class"]
    arch, names = type(skeleton).__name__, ", ".join(t.name for t in tasks)
    sources, unknown = weight_sources(list(skeleton.state_dict()), skeleton.base_model_prefix)
    if unknown:
        return arch, [
            f"{names}: {arch} has layers a linear head on a pooled vector has no counterpart for ({', '.join(unknown)})"
            f"; a {config.model_type} model cannot be exported exactly"
        ]
    if model.pooling != "pooler":
        return arch, [
            f"{names}: the heads read the '{model.pooling}' pooling of the encoder, {arch} reads its pooler "
            "(tanh of a dense layer over [CLS]); train with model.pooling 'pooler' (and student.pooling 'model')"
        ]
    encoder_keys = set(model.encoder.state_dict())
    missing = sorted(s[8:] for s in sources.values() if s.startswith("encoder:") and s[8:] not in encoder_keys)
    if missing:
        return arch, [f"{names}: {arch} needs encoder weights this model does not have ({', '.join(missing)})"]
    return arch, []


def task_problems(model: MultiTaskModel, task: TaskSpec, arch: str) -> list[str]:
    """What keeps this task's head from being the family's classifier exactly, with the setting to change."""
    spec, problems = model.head_specs[task.name], []
    if model.siamese[model.task_names.index(task.name)]:
        head = "cos(u, v)" if task.kind == "regression" else "a head on [u, v, |u − v|, u ∗ v]"
        problems.append(
            f"{task.name}: a sentence-pair task of a siamese bi-encoder (each sentence encoded alone, {head}), "
            f"{arch} reads one '[CLS] a [SEP] b [SEP]' input; train with student.pair_mode 'cross'"
        )
    if spec.get("hidden"):
        problems.append(
            f"{task.name}: its regression head is an MLP (student.regression_hidden {spec['hidden']}), {arch}'s "
            "classifier one linear layer; train with student.regression_hidden 0"
        )
    if spec.get("sigmoid"):
        problems.append(
            f"{task.name}: its regression head ends in a sigmoid (model.regression_head 'sigmoid'), which {arch}'s "
            "linear classifier cannot express; train with model.regression_head 'linear'"
        )
    return problems


def folded_head(model: MultiTaskModel, task: TaskSpec) -> dict[str, torch.Tensor]:
    """The task's head as one linear layer whose output is `predict`'s: logits, or the score on the label's own scale.

    `predict` returns y = (W·x + b)·scale + shift (the head's `affine`, else 1 and 0) in the [0, 1] training space,
    then y·(hi − lo) + lo; folded: W' = W·scale·(hi − lo), b' = (b·scale + shift)·(hi − lo) + lo (in float64).
    """
    head = model.heads[task.name]
    weight, bias = head.weight.detach().double(), head.bias.detach().double()
    if task.kind == "regression":
        shift, scale = model.head_specs[task.name].get("affine", (0.0, 1.0))
        lo, hi = task.label_range
        weight, bias = weight * (scale * (hi - lo)), (bias * scale + shift) * (hi - lo) + lo
    return {"weight": weight.to(head.weight.dtype), "bias": bias.to(head.bias.dtype)}


def to_classifier(model: MultiTaskModel, task: TaskSpec) -> PreTrainedModel:
    """The family's `*ForSequenceClassification` holding the encoder and the task's folded head, in eval mode."""
    classifier = AutoModelForSequenceClassification.from_config(classifier_config(model.encoder.config, task))
    sources, _ = weight_sources(list(classifier.state_dict()), classifier.base_model_prefix)
    encoder, head = model.encoder.state_dict(), folded_head(model, task)
    state = {key: head[src[5:]] if src.startswith("head:") else encoder[src[8:]] for key, src in sources.items()}
    classifier.load_state_dict(state, strict=True)
    return classifier.to(model.encoder.dtype).eval()


@torch.no_grad()
def export_difference(model: MultiTaskModel, classifier: PreTrainedModel, task: TaskSpec, seed: int = 0) -> float:
    """Largest absolute difference between the classifier's outputs and `predict`'s (logits, or the score on the
    label's scale) on a few random token sequences, one of them padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.encoder.config.vocab_size, (3, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    ids = ids.masked_fill(mask == 0, model.pad_id)
    types = {"token_type_ids": torch.zeros_like(ids)} if model.uses_token_types else {}
    task_ids = torch.full((3,), model.task_names.index(task.name))
    second = {"input_ids_b": ids, "attention_mask_b": mask} if any(model.siamese) else {}  # unread: not a pair task
    ours = model.eval()(input_ids=ids, attention_mask=mask, task_ids=task_ids, **types, **second)
    ours = ours[:, : task.num_labels]
    if task.kind == "regression":
        lo, hi = task.label_range
        ours = ours * (hi - lo) + lo
    return float((classifier(input_ids=ids, attention_mask=mask, **types).logits - ours).abs().max())


def source_name(model_dir: Path) -> str:
    """The folder as a card names it: `RUN/student/model`, `RUN/teachers/<task>/model`, else its own name."""
    parts = Path(model_dir).resolve().parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("student", "teachers"):
            return "/".join(("RUN", *parts[i:]))
    return parts[-1]


def export_card(source: ModelCard | None, task: TaskSpec, arch: str, origin: str, ref: str, multi: bool) -> str:
    """The exported folder's card: the source card's metadata with this task's results, its labels, how to use it."""
    data = source.data if source is not None else ModelCardData()
    results = [r for r in data.eval_results or [] if r.task_name == task.name]
    name = data.model_name or "bam"
    card = ModelCardData(
        base_model=data.base_model,
        datasets=[d for d in data.datasets or [] if any(r.dataset_type == d for r in results)] or None,
        language=data.language,
        license=data.license or LICENSE,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=list(dict.fromkeys([*(data.tags or TAGS), "exported"])),
        model_name=f"{name}-{task.name}" if multi else name,
        eval_results=results or None,
    )
    if task.kind == "regression":
        lo, hi = task.label_range
        outputs = [
            f"One output, `problem_type: regression`: the {task.name} score on the label's own scale, [{lo:g}, {hi:g}] "
            "(the head is linear: a prediction may fall outside it). `pipeline` returns it as `score`, "
            f"under the label `{task.label_column}`."
        ]
    else:
        outputs = ["| id | label |", "|---:|---|", *(f"| {i} | {label} |" for i, label in enumerate(task.labels))]
    pair = len(task.text_columns) == 2
    example = '{"text": "first sentence", "text_pair": "second sentence"}' if pair else '"a text"'
    body = [
        f"# {card.model_name}",
        "",
        f"The `{task.name}` head of the BAM! model `{origin}`, exported by `python -m pipeline export` as a standard "
        f'`{arch}`: `AutoModelForSequenceClassification` and `transformers.pipeline("text-classification")` load '
        f"it with no custom code, and its outputs are those of `python -m pipeline predict --task {task.name}` on "
        "the multitask folder.",
        "",
        "## Outputs",
        "",
        *outputs,
        "",
        "## Dev scores (0–100)",
        "",
        "| split | metric | value |",
        "|---|---|---:|",
        *(f"| {r.dataset_split} | {r.metric_type} | {r.metric_value:.1f} |" for r in results),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{ref}")',
        f"classifier({example}, top_k=None)",
        "```",
        "",
    ]
    return str(ModelCard(f"---\n{card.to_yaml()}\n---\n\n" + "\n".join(body)))


def card_path(folder: Path) -> str:
    """The exported folder as its card's loading example names it: relative to the current directory when inside
    it, else `path/to/<name>` (a card names no path of the machine that wrote it)."""
    relative = Path(os.path.relpath(folder.resolve()))
    return relative.as_posix() if relative.parts[0] != ".." else f"path/to/{folder.name}"


def hub_repo(repo: str, task: str, single: bool) -> str:
    """The Hub repository of a task's export: `repo` itself when one task was chosen, else `repo-<task>`."""
    return repo if single else f"{repo}-{task}"


def push_folder(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported folder to the Hub model repository `repo_id` (created if needed); returns its URL."""
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="BAM! export")
    return f"https://huggingface.co/{repo_id}"


def save_export(classifier: PreTrainedModel, tokenizer, card: str, out_dir: Path) -> None:
    """Model, tokenizer and card, written to a new folder that then replaces `out_dir` whole."""
    new = out_dir.with_name(out_dir.name + ".saving")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    classifier.save_pretrained(new)
    tokenizer.save_pretrained(new)
    write_text(new / "README.md", card)
    replace_folder(new, out_dir)


def export_model(
    model_dir: str | Path, to: str | Path, task: str | None = None, repo: str | None = None, private: bool = False
) -> dict[str, Path]:
    """Export every task of the model saved in `model_dir` (or only `task`) to `to/<task>/`; with `repo`, push
    each folder to the Hub (`hub_repo`). Returns task → folder.

    Raises:
        ExportError: A task is unknown, or some task cannot be exported exactly (every problem listed, with the
            tasks that can; or an export that does not reproduce the model's outputs); nothing is written then.
    """
    model_dir, to = Path(model_dir), Path(to)
    model = load_student(model_dir)
    specs = {spec.name: spec for spec in task_specs(model)}
    if task is not None and task not in specs:
        raise ExportError(f"{model_dir} has no head for '{task}' (it has: {', '.join(specs)})")
    tasks = [specs[task]] if task is not None else list(specs.values())
    arch, shared = family_problems(model, tasks)
    per_task = {t.name: task_problems(model, t, arch) for t in tasks}
    problems = shared + [p for ps in per_task.values() for p in ps]
    if problems:
        fine = [] if shared else [name for name, ps in per_task.items() if not ps]
        hint = f"\nExportable as trained: {', '.join(fine)} (choose one with --task)." if fine else ""
        raise ExportError(f"cannot export {model_dir} exactly as {arch}:\n  - " + "\n  - ".join(problems) + hint)
    tokenizer = load_tokenizer(str(model_dir))
    source = ModelCard.load(model_dir / "README.md") if (model_dir / "README.md").is_file() else None
    for spec in tasks:  # every export checked before any is written (then built again: one in memory at a time)
        difference = export_difference(model, to_classifier(model, spec), spec)
        if difference > TOLERANCE:
            raise ExportError(
                f"{spec.name}: {arch} does not reproduce the model's outputs (largest difference {difference:.2g}): "
                "the family's classifier is not a linear layer on the pooler output; nothing exported"
            )
    folders = {}
    for spec in tasks:
        classifier, folder = to_classifier(model, spec), to / spec.name
        ref = hub_repo(repo, spec.name, task is not None) if repo else card_path(folder)
        card = export_card(source, spec, arch, source_name(model_dir), ref, len(specs) > 1)
        save_export(classifier, tokenizer, card, folder)
        folders[spec.name] = folder
    if repo:
        for name, folder in folders.items():
            push_folder(folder, hub_repo(repo, name, task is not None), private)
    return folders
