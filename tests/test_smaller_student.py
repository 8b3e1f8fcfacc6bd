"""A student of another size: the layers it keeps of the teachers' pretrained encoder (`student.layers`), its own
depth in the layer-wise learning rates, training from the stored soft targets, and `student.model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMOKE, run_smoke
from safetensors.torch import load_file
from transformers import AutoModel, BertConfig, BertModel

from pipeline.core.config import ConfigError, load_config
from pipeline.core.model import MultiTaskModel
from pipeline.core.shrink import keep_layers, kept_layers
from pipeline.core.training import layerwise_param_groups


@pytest.mark.parametrize(
    ("layers", "depth", "kept"),
    [("every_other", 6, [1, 3, 5]), ("every_other", 12, [1, 3, 5, 7, 9, 11]), ("every_other", 5, [0, 2, 4]),
     ("bottom_half", 6, [0, 1, 2]), ("bottom_half", 12, [0, 1, 2, 3, 4, 5]), ("bottom_half", 5, [0, 1, 2]),
     ("bottom_half", 1, [0]), ("all", 3, [0, 1, 2]), ((0, 5), 6, [0, 5])],
)  # fmt: skip
def test_which_layers_a_student_keeps(layers, depth: int, kept: list[int]) -> None:
    assert kept_layers(layers, depth) == kept


@pytest.mark.parametrize("layers", [(), (2, 1), (1, 1), (-1,), (6,)])
def test_a_layer_list_that_does_not_fit_is_refused(layers: tuple) -> None:
    with pytest.raises(ValueError, match=r"'student.layers' .*: expected layer indices of the 6-layer encoder"):
        kept_layers(layers, 6)


def _encoder(layers: int = 4) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    return BertModel(config).eval()


def test_the_kept_layers_are_copied_exactly_and_the_encoder_says_its_depth(tmp_path: Path) -> None:
    teacher = _encoder()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = keep_layers(_encoder(), (0, 2))
    after = student.state_dict()
    assert student.config.num_hidden_layers == 2
    assert {k.split(".")[2] for k in after if k.startswith("encoder.layer.")} == {"0", "1"}
    for key, value in after.items():
        source = key.replace("encoder.layer.1.", "encoder.layer.2.")  # student layer 1 = teacher layer 2
        assert torch.equal(value, before[source]), key
    assert {k for k in before if k.startswith(("embeddings.", "pooler."))} <= set(after)
    # the same network as the teacher's layers 0 and 2 run one after the other
    ids = torch.tensor([[2, 7, 9, 3]])
    hidden = teacher.embeddings(input_ids=ids)
    for i in (0, 2):  # no padding: no attention mask
        hidden = teacher.encoder.layer[i](hidden)
    torch.testing.assert_close(student(input_ids=ids).last_hidden_state, hidden)
    # saved and loaded as any model of its family
    student.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path)
    assert again.config.num_hidden_layers == 2 and len(again.encoder.layer) == 2


def test_layerwise_learning_rates_use_the_students_own_depth() -> None:
    heads = {"t": {"outputs": 2, "kind": "classification", "sigmoid": False, "pair": False}}
    for kept, depth in ((None, 4), ((1, 3), 2)):
        encoder = _encoder() if kept is None else keep_layers(_encoder(), kept)
        groups = layerwise_param_groups(MultiTaskModel(encoder, heads, "pooler", 0.1), 1.0, 0.5, 0.0)
        deepest = max(g["depth"] for g in groups)  # the embeddings: pooler 1, layers 2 … depth + 1, then them
        assert deepest == depth + 2
        assert min(g["lr"] for g in groups) == 0.5**deepest


def test_a_shallower_student_trains_from_the_stored_soft_targets(smoke_copy: Path) -> None:
    """The smoke run's teachers and soft targets as they are; only the student (1 of 2 layers) and what follows
    run again, and the saved student is a 1-layer model whose layer is one the pretrained encoder had."""
    assert run_smoke(smoke_copy, "--student.layers=[1]") == ["student", "evaluate", "report"]
    model = smoke_copy / "student" / "model"
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == 1
    weights = load_file(str(model / "model.safetensors"))
    assert not any(k.startswith(("encoder.layer.1.", "layer.1.")) for k in weights)
    summary = json.loads((smoke_copy / "metrics.json").read_text())
    assert set(summary["tasks"]) == {"sst2", "mrpc", "stsb", "rte"}
    assert "layers [1]" in (smoke_copy / "report.md").read_text()
    assert "(keeping its layers 1: 1 in all)" in (model / "README.md").read_text()  # the model card


def test_layer_lists_are_checked_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"'student.layers' \[0, 2\]: expected layer indices of the 2-layer"):
        load_config(SMOKE, ["--student.layers=[0, 2]"])  # tiny-random has model.tiny_layers 2
    load_config(SMOKE, ["--student.layers=[0]", "--student.model='tiny-random'"])


def test_bottom_half_is_a_layers_spelling_and_other_names_are_refused() -> None:
    assert load_config(SMOKE, ["--student.layers=bottom_half"]).student.layers == "bottom_half"
    assert load_config(SMOKE, ["--teachers.layers=bottom_half"]).teachers.layers == "bottom_half"
    with pytest.raises(ConfigError, match=r"student\.layers.*top_half"):
        load_config(SMOKE, ["--student.layers=top_half"])


@pytest.mark.parametrize(
    ("variant", "student_layers", "teacher_layers", "fixed_lambda"),
    [("bam-bottom", "bottom_half", "all", None), ("multi-bottom", "bottom_half", "all", 1.0),
     ("single-bottom", "all", "bottom_half", None), ("bam-small", "every_other", "all", None),
     ("distil-small", "every_other", "all", 0.0)],
)  # fmt: skip
def test_the_small_variants_change_the_student_or_the_teachers(
    variant: str, student_layers: str, teacher_layers: str, fixed_lambda: float | None
) -> None:
    from pipeline.experiments.variants import apply_variant, reports_teachers

    cfg = apply_variant(load_config(SMOKE), variant, {}, None)
    assert (cfg.student.layers, cfg.teachers.layers) == (student_layers, teacher_layers)
    assert cfg.student.fixed_lambda == fixed_lambda
    assert reports_teachers(variant) == variant.startswith("single")


def test_reproduce_measures_the_small_student_against_small_baselines(tmp_path: Path) -> None:
    """bam-small learns from the seed's teachers; single-small trains teachers of the small size in its own folder
    (the baseline per task), multi-small the small model multitask at λ = 1; the table has their group."""
    from pipeline.cli import main
    from pipeline.experiments.variants import SMALL

    out = tmp_path / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "1"]
    assert main([*argv, "--variants", "single-small,multi-small,bam-small"]) == 0
    seed = out / "runs" / "seed-1"

    def depth(model: Path) -> int:
        return json.loads((model / "config.json").read_text())["num_hidden_layers"]

    for task in ("sst2", "mrpc", "stsb", "rte"):
        assert depth(seed / "teachers" / "teachers" / task / "model") == 2  # the seed's teachers: the full model
        small = seed / "single-small" / "teachers" / task / "model"
        assert depth(small) == 1 and not (small / "model.safetensors").samefile(
            seed / "teachers" / "teachers" / task / "model" / "model.safetensors"
        )
        soft = f"distill/{task}/train.npy"
        assert (seed / "bam-small" / soft).samefile(seed / "teachers" / soft)  # BAM's teachers, not small ones
    assert depth(seed / "bam-small" / "student" / "model") == depth(seed / "multi-small" / "student" / "model") == 1
    multi = json.loads((seed / "multi-small" / "manifests" / "student.json").read_text())["config"]["student"]
    assert multi["fixed_lambda"] == 1.0 and multi["layers"] == "every_other"
    runs = {r["variant"] for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs == {"single-small", "multi-small", "bam-small"}
    table = (out / "table.md").read_text()
    small = ("single-small", "multi-small", "bam-small")
    assert "A smaller student" in table and all(SMALL[name][0] in table for name in small)


def test_a_run_from_its_own_teachers_does_not_train_the_seeds(tmp_path: Path) -> None:
    """single-small alone trains only its own (small) teachers: the seed's shared folder gets its data, no
    teachers and no soft targets."""
    from pipeline.cli import main

    out = tmp_path / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "1", "--variants", "single-small"]
    assert main(argv) == 0
    shared = out / "runs" / "seed-1" / "teachers"
    assert (shared / "manifests" / "data.json").is_file()
    assert not (shared / "manifests" / "teachers.json").exists() and not (shared / "distill").exists()
    assert (out / "runs" / "seed-1" / "single-small" / "teachers" / "sst2" / "model").is_dir()
    assert {r["variant"] for r in json.loads((out / "results.json").read_text())["runs"]} == {"single-small"}


@pytest.mark.parametrize(
    ("variant", "stages"),
    [
        ("single-small", ("data",)),
        ("single-bottom", ("data",)),
        ("bam-bottom", ("data", "teachers", "distill")),
        ("multi-bottom", ("data", "teachers")),
        ("single", ("data", "teachers")),
        ("multi", ("data", "teachers")),
        ("multi-small", ("data", "teachers")),
        ("bam-ensemble", ("data", "teachers")),
        ("bam", ("data", "teachers", "distill")),
        ("bam-small", ("data", "teachers", "distill")),
        ("distil-small", ("data", "teachers", "distill")),
        ("bam-ft", ("data", "teachers", "distill")),  # through its parent, BAM
        ("multi-multi", ("data", "teachers")),  # through its parent, Multi
    ],
)
def test_each_variant_reads_only_the_seed_stages_it_needs(variant: str, stages: tuple[str, ...]) -> None:
    from pipeline.experiments.variants import seed_stages

    assert seed_stages(variant) == stages
