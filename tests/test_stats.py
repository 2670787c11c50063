"""Routing statistics: V, C and P against a per-token brute force, chunking, and the definitions' edge cases."""

import itertools

import numpy as np
import pytest

from mozart.model.errors import TraceError
from mozart.model.stats import (activation_counts, activation_frequency, coactivation_counts,
                                coactivation_probability, first_occurrences, pair_counts, top_pairs)
from mozart.model.synth import synthesize
from mozart.model.trace import Trace


def _brute_force(experts, num_experts):
    counts = np.zeros((num_experts, num_experts), dtype=np.int64)
    for row in experts.tolist():
        for i, j in itertools.product(row, row):
            counts[i, j] += 1  # i == j: the token chose i (the diagonal holds activation counts)
    return counts


@pytest.fixture(scope="module")
def trace():
    return synthesize(12, 3, 2, 500, seed=7, groups_of=3)


def test_coactivation_matches_brute_force(trace):
    for layer in range(trace.layers):
        expected = _brute_force(trace.experts[layer], 12)
        got = coactivation_counts(trace, layer)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, got.T)
        np.testing.assert_array_equal(np.diag(got), activation_counts(trace, layer))


@pytest.mark.parametrize("chunk", [1, 7, 499, 500, 10_000])
def test_chunking_does_not_change_counts(trace, chunk):
    np.testing.assert_array_equal(coactivation_counts(trace, 1, chunk_tokens=chunk), coactivation_counts(trace, 1))


def test_activation_frequency_sums_to_one(trace):
    v = activation_frequency(trace, 0)
    assert v.dtype == np.float64 and v.shape == (12,)
    assert v.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(v, activation_counts(trace, 0) / (500 * 3))


def test_off_diagonal_row_sums_are_k_minus_1_times_activations(trace):
    c = coactivation_counts(trace, 0)
    np.testing.assert_array_equal(c.sum(axis=1) - np.diag(c), 2 * np.diag(c))


def test_probability_is_normalised_by_the_off_diagonal_maximum(trace):
    c = coactivation_counts(trace, 0)
    p = coactivation_probability(c)
    off = ~np.eye(12, dtype=bool)
    assert p[off].max() == 1.0
    np.testing.assert_allclose(p, c / c[off].max())
    assert (np.diag(p) > 1).any()  # the diagonal (activation counts) is scaled alike, not clipped


def test_top_1_and_empty_traces():
    top1 = Trace(np.array([[[0], [1], [1]]]), np.ones((1, 3, 1)), 4)
    c = coactivation_counts(top1, 0)
    np.testing.assert_array_equal(np.diag(c), [1, 2, 0, 0])
    assert not coactivation_probability(c).any()
    empty = Trace(np.zeros((1, 0, 2), np.int32), np.zeros((1, 0, 2)), 4)
    assert not coactivation_counts(empty, 0).any()
    assert not activation_frequency(empty, 0).any()


def test_top_pairs_order_and_ties():
    c = np.array([[0, 5, 1, 5], [5, 0, 2, 0], [1, 2, 0, 9], [5, 0, 9, 0]])
    assert top_pairs(c, 3) == [(2, 3, 9), (0, 1, 5), (0, 3, 5)]


def test_bad_input_is_named():
    trace = synthesize(8, 2, 1, 10, seed=0)
    with pytest.raises(TraceError, match=r"layer must be in 0\.\.0, not 3"):
        coactivation_counts(trace, 3)
    with pytest.raises(TraceError, match="chunk_tokens must be positive, not 0"):
        coactivation_counts(trace, 0, chunk_tokens=0)
    with pytest.raises(TraceError, match="must be a square matrix"):
        coactivation_probability(np.zeros((2, 3)))
    with pytest.raises(TraceError, match=r"must be a \[tokens, k\] array"):
        pair_counts(np.zeros(3, int), 4)


def test_first_occurrences_are_slot_major():
    ids = np.array([[3, 0, 5], [3, 1, 5], [2, 0, 5]])  # [k = 3 slots, 3 tokens]
    first, same = first_occurrences(ids)
    np.testing.assert_array_equal(first, [[1, 1, 1], [0, 1, 0], [1, 0, 0]])
    assert same == 1 + 1 + 3  # token 0: slots 0-1; token 1: slots 0-2; token 2: all three pairs
