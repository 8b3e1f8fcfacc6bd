"""How the student treats regression (docs/regression.md): the loss scales, the task weights in the sampling, both
orders of a pair, and the probe that logs each task's gradient at the heads' input."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMOKE
from transformers import BertConfig, BertModel

from pipeline.core.config import ModelConfig, StudentConfig, load_config
from pipeline.core.data import swap_pair
from pipeline.core.loss import multitask_loss
from pipeline.core.model import MultiTaskModel, head_spec
from pipeline.core.sampling import multitask_plan, task_probabilities
from pipeline.core.tasks import TaskSpec, get_glue_task
from pipeline.core.training import model_inputs
from pipeline.experiments.choices import check_grid
from pipeline.experiments.variants import ReproduceError
from stages import STAGES
from student.options import get_options
from student.options.regression import label_entropies, loss_weights, standardisation, swap_draws
from student.probe import TaskGradients

RAW = np.array([0.0, 1.2, 2.5, 3.1, 4.8, 5.0, 0.4, 2.2], dtype=np.float32)  # scores on a 0–5 scale


def _similarity(high: float) -> TaskSpec:
    """A sentence-similarity task declaring the range [0, high] (its scores stay in 0–5)."""
    return dataclasses.replace(get_glue_task("stsb"), name="similarity", label_range=(0.0, high))


def _model(tasks: list[TaskSpec], affine: dict[str, tuple[float, float]]) -> MultiTaskModel:
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    heads = {t.name: head_spec(t, ModelConfig(), affine=affine.get(t.name)) for t in tasks}
    return MultiTaskModel(BertModel(config), heads, "pooler", dropout=0.0)


def _step(
    task_loss: str, high: float, task_weights: dict[str, float] | None = None
) -> tuple[float, dict[str, float], list[torch.Tensor]]:
    """One forward and backward pass over a batch of SST-2 and similarity rows, the similarity task declaring [0,
    high]: the loss, each task's gradient norm at the heads' input, and the encoder's gradients."""
    tasks = [get_glue_task("sst2"), _similarity(high)]
    stats = standardisation(tasks, [np.array([0, 1, 1, 0]), RAW]) if task_loss == "standardised" else {}
    model = _model(tasks, stats)
    probe = TaskGradients(model, [t.name for t in tasks])
    g = torch.Generator().manual_seed(3)
    task_ids = torch.tensor([0, 1, 0, 1, 1, 0, 1, 1])
    labels = torch.where(task_ids == 1, torch.from_numpy(RAW) / high, torch.tensor([0.0, 1.0]).repeat(4))
    batch = {
        "input_ids": torch.randint(5, 50, (8, 6), generator=g),
        "attention_mask": torch.ones(8, 6, dtype=torch.long),
        "token_type_ids": torch.zeros(8, 6, dtype=torch.long),
        "task_ids": task_ids,
        "labels": labels,
    }
    probe.watch(task_ids)
    outputs = model(**model_inputs(batch))
    weights = loss_weights(task_loss, tasks, stats, task_weights or {})
    loss, _ = multitask_loss(outputs, task_ids, labels, tasks, 1.0, None, weights)
    loss.backward()
    probe.step()
    return loss.item(), probe.window(), [p.grad.clone() for p in model.encoder.parameters() if p.grad is not None]


def test_standardised_regression_trains_alike_whatever_range_the_task_declares() -> None:
    """With standardised targets a regression task's loss, its share of the gradient and the encoder's gradients are
    the same whether it declares [0, 5] or [0, 100]; with BAM's scaled labels they are not."""
    loss_5, norms_5, grads_5 = _step("standardised", 5.0)
    loss_100, norms_100, grads_100 = _step("standardised", 100.0)
    assert loss_100 == pytest.approx(loss_5, rel=1e-5)
    assert norms_100["similarity"] == pytest.approx(norms_5["similarity"], rel=1e-4)
    assert norms_100["sst2"] == pytest.approx(norms_5["sst2"], rel=1e-4)
    for a, b in zip(grads_5, grads_100):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    _, mean_5, _ = _step("mean", 5.0)
    _, mean_100, _ = _step("mean", 100.0)
    share = {k: v["similarity"] ** 2 / sum(x**2 for x in v.values()) for k, v in (("5", mean_5), ("100", mean_100))}
    assert abs(share["5"] - share["100"]) > 0.05  # BAM's loss: the declared range moves the task's share


