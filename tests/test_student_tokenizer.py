"""A student or a teacher-ensemble member with a tokenizer of its own: the examples (their stored texts) are
retokenised for it, and soft targets join by example id and the examples' own fingerprint, never by one tokenizer's
token ids; other examples, another order or missing rows are still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_smoke
from transformers import AutoTokenizer

from pipeline.core.accel import make_accelerator
from pipeline.core.config import ModelConfig, load_config
from pipeline.core.data import examples_fingerprint, load_examples, load_split, retokenize
from pipeline.core.glue import Example
from pipeline.core.model import load_model
from pipeline.core.store import StoreError, load_soft_targets, save_soft_targets
from pipeline.core.tasks import read_task_specs
from pipeline.core.tiny import build_tiny_random
from pipeline.core.training import check_saved_model, evaluate
from pipeline.experiments.run import check_parent_vocabulary, reproduce
from pipeline.experiments.variants import ReproduceError

TASKS = ["sst2", "mrpc", "stsb", "rte"]


def _other_tokenizer(smoke_run: Path, out: Path, cfg: ModelConfig) -> Path:
    """A tiny random BERT whose vocabulary holds the smoke words at other ids (four extra words sort first)."""
    texts = [
        x
        for t in TASKS
        for s in ("train", "dev")
        for e in load_examples(smoke_run, t, s)
        for x in (e.text_a, e.text_b)
        if x
    ]
    build_tiny_random(out, ["aaaa aaab aaac aaad", *texts], cfg, seed=3)
    return out


def test_the_examples_fingerprint_follows_the_examples_not_the_tokenizer(smoke_run: Path, tmp_path: Path) -> None:
    examples = [Example("t:train:0", "a b", "c", 1), Example("t:train:1", "d", "e f", 0)]
    base = examples_fingerprint(examples)
    changed = {
        "text": [Example("t:train:0", "a b!", "c", 1), examples[1]],
        "second text missing": [Example("t:train:0", "a b", None, 1), examples[1]],
        "label": [Example("t:train:0", "a b", "c", 0), examples[1]],
        "order": examples[::-1],
        "missing row": examples[:1],
    }
    assert all(examples_fingerprint(v) != base for v in changed.values())
    assert examples_fingerprint(list(examples)) == base
    # the same split under another tokenizer: other token ids, the same examples fingerprint
    other = AutoTokenizer.from_pretrained(_other_tokenizer(smoke_run, tmp_path / "other", ModelConfig()))
    stored = load_split(smoke_run, "mrpc", "train")
    again = retokenize(smoke_run, stored, other, 32)
    assert again.ids == stored.ids and again.examples_fingerprint == stored.examples_fingerprint
    assert again.fingerprint != stored.fingerprint and not np.array_equal(again.input_ids, stored.input_ids)


def test_the_join_refuses_soft_targets_of_other_examples(tmp_path: Path) -> None:
    examples = [Example(f"t:train:{i}", f"text {i}", None, i % 2) for i in range(4)]
    save_soft_targets(tmp_path, "train", [e.id for e in examples], np.zeros((4, 2)), examples_fingerprint(examples))
    ids = [e.id for e in examples]
    assert load_soft_targets(tmp_path, "train", ids, examples_fingerprint(examples)).shape == (4, 2)
    edited = [*examples[:2], Example("t:train:2", "another text", None, 0), examples[3]]  # same ids, other text
    with pytest.raises(StoreError, match=r"train.record.json: soft targets were made from other examples"):
        load_soft_targets(tmp_path, "train", ids, examples_fingerprint(edited))


def test_stored_texts_that_are_not_the_recorded_examples_are_refused(smoke_copy: Path, tmp_path: Path) -> None:
    texts_path = smoke_copy / "data" / "sst2" / "train" / "texts.json"
    texts = json.loads(texts_path.read_text())
    texts["text_a"][5] += " edited"
    texts_path.write_text(json.dumps(texts))
    tokenizer = AutoTokenizer.from_pretrained(smoke_copy / "data" / "tiny-random")
    with pytest.raises(StoreError, match=r"sst2/train: the stored texts are not the examples it records"):
        retokenize(smoke_copy, load_split(smoke_copy, "sst2", "train"), tokenizer, 32)


def test_a_smaller_student_of_another_tokenizer_trains_from_the_stored_soft_targets(
    smoke_run: Path, smoke_copy: Path, tmp_path: Path
) -> None:
    other = _other_tokenizer(smoke_run, tmp_path / "other", ModelConfig(tiny_hidden_size=16, tiny_layers=1))
    assert run_smoke(smoke_copy, f"--student.model='{other}'") == ["student", "evaluate", "report"]  # teachers kept
    tokenizer = AutoTokenizer.from_pretrained(other)
    model = load_model(smoke_copy / "student" / "model")
    assert model.encoder.config.num_hidden_layers == 1 and model.encoder.config.hidden_size == 16
    saved = AutoTokenizer.from_pretrained(smoke_copy / "student" / "model")
    assert saved.get_vocab() == tokenizer.get_vocab()  # the model serves with the tokenizer it was trained with
    assert not (smoke_copy / "student" / "data").exists()  # retokenised in memory: nothing more in its folder
    tasks = read_task_specs(smoke_copy, TASKS)
    summary = json.loads((smoke_copy / "student" / "summary.json").read_text())
    metrics = json.loads((smoke_copy / "metrics.json").read_text())["tasks"]
    acc, batch_size = make_accelerator(), load_config(SMOKE).student.eval_batch_size
    for i, task in enumerate(tasks):
        for split in ("train", "dev"):  # the student read the examples as its own tokenizer tokenises them
            data = load_split(smoke_copy, task.name, split)
            own = retokenize(smoke_copy, data, tokenizer, 32)
            assert summary["data"][f"{task.name}/{split}"] == own.fingerprint != data.fingerprint
        first = own.input_ids[own.offsets[0] : own.offsets[1]].tolist()
        assert first == tokenizer(*data_text(smoke_copy, task.name), truncation=True, max_length=32)["input_ids"]
        # the saved model scores its own tokenisation of the dev set as the run reported
        assert evaluate(model, own, i, tasks, acc, batch_size) == pytest.approx(metrics[task.name]["student"]["dev"])


def data_text(run: Path, task: str) -> tuple[str, ...]:
    first = load_examples(run, task, "dev")[0]
    return (first.text_a,) if first.text_b is None else (first.text_a, first.text_b)


def test_a_model_that_does_not_load_as_it_was_trained_is_an_error(smoke_run: Path) -> None:
    folder = smoke_run / "student" / "model"
    tasks, acc = read_task_specs(smoke_run, TASKS), make_accelerator()
    devs = [load_split(smoke_run, t, "dev") for t in TASKS]
    model = load_model(folder)
    check_saved_model(model, folder, devs, tasks, acc)  # as saved: no error
    with torch.no_grad():
        [bias for name, bias in model.heads["stsb"].named_parameters() if name.endswith("bias")][-1].add_(0.01)
    with pytest.raises(StoreError, match=r"outputs on stsb/dev differ from the trained model's by up to"):
        check_saved_model(model, folder, devs, tasks, acc)


def test_an_ensemble_member_of_another_tokenizer_reads_the_examples_with_its_own(
    smoke_run: Path, smoke_copy: Path, tmp_path: Path
) -> None:
    other_model = _other_tokenizer(smoke_run, tmp_path / "other", ModelConfig())
    member = tmp_path / "member"
    assert run_smoke(member, f"--model.name_or_path='{other_model}'", stage="distill") == [
        "data",
        "teachers",
        "distill",
    ]
    assert load_split(member, "rte", "train").fingerprint != load_split(smoke_run, "rte", "train").fingerprint
    assert run_smoke(smoke_copy, f"--distill.teachers=['{member}']")[0] == "distill"
    for task in TASKS:
        both = [np.load(run / "distill" / task / "train.npy") for run in (smoke_run, member)]  # each its own tokens
        stored = np.load(smoke_copy / "distill" / task / "train.npy")
        if task == "stsb":
            np.testing.assert_allclose(stored, (both[0] + both[1]) / 2, atol=1e-5)
        else:
            mean = sum(torch.softmax(torch.from_numpy(x), -1) for x in both) / 2
            np.testing.assert_allclose(torch.softmax(torch.from_numpy(stored), -1).numpy(), mean.numpy(), atol=1e-5)
    shutil.rmtree(member)


def test_a_tiny_random_student_of_real_teachers_is_refused_with_the_config() -> None:
    from pipeline.core.config import ConfigError

    config = Path(__file__).resolve().parent.parent / "configs" / "glue-small.yaml"
    with pytest.raises(ConfigError, match=r"'student.model' tiny-random: the data stage builds that model only"):
        load_config(config, ["--student.model=tiny-random"])


def test_variants_from_a_students_model_are_refused_before_anything_runs(smoke_run: Path, tmp_path: Path) -> None:
    """Multi→Multi and BAM + fine-tuning start teachers from the student's model: with a `student.model` of another
    tokenizer reproduce-glue refuses them at once, and lets a student of the teachers' tokenizer through."""
    other = _other_tokenizer(smoke_run, tmp_path / "other", ModelConfig())
    same = str(smoke_run / "data" / "tiny-random")
    cfg = load_config(SMOKE, [f"--model.name_or_path={same}", f"--student.model={other}"])
    acc = make_accelerator()
    with pytest.raises(ReproduceError, match=r"--variants bam-ft: these start teachers from the bam student's model"):
        reproduce(cfg, tmp_path / "out", 1, ["bam", "bam-ft"], acc, "test", dry_run=True)
    check_parent_vocabulary(cfg, ["bam"])  # no variant of a parent: nothing to refuse
    shutil.copytree(same, tmp_path / "same")
    copy = load_config(SMOKE, [f"--model.name_or_path={same}", f"--student.model={tmp_path / 'same'}"])
    check_parent_vocabulary(copy, ["multi-multi"])  # the teachers' tokenizer in another folder: allowed
