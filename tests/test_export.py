"""`python -m pipeline export`: each task of a saved model as a standard transformers classifier whose outputs are
`predict`'s, refusals of what a family's classifier cannot express, and model cards the Hub understands."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizer,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
)
from transformers import pipeline as hf_pipeline

from pipeline.cli import main
from pipeline.core.accel import make_accelerator
from pipeline.core.card import MINILM_HUB_NAME, card_data, hub_base_model, portable, portable_command
from pipeline.core.config import DataConfig, ModelConfig
from pipeline.core.export import ExportError, export_model, folded_head
from pipeline.core.glue import read_tsv_split
from pipeline.core.model import MultiTaskModel, head_spec, load_tokenizer, save_model
from pipeline.core.predict import load_student, predict_texts, task_specs
from pipeline.core.tasks import get_glue_task
from pipeline.core.tiny import SPECIAL_TOKENS

TASKS = ["sst2", "mrpc", "stsb", "rte"]
TEACHER = "stsb"  # the teacher exported beside the student: a regression task, the score folded onto 0–5
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:tmp|home|work|root|usr|var|Users|private)/")


@pytest.fixture(scope="module")
def exported(smoke_run: Path, tmp_path_factory) -> Path:
    """The smoke student exported to `OUT/student/<task>/`, its stsb teacher to `OUT/teacher/stsb/`."""
    out = tmp_path_factory.mktemp("exported")
    assert main(["export", "--model", str(smoke_run / "student" / "model"), "--to", str(out / "student")]) == 0
    teacher = smoke_run / "teachers" / TEACHER / "model"
    assert main(["export", "--model", str(teacher), "--to", str(out / "teacher")]) == 0
    return out


def dev_texts(run: Path, task: str) -> list[tuple[str, str | None]]:
    return [
        (ex.text_a, ex.text_b) for ex in read_tsv_split(get_glue_task(task), "dev", run / "data" / "synthetic-glue")
    ]


def compare(model_dir: Path, folder: Path, task_name: str, texts: list[tuple[str, str | None]]) -> float:
    """Largest difference between `predict` on the multitask folder and `pipeline()` on the exported one
    (probabilities, or the score on the label's scale); asserts the labels are the same."""
    model = load_student(model_dir)
    task = {spec.name: spec for spec in task_specs(model)}[task_name]
    ours = predict_texts(model, load_tokenizer(str(model_dir)), task, texts, make_accelerator(precision=None))
    classifier = hf_pipeline("text-classification", model=str(folder))
    inputs = [a if b is None else {"text": a, "text_pair": b} for a, b in texts]
    theirs = classifier(inputs, top_k=None)
    if task.kind == "regression":
        return max(abs(o["score"] - t[0]["score"]) for o, t in zip(ours, theirs))
    assert [o["label"] for o in ours] == [t[0]["label"] for t in theirs]  # top_k=None: sorted, best first
    return max(abs(o["probabilities"][s["label"]] - s["score"]) for o, t in zip(ours, theirs) for s in t)


@pytest.mark.parametrize("task", TASKS)
def test_exported_student_task_is_predict(smoke_run: Path, exported: Path, task: str) -> None:
    folder = exported / "student" / task
    difference = compare(smoke_run / "student" / "model", folder, task, dev_texts(smoke_run, task))
    assert difference <= (1e-4 if task == "stsb" else 1e-5)

    # a standard classifier, loaded whole (nothing missing or random), its labels the task's
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    spec = get_glue_task(task)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    if spec.kind == "regression":
        assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    else:
        assert config["problem_type"] == "single_label_classification"
        assert config["id2label"] == {str(i): label for i, label in enumerate(spec.labels)}
        assert config["label2id"] == {label: i for i, label in enumerate(spec.labels)}


def test_exported_logits_equal_the_multitask_model(smoke_run: Path, exported: Path) -> None:
    """AutoModelForSequenceClassification alone (no pipeline): logits = the student's head on its pooler output."""
    model_dir = smoke_run / "student" / "model"
    student = load_student(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(exported / "student" / "mrpc")
    texts = dev_texts(smoke_run, "mrpc")[:8]
    batch = tokenizer([a for a, _ in texts], [b for _, b in texts], padding=True, return_tensors="pt")
    classifier = AutoModelForSequenceClassification.from_pretrained(exported / "student" / "mrpc").eval()
    with torch.no_grad():
        logits = classifier(**batch).logits
        ours = student(**batch, task_ids=torch.full((8,), TASKS.index("mrpc")))[:, :2]
    torch.testing.assert_close(logits, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("folder", ["student/model", f"teachers/{TEACHER}/model"])
def test_multi_head_folder_is_not_loaded_as_a_classifier(smoke_run: Path, folder: str) -> None:
    """A run's model folder (an encoder + our heads) is refused by AutoModelForSequenceClassification and pipeline(),
    where it used to load silently with a random classifier; AutoModel still loads its encoder, as the pipeline does."""
    model_dir = smoke_run / folder
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["BamMultiTaskModel"] and "python -m pipeline export" in config["bam_multi_head"]
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got -1.0"):
        AutoModelForSequenceClassification.from_pretrained(model_dir)
    with pytest.raises(ValueError, match="Could not load model"):
        hf_pipeline("text-classification", model=str(model_dir))
    assert type(AutoModel.from_pretrained(model_dir, use_safetensors=True)).__name__ == "BertModel"
    assert "refuses it" in (model_dir / "README.md").read_text()


def test_exported_teacher_is_predict(smoke_run: Path, exported: Path) -> None:
    model_dir = smoke_run / "teachers" / TEACHER / "model"
    assert sorted(p.name for p in (exported / "teacher").iterdir()) == [TEACHER]
    assert compare(model_dir, exported / "teacher" / TEACHER, TEACHER, dev_texts(smoke_run, TEACHER)) <= 1e-4


def test_exported_cards(smoke_run: Path, exported: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    card = ModelCard.load(exported / "student" / "stsb" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert card.data.license == "apache-2.0" and card.data.language == "en" and "exported" in card.data.tags
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    dev = metrics["tasks"]["stsb"]["student"]["dev"]
    assert values == {"pearsonr": round(dev["pearson"], 4), "spearmanr": round(dev["spearman"], 4)}
    assert {r.task_name for r in card.data.eval_results} == {"stsb"}
    assert "[0, 5]" in card.text and "`RUN/student/model`" in card.text  # the scale of the score; its source
    for folder in [*(exported / "student").iterdir(), exported / "teacher" / TEACHER]:
        text = (folder / "README.md").read_text()
        assert not ABSOLUTE.search(text) and str(exported) not in text and str(smoke_run) not in text


TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "pad_token_id": 0}


def tiny_folder(path: Path, tasks=("sst2", "stsb"), pooling="pooler", pair_mode="cross", regression_head="linear",
                regression_hidden=0, affine=None, encoder=None) -> Path:  # fmt: skip
    """A small model saved as a run saves one (heads from GLUE task names), with a word-level tokenizer; `encoder`
    builds the encoder from a vocabulary size (default: a BERT)."""
    words = sorted({w for a, b in TEXTS for w in f"{a} {b or ''}".split()})
    vocab = {w: i for i, w in enumerate(SPECIAL_TOKENS + words)}
    torch.manual_seed(0)
    encoder = (encoder or (lambda size: BertModel(BertConfig(vocab_size=size, **TINY))))(len(vocab))
    cfg = ModelConfig(regression_head=regression_head)
    heads = {name: head_spec(get_glue_task(name), cfg, regression_hidden, affine) for name in tasks}
    model = MultiTaskModel(encoder, heads, pooling, 0.1, pair_mode)
    with torch.no_grad():
        for head in model.heads.values():  # a visible output: random init leaves regression near 0
            for p in head.parameters():
                p.normal_(0, 0.5)
    save_model(model, BertTokenizer(vocab=vocab, do_lower_case=True), path)
    return path


TEXTS = [("a gripping film", None), ("the plot is thin", None), ("a man plays", "a man is playing"),
         ("dogs run", "a cat sleeps")]  # fmt: skip


def test_regression_affine_and_scale_fold_into_the_classifier(tmp_path: Path) -> None:
    """A standardised head (affine shift/scale) and the [0, 1] label scaling become the classifier's weight and bias:
    the export outputs the score on STS-B's 0–5 scale, as `predict` does."""
    model_dir = tiny_folder(tmp_path / "model", tasks=("stsb",), affine=(0.4, 0.2))
    folders = export_model(model_dir, tmp_path / "out")
    assert compare(model_dir, folders["stsb"], "stsb", [t for t in TEXTS if t[1] is not None]) <= 1e-4


def test_a_roberta_head_is_its_dense_and_out_proj(tmp_path: Path) -> None:
    """RoBERTa's classifier is dense + tanh over [CLS], then out_proj: the encoder's pooler and the head, exactly."""
    roberta = tiny_folder(tmp_path / "model", encoder=lambda size: RobertaModel(RobertaConfig(vocab_size=size, **TINY)))
    folders = export_model(roberta, tmp_path / "out")
    for name, folder in folders.items():
        assert json.loads((folder / "config.json").read_text())["architectures"] == ["RobertaForSequenceClassification"]
        texts = [t for t in TEXTS if (t[1] is None) == (name == "sst2")]
        assert compare(roberta, folder, name, texts) <= 1e-5


def test_distilbert_s_classifier_is_refused(tmp_path: Path) -> None:
    """DistilBERT's classifier has a pre_classifier layer (+ ReLU) before its last one: no linear head equals it."""
    config = {"dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32, "pad_token_id": 0}

    def distilbert(size: int) -> DistilBertModel:
        return DistilBertModel(DistilBertConfig(vocab_size=size, **config))

    model_dir = tiny_folder(tmp_path / "model", pooling="cls", encoder=distilbert)
    layers = r"\(pre_classifier.weight, pre_classifier.bias\); a distilbert model cannot be exported exactly"
    with pytest.raises(ExportError, match=r"- sst2, stsb: DistilBertForSequenceClassification has layers .*" + layers):
        export_model(model_dir, tmp_path / "out")


def test_an_export_that_is_not_exact_is_not_written(tmp_path: Path, monkeypatch) -> None:
    """Every export is compared with the multitask model before any is written (here: a head folded wrongly)."""
    model_dir = tiny_folder(tmp_path / "model")

    def off(model, task):
        return {key: value + 0.01 for key, value in folded_head(model, task).items()}

    monkeypatch.setattr("pipeline.core.export.folded_head", off)
    with pytest.raises(ExportError, match="sst2: BertForSequenceClassification does not reproduce the model's"):
        export_model(model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "refused", "reason", "fine"),
    [
        ({"pooling": "cls"}, "sst2, stsb", "model.pooling 'pooler'", None),
        ({"pooling": "mean"}, "sst2, stsb", "reads its pooler", None),
        ({"regression_head": "sigmoid"}, "stsb", "model.regression_head 'linear'", "sst2"),
        ({"regression_hidden": 8}, "stsb", "student.regression_hidden 0", "sst2"),
        ({"pair_mode": "siamese", "tasks": ("sst2", "mrpc", "stsb")}, "mrpc", "student.pair_mode 'cross'", "sst2"),
    ],
)
def test_what_the_classifier_cannot_express_is_refused(tmp_path: Path, kwargs, refused, reason, fine) -> None:
    model_dir = tiny_folder(tmp_path / "model", **kwargs)
    with pytest.raises(ExportError) as err:
        export_model(model_dir, tmp_path / "out")
    message = str(err.value)
    assert f"- {refused}: " in message and reason in message and "BertForSequenceClassification" in message
    assert not (tmp_path / "out").exists()  # nothing written
    if fine is None:
        assert "Exportable" not in message
        return
    assert f"Exportable as trained: {fine} (choose one with --task)" in message
    folders = export_model(model_dir, tmp_path / "out", task=fine)  # the other heads of the same model export
    assert compare(model_dir, folders[fine], fine, [t for t in TEXTS if t[1] is None]) <= 1e-5


def test_export_command_errors(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model_dir = tiny_folder(tmp_path / "model", regression_head="sigmoid")
    assert main(["export", "--model", str(model_dir), "--to", str(tmp_path / "out")]) == 2
    assert "stsb: its regression head ends in a sigmoid" in capsys.readouterr().err
    student = str(smoke_run / "student" / "model")
    assert main(["export", "--model", student, "--to", str(tmp_path / "out"), "--task", "cola"]) == 2
    assert "has no head for 'cola' (it has: sst2, mrpc, stsb, rte)" in capsys.readouterr().err


def test_push_to_hub(smoke_run: Path, tmp_path: Path, monkeypatch) -> None:
    """One Hub repository per task (REPO-<task>), or REPO itself for the one task chosen with --task."""
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))

    def upload_folder(self, *, folder_path, repo_id, **kw):
        assert (Path(folder_path) / "model.safetensors").is_file() and (Path(folder_path) / "README.md").is_file()
        calls.append(("upload", repo_id, folder_path))

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    teacher = str(smoke_run / "teachers" / "rte" / "model")
    assert main(["export", "--model", teacher, "--to", str(tmp_path / "a"), "--push-to-hub", "user/bam"]) == 0
    assert [(c[0], c[1]) for c in calls] == [("create", "user/bam-rte"), ("upload", "user/bam-rte")]
    assert calls[1][2] == str(tmp_path / "a" / "rte") and calls[0][2]["exist_ok"] is True
    calls.clear()
    student = str(smoke_run / "student" / "model")
    args = ["export", "--model", student, "--to", str(tmp_path / "b"), "--task", "sst2", "--push-to-hub", "user/bam"]
    assert main(args) == 0
    assert [(c[0], c[1]) for c in calls] == [("create", "user/bam"), ("upload", "user/bam")]
    assert 'model="user/bam"' in (tmp_path / "b" / "sst2" / "README.md").read_text()  # the card loads the repo


def test_run_cards_have_hub_metadata(smoke_run: Path) -> None:
    """The student's and teachers' cards parse back with `ModelCard.load`: Hub metadata, a model-index with the dev
    results per task (the student's own; the teachers' scores stay in the table beside them), no absolute path."""
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    card = ModelCard.load(smoke_run / "student" / "model" / "README.md")
    data = card.data
    assert (data.license, data.library_name, data.pipeline_tag, data.language) == (
        "apache-2.0", "transformers", "text-classification", "en"
    )  # fmt: skip
    assert data.base_model is None and data.datasets is None  # tiny-random and synthetic data: nothing on the Hub
    assert {"bam", "multitask", "distillation"} <= set(data.tags)
    got = {(r.task_name, r.metric_name.split()[0]): r.metric_value for r in data.eval_results}
    want = {(t, m): round(v, 4) for t in TASKS for m, v in metrics["tasks"][t]["student"]["dev"].items()}
    assert got == want
    assert {r.dataset_type for r in data.eval_results} == {f"{t}-synthetic" for t in TASKS}
    assert "python -m pipeline export --model RUN/student/model" in card.text
    for name in TASKS:
        teacher = ModelCard.load(smoke_run / "teachers" / name / "model" / "README.md")
        scores = json.loads((smoke_run / "teachers" / name / "metrics.json").read_text())["dev"]["dev"]
        assert {r.metric_name.split()[0]: r.metric_value for r in teacher.data.eval_results} == {
            m: round(v, 4) for m, v in scores.items()
        }
    for path in [smoke_run / "student" / "model", *(smoke_run / "teachers").glob("*/model")]:
        text = (path / "README.md").read_text()
        assert str(smoke_run) not in text and not ABSOLUTE.search(text), path


def test_card_data_of_a_glue_run() -> None:
    sst2, stsb = get_glue_task("sst2"), get_glue_task("stsb")
    results = {"sst2": {"dev": {"accuracy": 91.25}}, "stsb": {"dev": {"pearson": 88.0, "spearman": 87.5}}}
    data = card_data(DataConfig(), [sst2, stsb], "bam-x-student", results, hub_base_model("minilm")).to_dict()
    assert data["base_model"] == MINILM_HUB_NAME == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["datasets"] == ["nyu-mll/glue"] and data["license"] == "apache-2.0"
    index = data["model-index"][0]
    assert index["name"] == "bam-x-student"
    entries = {r["task"]["name"]: r for r in index["results"]}
    assert entries["sst2"]["dataset"] == {
        "name": "GLUE SST-2", "type": "nyu-mll/glue", "config": "sst2", "split": "validation"
    }  # fmt: skip
    assert {m["type"]: m["value"] for m in entries["stsb"]["metrics"]} == {"pearsonr": 88.0, "spearmanr": 87.5}


def test_hub_base_model_and_portable_paths(tmp_path: Path) -> None:
    assert hub_base_model("bert-base-uncased") == "bert-base-uncased"
    assert hub_base_model("google/electra-small-discriminator") == "google/electra-small-discriminator"
    assert hub_base_model("tiny-random") is None and hub_base_model(str(tmp_path)) is None  # a folder: no Hub link
    run = tmp_path / "run"
    assert portable(run / "teachers" / "sst2" / "model", run) == "RUN/teachers/sst2/model"
    assert portable("configs/smoke.yaml", run) == "configs/smoke.yaml" and portable(run, run) == "RUN"
    (tmp_path / "glue").mkdir()
    command = portable_command(f"python -m pipeline run --out {run} --data.data_dir={tmp_path}/glue", run)
    assert command.startswith("python -m pipeline run --out RUN --data.data_dir=")
    glue = command.rpartition("=")[2]
    assert not os.path.isabs(glue) and os.path.samefile(glue, tmp_path / "glue")  # relative to the current directory