def test_label_scale_is_the_squared_error_on_the_labels_own_scale() -> None:
    task = get_glue_task("stsb")
    outputs = torch.tensor([[0.1], [0.5], [0.9]])
    gold = torch.tensor([0.2, 0.4, 1.0])  # scaled by 5
    weights = loss_weights("label-scale", [task], {}, {})
    loss, per_task = multitask_loss(outputs, torch.zeros(3, dtype=torch.long), gold, [task], 1.0, None, weights)
    assert weights == (25.0,)
    assert loss.item() == pytest.approx(((outputs[:, 0] * 5 - gold * 5) ** 2).mean().item(), rel=1e-6)
    assert per_task["stsb"][0] == pytest.approx(((outputs[:, 0] - gold) ** 2).sum().item(), rel=1e-6)  # logged as is


def test_a_task_weight_scales_that_tasks_gradient_alone() -> None:
    """`task_weights` on top of standardised: the similarity task's gradient at the heads' input scales by its
    weight, SST-2's does not move, so its share of the squared gradient falls."""
    _, plain, _ = _step("standardised", 5.0)
    _, weighted, _ = _step("standardised", 5.0, {"similarity": 0.5})
    assert weighted["similarity"] == pytest.approx(0.5 * plain["similarity"], rel=1e-4)
    assert weighted["sst2"] == pytest.approx(plain["sst2"], rel=1e-4)
    share = [v["similarity"] ** 2 / sum(x**2 for x in v.values()) for v in (weighted, plain)]
    assert share[0] < share[1]


def test_task_weights_reach_the_students_loss_with_every_task_loss() -> None:
    """The options the student loop is built with carry the weights: with BAM's `mean` loss too, and times the
    loss scale of label-scale; none at BAM's defaults."""
    tasks = [get_glue_task(n) for n in ("sst2", "mrpc", "stsb", "rte")]
    assert get_options(StudentConfig(), tasks, [], 1).loss_weights is None
    weighted = StudentConfig(task_weights={"stsb": 0.5, "rte": 2.0})
    assert get_options(weighted, tasks, [], 1).loss_weights == (1.0, 1.0, 0.5, 2.0)
    scaled = dataclasses.replace(weighted, task_loss="label-scale")
    assert get_options(scaled, tasks, [], 1).loss_weights == (1.0, 1.0, 12.5, 2.0)


def test_a_task_weight_of_one_keeps_the_students_record() -> None:
    """{task: 1.0} trains as no weight at all, so the student's digest (what makes a run stale) stays; another
    weight is another student."""
    subset = STAGES["student"].config_subset
    base = load_config(SMOKE)
    assert subset(load_config(SMOKE, ["--student.task_weights={stsb: 1.0}"])) == subset(base)
    weighted = subset(load_config(SMOKE, ["--student.task_weights={stsb: 0.6, rte: 1.0}"]))
    assert weighted != subset(base) and weighted["student"]["task_weights"] == {"stsb": 0.6}


def test_a_standardised_head_returns_the_scaled_label_space() -> None:
    """The head predicts z; the model returns z · σ + μ, so evaluation and predict need nothing else."""
    task = _similarity(5.0)
    (mean, std) = standardisation([task], [RAW])["similarity"]
    assert (mean, std) == pytest.approx((RAW.mean() / 5, RAW.std() / 5), rel=1e-6)
    plain, standardised = _model([task], {}), _model([task], {"similarity": (mean, std)})
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    z = plain(**batch, task_ids=torch.tensor([0]))
    torch.testing.assert_close(standardised(**batch, task_ids=torch.tensor([0])), z * std + mean)


def test_standardising_a_constant_label_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'similarity' are all equal"):
        standardisation([_similarity(5.0)], [np.full(4, 2.0, np.float32)])


