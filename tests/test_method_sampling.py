"""The method's task sampler and batches against references: task probabilities, the multitask and single-task
plans, grouping by length, each rank's slice of the global batch, micro-batches, length-sorted inference batches.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.sampling import group_by_length, multitask_plan, rank_slice, single_task_plan, task_probabilities
from pipeline.core.training import length_sorted_batches, micro_batch_size

# ---------------------------------------------------------------------------------------------------------------------
# Task sampling

SIZES = [1000, 300, 50]


@pytest.mark.parametrize("alpha", [0.0, 0.75, 1.0])
def test_task_probabilities_are_normalised_size_powers(alpha: float) -> None:
    weights = [n**alpha for n in SIZES]
    expected = [w / sum(weights) for w in weights]
    np.testing.assert_allclose(task_probabilities(SIZES, alpha), expected, rtol=1e-12)


def test_task_probabilities_special_cases() -> None:
    np.testing.assert_allclose(task_probabilities(SIZES, 0.0), [1 / 3] * 3, rtol=1e-12)
    np.testing.assert_allclose(task_probabilities(SIZES, 1.0), np.array(SIZES) / sum(SIZES), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.75, 0.0])
def test_multitask_plan_task_frequencies_match_probabilities(alpha: float) -> None:
    batch, steps = 100, 2000
    plan = multitask_plan(SIZES, batch, steps, alpha, seed=7)
    assert plan.shape == (steps, batch, 2)
    n = batch * steps
    counts = np.bincount(plan[..., 0].ravel(), minlength=len(SIZES))
    p = task_probabilities(SIZES, alpha)
    # Each count is Binomial(n, p): a correct sampler lands within 5 standard deviations (p ≈ 6e-7 of failing).
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sigma), (counts / n, p, sigma)


def test_multitask_plan_rows_are_back_to_back_permutations() -> None:
    plan = multitask_plan(SIZES, 64, 500, 0.75, seed=11)
    tasks, rows = plan[..., 0].ravel(), plan[..., 1].ravel()
    for t, n in enumerate(SIZES):
        stream = rows[tasks == t]
        assert stream.min() >= 0 and stream.max() < n
        k = len(stream) // n
        assert k >= 2, "the plan should cover each task at least twice"
        # Over the first n·k draws every row appears exactly k times...
        np.testing.assert_array_equal(np.bincount(stream[: n * k], minlength=n), np.full(n, k))
        # ...because each consecutive block of n draws is one permutation.
        blocks = np.sort(stream[: n * k].reshape(k, n), axis=1)
        np.testing.assert_array_equal(blocks, np.broadcast_to(np.arange(n), (k, n)))
        # The leftover partial pass repeats no row.
        rest = stream[n * k :]
        assert len(np.unique(rest)) == len(rest)


def test_multitask_plan_is_deterministic_in_the_seed() -> None:
    a = multitask_plan(SIZES, 16, 50, 0.75, seed=3)
    b = multitask_plan(SIZES, 16, 50, 0.75, seed=3)
    c = multitask_plan(SIZES, 16, 50, 0.75, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    s1 = multitask_plan(SIZES, 16, 50, 0.75, seed=3, shuffle_all=True)
    s2 = multitask_plan(SIZES, 16, 50, 0.75, seed=3, shuffle_all=True)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, multitask_plan(SIZES, 16, 50, 0.75, seed=4, shuffle_all=True))


def test_shuffle_all_visits_every_example_once_per_pass() -> None:
    sizes = [7, 5, 3]
    total = sum(sizes)
    passes = 3
    plan = multitask_plan(sizes, 5, passes * total // 5, alpha=0.75, seed=0, shuffle_all=True)
    pairs = plan.reshape(-1, 2)
    assert len(pairs) == passes * total
    every = {(t, r) for t, n in enumerate(sizes) for r in range(n)}
    for p in range(passes):
        chunk = [tuple(x) for x in pairs[p * total : (p + 1) * total].tolist()]
        assert len(chunk) == len(set(chunk)) and set(chunk) == every, f"pass {p}"
    # Tasks are mixed: the first pass is not simply task-by-task.
    assert not np.array_equal(pairs[:total, 0], np.sort(pairs[:total, 0]))


def test_single_task_plan_visits_every_row_once_per_pass() -> None:
    size, batch, steps = 7, 3, 7  # 21 slots = 3 passes
    plan = single_task_plan(size, batch, steps, seed=5, task=2)
    assert plan.shape == (steps, batch, 2)
    assert (plan[..., 0] == 2).all()
    rows = plan[..., 1].ravel()
    blocks = np.sort(rows.reshape(3, size), axis=1)
    np.testing.assert_array_equal(blocks, np.broadcast_to(np.arange(size), (3, size)))
    np.testing.assert_array_equal(plan, single_task_plan(size, batch, steps, seed=5, task=2))
    assert not np.array_equal(plan, single_task_plan(size, batch, steps, seed=6, task=2))


def _pair_counts(pairs: np.ndarray) -> dict[tuple[int, int], int]:
    keys, counts = np.unique(pairs.reshape(-1, 2), axis=0, return_counts=True)
    return {tuple(k): int(c) for k, c in zip(keys.tolist(), counts)}


@pytest.mark.parametrize("alpha", [0.75, 0.0])
def test_group_by_length_keeps_the_plans_examples_and_task_frequencies(alpha: float) -> None:
    rng = np.random.default_rng(0)
    lengths = [rng.integers(5, 120, size=n) for n in SIZES]
    batch, steps, window = 16, 230, 50  # the last window is partial
    plan = multitask_plan(SIZES, batch, steps, alpha, seed=3)
    grouped = group_by_length(plan, lengths, window, seed=3)
    assert grouped.shape == plan.shape
    for start in range(0, steps, window):
        # each window holds exactly the plan's (task, row) pairs, only reordered...
        assert _pair_counts(grouped[start : start + window]) == _pair_counts(plan[start : start + window])
        # ...so at every window boundary the per-task counts so far are the plan's, hence p(τ) ∝ |D_τ|^α
        end = min(start + window, steps)
        np.testing.assert_array_equal(
            np.bincount(grouped[:end, :, 0].ravel(), minlength=3), np.bincount(plan[:end, :, 0].ravel(), minlength=3)
        )

    def padding(p: np.ndarray) -> int:  # pad tokens under dynamic padding
        size = np.array([[lengths[t][r] for t, r in b] for b in p])
        return int((size.max(axis=1, keepdims=True) - size).sum())

    assert padding(grouped) < 0.25 * padding(plan)
    # the batches of a window are not left in length order (no short-to-long curriculum inside a window)
    widths = np.array([max(lengths[t][r] for t, r in b) for b in grouped[:window]])
    assert not np.all(np.diff(widths) >= 0)
    np.testing.assert_array_equal(grouped, group_by_length(plan, lengths, window, seed=3))
    np.testing.assert_array_equal(group_by_length(plan, lengths, 0, seed=3), plan)


def test_group_by_length_single_task_keeps_one_pass_per_epoch() -> None:
    size, batch = 64, 8
    lengths = [np.random.default_rng(1).integers(1, 50, size=size)]
    plan = single_task_plan(size, batch, 16, seed=2)  # 2 passes, each 8 batches
    grouped = group_by_length(plan, lengths, 8, seed=2)
    for p in range(2):
        rows = np.sort(grouped[p * 8 : (p + 1) * 8, :, 1].ravel())
        np.testing.assert_array_equal(rows, np.arange(size))
    for b in grouped:  # within a batch, lengths are a contiguous run of the window's sorted lengths
        size_b = lengths[0][b[:, 1]]
        assert size_b.max() - size_b.min() <= np.ptp(lengths[0])


def test_rank_slice_partitions_the_global_batch() -> None:
    batch, world, accum = 8, 2, 2
    step = multitask_plan(SIZES, batch, 1, 0.75, seed=0)[0]
    step[:, 1] = np.arange(batch)  # tag every slot with its index
    seen = []
    for rank in range(world):
        micro = rank_slice(step, rank, world, accum)
        assert len(micro) == accum
        for part in micro:
            assert part.shape == (batch // (world * accum), 2)
            seen.extend(part[:, 1].tolist())
    assert sorted(seen) == list(range(batch))


def test_micro_batch_size_splits_evenly_or_names_the_keys() -> None:
    assert micro_batch_size(32, 2, 2, "student") == 8
    with pytest.raises(ValueError, match=r"'student\.batch_size'.*'student\.grad_accum'"):
        micro_batch_size(30, 2, 2, "student")


# ---------------------------------------------------------------------------------------------------------------------
# Length-sorted inference batches


def _check_batches(lengths: np.ndarray, max_examples: int, max_tokens: int) -> None:
    batches = length_sorted_batches(lengths, max_examples, max_tokens)
    rows = np.concatenate(batches) if batches else np.array([], dtype=int)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= max_examples
        # A single over-long row must still get a batch of its own; any larger batch respects the token cap.
        assert len(b) == 1 or len(b) * lengths[b].max() <= max_tokens


def test_length_sorted_batches_cover_rows_and_respect_caps() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=300)
    lengths[17] = 500  # longer than max_tokens on its own
    _check_batches(lengths, 16, 256)
    batches = length_sorted_batches(lengths, 16, 256)
    assert any(list(b) == [17] for b in batches)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 128), min_size=0, max_size=80),
    max_examples=st.integers(1, 20),
    max_tokens=st.integers(1, 1024),
)
def test_length_sorted_batches_property(lengths: list[int], max_examples: int, max_tokens: int) -> None:
    _check_batches(np.asarray(lengths, dtype=np.int64), max_examples, max_tokens)
