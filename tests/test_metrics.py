"""Placement metrics: a per-token brute force, the analytic C_T of uniform routing (acceptance 1), the top-2
co-activation path, and hypothesis properties over random configs, traces and placements (acceptance 5)."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mozart.model.config import load_config, override
from mozart.model.errors import PlacementError, TraceError
from mozart.model.metrics import (distinct_per_row, expected_distinct_chiplets, layer_c_t, metrics_from_coactivation,
                                  placement_metrics, replicas_per_token)
from mozart.model.placement import Placement
from mozart.model.stats import coactivation_counts
from mozart.model.synth import synthesize, synthesize_uniform
from mozart.model.trace import Trace

SCALARS = ("c_t", "root_replicas", "chiplet_load_max", "chiplet_load_mean", "chiplet_imbalance", "group_load_max",
           "group_load_mean", "group_imbalance", "cross_chiplet_fraction", "cross_group_fraction")
ARRAYS = ("c_t_per_layer", "root_replicas_per_layer", "chiplet_tokens", "group_tokens",
          "chiplet_imbalance_per_layer", "group_imbalance_per_layer", "cross_chiplet_per_layer",
          "cross_group_per_layer")


def _config(groups, per_group, experts, top_k):
    return override(load_config("tiny"), {"tree.groups": groups, "tree.chiplets_per_group": per_group,
                                          "moe.experts": experts, "moe.top_k": top_k})


def _contiguous(cfg):
    return Placement(np.arange(cfg.moe.experts) // cfg.experts_per_chiplet, cfg.chiplets_per_group)


def _brute_force(experts, e2c, per_group, chiplets):
    """The definitions, token by token."""
    chiplet_tokens = np.zeros(chiplets, int)
    replicas = root = pairs = cross_c = cross_g = 0
    for row in experts.tolist():
        chips = {int(e2c[e]) for e in row}
        groups = {c // per_group for c in chips}
        replicas, root = replicas + len(chips), root + len(groups)
        for c in chips:
            chiplet_tokens[c] += 1
        for a, b in itertools.combinations(row, 2):
            pairs += 1
            cross_c += e2c[a] != e2c[b]
            cross_g += e2c[a] // per_group != e2c[b] // per_group
    tokens = len(experts)
    return (replicas / tokens, root / tokens, chiplet_tokens, cross_c / pairs if pairs else 0.0,
            cross_g / pairs if pairs else 0.0)


def test_metrics_match_the_definitions_token_by_token():
    cfg = _config(2, 2, 8, 3)
    trace = synthesize(8, 3, 2, 300, seed=3, groups_of=2)
    rng = np.random.default_rng(0)
    placement = Placement(np.array([rng.permutation(8) // 2 for _ in range(2)]), 2)
    m = placement_metrics(trace, placement, cfg)
    for layer in range(2):
        c_t, root, chiplet_tokens, cross_c, cross_g = _brute_force(trace.experts[layer],
                                                                   placement.expert_to_chiplet[layer], 2, 4)
        assert m.c_t_per_layer[layer] == pytest.approx(c_t)
        assert m.root_replicas_per_layer[layer] == pytest.approx(root)
        np.testing.assert_array_equal(m.chiplet_tokens[layer], chiplet_tokens)
        assert m.cross_chiplet_per_layer[layer] == pytest.approx(cross_c)
        assert m.cross_group_per_layer[layer] == pytest.approx(cross_g)
        assert m.chiplet_imbalance_per_layer[layer] == pytest.approx(chiplet_tokens.max() / chiplet_tokens.mean())
    assert m.c_t == pytest.approx(m.c_t_per_layer.mean())
    assert m.layers == 2 and m.tokens == 300 and m.top_k == 3 and m.dedup
    assert m.group_tokens.sum(axis=1).tolist() == (m.root_replicas_per_layer * 300).round().astype(int).tolist()


def test_without_dedup_every_expert_is_a_replica():
    cfg = _config(2, 2, 16, 4)
    trace = synthesize(16, 4, 2, 200, seed=1)
    m = placement_metrics(trace, _contiguous(cfg), cfg, dedup=False)
    assert m.c_t == 4 and m.root_replicas == 4 and not m.dedup
    np.testing.assert_array_equal(m.chiplet_tokens[0], np.bincount(trace.experts[0].ravel() // 4, minlength=4))
    with_dedup = placement_metrics(trace, _contiguous(cfg), cfg)
    assert with_dedup.c_t < 4
    assert m.cross_chiplet_fraction == with_dedup.cross_chiplet_fraction


def test_one_expert_per_chiplet_gives_k_and_one_chiplet_gives_1():
    trace = synthesize(16, 4, 1, 100, seed=2)
    cfg = load_config("wafer4x4")  # 16 experts on 16 chiplets
    assert placement_metrics(trace, _contiguous(cfg), cfg).c_t == 4
    one = _config(1, 1, 16, 4)
    m = placement_metrics(trace, _contiguous(one), one)
    assert (m.c_t, m.root_replicas, m.cross_chiplet_fraction, m.chiplet_imbalance) == (1, 1, 0, 1)


def test_array_helpers():
    ids = np.array([[3, 3, 1], [0, 1, 2], [5, 5, 5]])
    np.testing.assert_array_equal(distinct_per_row(ids), [2, 3, 1])
    e2c = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(replicas_per_token(np.array([[0, 1], [1, 2], [3, 2]]), e2c), [1, 2, 1])
    assert layer_c_t(np.array([[0, 1], [1, 2], [3, 2]]), e2c) == 4 / 3
    with pytest.raises(TraceError, match="C_T needs at least one token"):
        layer_c_t(np.zeros((0, 2), int), e2c)


def test_expected_distinct_chiplets_by_enumeration():
    for experts, k, chiplets in [(8, 3, 4), (12, 4, 3), (6, 6, 2), (9, 1, 3)]:
        e2c = np.arange(experts) // (experts // chiplets)
        subsets = list(itertools.combinations(range(experts), k))
        exact = sum(len(set(e2c[list(s)])) for s in subsets) / len(subsets)
        assert expected_distinct_chiplets(experts, k, chiplets) == pytest.approx(exact, rel=1e-12)
    assert expected_distinct_chiplets(128, 8, 16) == pytest.approx(16 * (1 - math.comb(120, 8) / math.comb(128, 8)))


@pytest.mark.parametrize("args,message", [((10, 2, 4), "num_experts must be a multiple of chiplets (4), not 10"),
                                          ((8, 9, 4), "top_k must be at most num_experts (8), not 9"),
                                          ((8, 0, 4), "top_k must be a positive integer, not 0")])
def test_expected_distinct_chiplets_rejects_bad_shapes(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expected_distinct_chiplets(*args)


@pytest.mark.parametrize("preset", ["qwen3-30b-a3b", "olmoe-1b-7b", "deepseek-moe-16b"])
def test_acceptance_1_uniform_c_t_matches_the_formula(preset):
    # 2 x 40000 tokens: the standard error of C_T is below 0.004, the 1 % band is over 0.05 wide.
    cfg = load_config(preset)
    trace = synthesize_uniform(cfg.moe.experts, cfg.moe.top_k, 2, 40_000, seed=11)
    m = placement_metrics(trace, _contiguous(cfg), cfg)
    expected = expected_distinct_chiplets(cfg.moe.experts, cfg.moe.top_k, cfg.chiplets)
    assert m.c_t == pytest.approx(expected, rel=0.01)
    assert m.root_replicas == pytest.approx(expected_distinct_chiplets(cfg.moe.experts, cfg.moe.top_k, cfg.groups),
                                            rel=0.01)


@pytest.mark.parametrize("structured", [False, True])
def test_top_2_coactivation_path_agrees_exactly(structured):
    cfg = _config(4, 4, 64, 2)
    trace = synthesize(64, 2, 3, 3000, seed=5, groups_of=4, coactivation=0.6 if structured else 0.0)
    rng = np.random.default_rng(1)
    for layer in range(trace.layers):
        placement = Placement(rng.permutation(64) // 4, 4)
        direct = placement_metrics(trace.layer(layer), placement, cfg)
        counts = coactivation_counts(trace, layer)
        for c in (counts, counts - np.diag(np.diag(counts))):  # the diagonal is optional
            via_c = metrics_from_coactivation(c, placement.expert_to_chiplet[0], 4, chiplets=16)
            for name in SCALARS:
                assert getattr(via_c, name) == getattr(direct, name), name
            for name in ARRAYS:
                np.testing.assert_array_equal(getattr(via_c, name), getattr(direct, name), err_msg=name)


def test_coactivation_path_rejects_non_top_2_data():
    trace = synthesize(16, 3, 1, 100, seed=0)
    counts = coactivation_counts(trace, 0)
    with pytest.raises(TraceError, match="top-2 data is needed"):
        metrics_from_coactivation(counts, np.arange(16) // 4, 2)
    with pytest.raises(TraceError, match="symmetric and non-negative"):
        metrics_from_coactivation(np.triu(counts, 1), np.arange(16) // 4, 2)
    with pytest.raises(PlacementError, match=r"expert_to_chiplet must be an integer array of shape \(16,\)"):
        metrics_from_coactivation(np.zeros((16, 16), int), np.arange(8), 2)
    with pytest.raises(PlacementError, match="chiplets_per_group must be a positive divisor"):
        metrics_from_coactivation(np.zeros((16, 16), int), np.arange(16) // 4, 3)


def test_placement_and_trace_must_fit():
    cfg = load_config("wafer4x4")
    trace = synthesize(16, 4, 3, 10, seed=0)
    two_layers = Placement(np.stack([np.arange(16)] * 2), 4)
    with pytest.raises(PlacementError, match="placement must have 1 layer or the trace's 3, not 2"):
        placement_metrics(trace, two_layers, cfg)
    with pytest.raises(TraceError, match="moe.top_k = 4"):
        placement_metrics(synthesize(16, 2, 1, 10, seed=0), _contiguous(cfg), cfg)
    with pytest.raises(TraceError, match="at least one token"):
        placement_metrics(trace.head(0), _contiguous(cfg), cfg)


@st.composite
def _instances(draw):
    groups, per_group, per_chiplet = (draw(st.integers(1, 4)) for _ in range(3))
    experts = groups * per_group * per_chiplet
    k = draw(st.integers(1, min(experts, 8)))
    layers, tokens, seed = draw(st.integers(1, 2)), draw(st.integers(1, 40)), draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    experts_ids = np.argsort(rng.random((layers, tokens, experts)), axis=2)[:, :, :k]
    trace = Trace(experts_ids, rng.random((layers, tokens, k)), experts)
    e2c = np.array([rng.permutation(experts) // per_chiplet for _ in range(layers)])
    return _config(groups, per_group, experts, k), trace, Placement(e2c, per_group), rng


@settings(max_examples=60, deadline=None)
@given(_instances())
def test_properties(instance):
    cfg, trace, placement, rng = instance
    k = trace.top_k
    m = placement_metrics(trace, placement, cfg)
    assert 1 <= m.c_t <= k and (1 <= m.c_t_per_layer).all() and (m.c_t_per_layer <= k).all()
    assert 1 <= m.root_replicas <= m.c_t
    assert 0 <= m.cross_group_fraction <= m.cross_chiplet_fraction <= 1
    assert m.chiplet_imbalance >= 1 and m.group_imbalance >= 1
    assert m.chiplet_tokens.sum() == round(m.c_t * trace.tokens * trace.layers)
    assert placement_metrics(trace, placement, cfg, dedup=False).c_t == k
    if cfg.experts_per_chiplet == 1:
        assert m.c_t == k
    replicas = replicas_per_token(trace.experts[0], placement.expert_to_chiplet[0])
    assert m.c_t_per_layer[0] == replicas.sum() / trace.tokens == layer_c_t(trace.experts[0],
                                                                           placement.expert_to_chiplet[0])
    # Renumber the chiplets within each group: every scalar metric stays the same.
    per = cfg.chiplets_per_group
    relabel = np.concatenate([g * per + rng.permutation(per) for g in range(cfg.groups)])
    renumbered = placement_metrics(trace, Placement(relabel[placement.expert_to_chiplet], per), cfg)
    for name in SCALARS:
        assert getattr(renumbered, name) == pytest.approx(getattr(m, name), rel=1e-12), name