def test_prior_makes_each_tasks_loss_one_for_a_model_that_knows_only_its_label_prior() -> None:
    """`task_loss: prior`: predicting the training labels' frequencies (classification) or their mean (regression)
    costs exactly 1 per example in every task, whatever its classes, balance or declared range; the options carry
    the standardised head of the regression task."""
    three = dataclasses.replace(get_glue_task("mnli"), name="three", dev_splits=("dev",))
    for high in (5.0, 100.0):
        tasks = [get_glue_task("sst2"), three, _similarity(high)]
        labels = [np.array([0, 1, 1, 1]), np.array([0, 1, 2, 2, 2, 1]), RAW]
        train = [SimpleNamespace(labels=x) for x in labels]
        opts = get_options(StudentConfig(task_loss="prior"), tasks, train, 1)
        assert opts.head_affine == standardisation(tasks, labels)
        for t, (task, y) in enumerate(zip(tasks, labels)):
            if task.kind == "regression":
                gold = torch.from_numpy(y) / high
                outputs = torch.full((len(y), 3), float(gold.mean()))
            else:
                prior = torch.bincount(torch.from_numpy(y), minlength=task.num_labels) / len(y)
                outputs = prior.log().expand(len(y), -1).clone()
                outputs = torch.cat([outputs, torch.zeros(len(y), 3 - task.num_labels)], dim=1)
                gold = torch.from_numpy(y)
            task_ids = torch.full((len(y),), t)
            loss, _ = multitask_loss(outputs, task_ids, gold, tasks, 1.0, None, opts.loss_weights)
            assert loss.item() == pytest.approx(1.0, rel=1e-5), task.name


def test_prior_refuses_a_task_of_one_class_by_name() -> None:
    with pytest.raises(ValueError, match="'sst2' are all one class"):
        label_entropies([get_glue_task("sst2")], [np.ones(4, np.int64)])


def test_swap_pair_reads_the_sentences_in_the_other_order() -> None:
    ids = np.array([101, 7, 8, 102, 9, 102])  # [CLS] a a [SEP] b [SEP]
    types = np.array([0, 0, 0, 0, 1, 1])
    swapped, swapped_types = swap_pair(ids, types)
    assert swapped.tolist() == [101, 9, 102, 7, 8, 102] and swapped_types.tolist() == [0, 0, 0, 1, 1, 1]
    again = swap_pair(swapped, swapped_types)
    assert again[0].tolist() == ids.tolist() and again[1].tolist() == types.tolist()
    single = np.array([101, 7, 102])
    assert swap_pair(single, np.zeros(3, np.int64))[0] is single


def test_swap_draws_are_fair_coins_the_same_however_a_step_is_split() -> None:
    rng = np.random.default_rng(0)
    rows = np.stack([rng.integers(0, 3, 400), rng.integers(0, 1000, 400)], axis=-1)
    mask = np.array([False, True, True])
    whole = swap_draws(1, 17, rows, mask)
    halves = np.concatenate([swap_draws(1, 17, rows[:150], mask), swap_draws(1, 17, rows[150:], mask)])
    assert (whole == halves).all()
    assert not whole[rows[:, 0] == 0].any()  # a task not named is never swapped
    assert 0.4 < whole[rows[:, 0] > 0].mean() < 0.6
    assert (swap_draws(1, 18, rows, mask) != whole).any() and (swap_draws(2, 17, rows, mask) != whole).any()


def test_sampling_weights_multiply_a_tasks_probability() -> None:
    sizes = [1000, 400, 100]
    p = task_probabilities(sizes, 0.75, [1.0, 2.0, 1.0])
    expected = np.array(sizes, float) ** 0.75 * [1, 2, 1]
    np.testing.assert_allclose(p, expected / expected.sum())
    plan = multitask_plan(sizes, 32, 400, 0.75, seed=1, weights=[1.0, 2.0, 1.0])
    share = np.bincount(plan[:, :, 0].ravel(), minlength=3) / plan[:, :, 0].size
    np.testing.assert_allclose(share, p, atol=0.01)
    np.testing.assert_array_equal(
        multitask_plan(sizes, 8, 10, 0.75, 1), multitask_plan(sizes, 8, 10, 0.75, 1, weights=None)
    )


def test_a_regression_variant_naming_a_task_the_run_lacks_is_refused_before_it_runs(tmp_path) -> None:
    """`standardised-0.6` weights STS-B: on a run without STS-B it would train plain `standardised` under another
    label, so reproduce-glue refuses it up front, naming the variant and the key."""
    cfg = load_config(SMOKE, ["--data.tasks=[sst2, rte]"])
    with pytest.raises(ReproduceError, match=r"the variant standardised-0.6:\n  'student.task_weights' names 'stsb'"):
        check_grid(cfg, tmp_path, ["bam", "standardised-0.6"], {})
    check_grid(load_config(SMOKE), tmp_path, ["bam", "standardised-0.6"], {})  # with STS-B: fine
