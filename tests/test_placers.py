"""Placement algorithms: invariants of every method, exactness, refinement, and the paper's claims.

Claims measured on synthetic traces are checked on *held-out* tokens (placed on one half of a trace,
measured on the other), so an algorithm cannot look good by fitting the noise of the tokens it saw.
"""

import itertools
import math
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mozart.model.config import load_config, override
from mozart.model.errors import PlacementError, TraceError
from mozart.model.metrics import expected_distinct_chiplets, layer_c_t, replicas_per_token
from mozart.model.placers import PLACERS, LayerData, place, place_layer
from mozart.model.placers.allocation import (allocate_groups, allocate_groups_exact, allocate_groups_greedy,
                                             allocation_deviation, clusters_to_chiplets)
from mozart.model.placers.clustering import cluster_experts
from mozart.model.placers.exact import optimal_clusters
from mozart.model.placers.partition import repair_sizes
from mozart.model.placers import refine as refine_module
from mozart.model.placers.refine import SwapSearch, refine_clusters
from mozart.model.placers.subsets import best_partition, subset_masks
from mozart.model.synth import synthesize, synthesize_for
from mozart.model.trace import Trace


def wafer(groups, per_group, experts, top_k, base="tiny"):
    return override(load_config(base), {"tree.groups": groups, "tree.chiplets_per_group": per_group,
                                        "moe.experts": experts, "moe.top_k": top_k})


def random_trace(experts, top_k, tokens, seed, layers=1):
    rng = np.random.default_rng(seed)
    ids = np.argsort(rng.random((layers, tokens, experts)), axis=-1)[..., :top_k]
    return Trace(ids.astype(np.int32), np.ones(ids.shape, np.float32), experts, "random test trace")


def split(trace):
    """(first half, second half) of the tokens."""
    half = trace.tokens // 2
    first = Trace(trace.experts[:, :half], trace.weights[:, :half], trace.num_experts, "placing half")
    second = Trace(trace.experts[:, half:], trace.weights[:, half:], trace.num_experts, "held-out half")
    return first, second


def partitions(items, size):
    """Every partition of ``items`` into unlabeled blocks of ``size``."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for combo in itertools.combinations(rest, size - 1):
        left = [i for i in rest if i not in combo]
        for tail in partitions(left, size):
            yield [(first, *combo), *tail]


# --- every method --------------------------------------------------------------------------------------------

@st.composite
def instances(draw):
    groups = draw(st.integers(1, 3))
    per_group = draw(st.integers(1, 3))
    per_chiplet = draw(st.integers(1, 3))
    experts = groups * per_group * per_chiplet
    top_k = draw(st.integers(1, min(experts, 4)))
    tokens = draw(st.integers(0, 40))
    return wafer(groups, per_group, experts, top_k), random_trace(experts, top_k, tokens, draw(st.integers(0, 99)), 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.sampled_from(list(PLACERS)), st.integers(0, 3))
def test_every_method_places_every_expert_once_in_equal_clusters(instance, method, seed):
    cfg, trace = instance
    if method == "exact" and cfg.moe.experts > 12:
        method = "mozart+refine"  # exact is exercised below; keep this test fast
    placement = place(trace, cfg, method, seed=seed)
    placement.validate(cfg)  # every expert on a chiplet in range, every chiplet equally full
    assert placement.expert_to_chiplet.shape == (trace.layers, cfg.moe.experts)
    for layer in range(trace.layers):
        counts = np.bincount(placement.expert_to_chiplet[layer], minlength=cfg.chiplets)
        assert (counts == cfg.experts_per_chiplet).all()
        if trace.tokens:
            assert 1 <= layer_c_t(trace.experts[layer], placement.expert_to_chiplet[layer]) <= cfg.moe.top_k
    again = place(trace, cfg, method, seed=seed)
    assert np.array_equal(placement.expert_to_chiplet, again.expert_to_chiplet)  # seeded, deterministic


def test_unknown_method_and_misfit_trace_are_clear_errors():
    cfg = load_config("tiny")
    trace = random_trace(8, 2, 10, 0)
    with pytest.raises(PlacementError, match=r"placement method must be one of .* not 'nope'"):
        place(trace, cfg, "nope")
    with pytest.raises(TraceError, match="moe.top_k = 2"):
        place(random_trace(8, 3, 10, 0), cfg, "mozart")
    big = load_config("qwen3-30b-a3b")
    with pytest.raises(PlacementError, match="'exact' needs at most 16 experts per layer, not 128"):
        place(random_trace(128, 8, 10, 0), big, "exact")


# --- Algorithm 1 -----------------------------------------------------------------------------------------------

def hidden_blocks(experts, size, seed, strong=100, weak=1):
    """A co-activation matrix with blocks of ``size`` hidden by a random numbering."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(experts)
    block = np.empty(experts, int)
    block[perm] = np.arange(experts) // size
    coact = np.where(block[:, None] == block[None, :], strong, weak) + rng.integers(0, 3, (experts, experts))
    coact = np.triu(coact, 1)
    return coact + coact.T, block


@pytest.mark.parametrize("experts,clusters", [(16, 4), (64, 16), (128, 16), (12, 3)])
def test_algorithm1_recovers_hidden_blocks(experts, clusters):
    coact, block = hidden_blocks(experts, experts // clusters, seed=experts)
    labels = cluster_experts(coact, clusters)
    assert np.bincount(labels).tolist() == [experts // clusters] * clusters
    for c in range(clusters):  # every cluster is exactly one hidden block
        assert len(set(block[labels == c])) == 1


def test_algorithm1_seeds_with_most_coactivated_pair_and_breaks_ties_by_lowest_id():
    coact, _ = hidden_blocks(16, 4, seed=3)
    i, j = np.unravel_index(np.argmax(np.triu(coact, 1)), coact.shape)
    labels = cluster_experts(coact, 4)
    assert labels[i] == labels[j] == 0
    # No co-activation at all: every choice is a tie, so clusters are consecutive ids.
    assert cluster_experts(np.zeros((8, 8), int), 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert cluster_experts(np.zeros((4, 4), int), 4).tolist() == [0, 1, 2, 3]  # clusters of one expert


def test_algorithm1_seed_aggregates_differ_as_documented():
    coact = np.zeros((6, 6), int)
    coact[0, 1] = 9  # cluster 0 = {0, 1}
    coact[0, 2] = 5  # expert 2: sum 5, max 5
    coact[0, 3] = coact[1, 3] = 3  # expert 3: sum 6, max 3
    coact[0, 4] = coact[0, 5] = 6  # experts 4, 5: sum 6, max 6
    coact[3, 4] = 1  # seed 3 grows with 4
    coact = coact + coact.T
    assert cluster_experts(coact, 3).tolist() == [0, 0, 1, 1, 2, 2]  # sum: seed 2, grows with lowest id 3
    assert cluster_experts(coact, 3, seed_aggregate="max").tolist() == [0, 0, 2, 1, 1, 2]  # max: seed 3


@pytest.mark.parametrize("args,message", [
    ((np.zeros((6, 6)), 4), "clusters must be a positive divisor of the expert count \\(6\\), not 4"),
    ((np.zeros((6, 5)), 2), "must be a square"),
])
def test_algorithm1_bad_input(args, message):
    with pytest.raises(PlacementError, match=message):
        cluster_experts(*args)
    with pytest.raises(PlacementError, match="seed_aggregate must be one of sum, max, not 'mean'"):
        cluster_experts(np.zeros((4, 4)), 2, seed_aggregate="mean")


# --- allocation ------------------------------------------------------------------------------------------------

def brute_force_deviation(loads, groups):
    target = loads.sum() / groups
    return min(max(abs(loads[list(b)].sum() - target) for b in p)
               for p in partitions(list(range(len(loads))), len(loads) // groups))


@pytest.mark.parametrize("clusters,groups", [(8, 4), (9, 3), (12, 3), (6, 2), (12, 4)])
def test_exact_allocation_matches_brute_force(clusters, groups):
    rng = np.random.default_rng(clusters * groups)
    for concentration in (0.3, 1.0, 5.0):
        loads = rng.dirichlet(np.full(clusters, concentration))
        best = brute_force_deviation(loads, groups)
        dp, mip = allocate_groups_exact(loads, groups, "dp"), allocate_groups_exact(loads, groups, "milp")
        greedy = allocate_groups_greedy(loads, groups)
        for group_of in (dp, mip, greedy):
            assert np.bincount(group_of, minlength=groups).tolist() == [clusters // groups] * groups
        assert allocation_deviation(loads, dp, groups) == pytest.approx(best, abs=1e-12)
        assert allocation_deviation(loads, mip, groups) == pytest.approx(best, abs=1e-9)
        assert allocation_deviation(loads, greedy, groups) >= best - 1e-12


@pytest.mark.parametrize("n,size", [(8, 4), (9, 3), (8, 2), (6, 1), (12, 4), (6, 6)])
def test_subset_dp_matches_brute_force(n, size):
    masks = subset_masks(n, size)
    index = {int(m): i for i, m in enumerate(masks)}
    rng = np.random.default_rng(n * size)
    for aggregate, combine in (("sum", sum), ("max", max)):
        cost = rng.integers(0, 20, len(masks)).astype(float)  # small integers: many ties
        labels, value = best_partition(cost, n, size, aggregate)
        def block_cost(block):
            return cost[index[sum(1 << int(e) for e in block)]]
        assert value == min(combine(map(block_cost, p)) for p in partitions(list(range(n)), size))
        assert value == combine(block_cost(np.flatnonzero(labels == b)) for b in range(n // size))
        assert labels[0] == 0 and np.bincount(labels).tolist() == [size] * (n // size)


def test_allocation_above_the_exact_limit_uses_the_heuristic():
    loads = np.random.default_rng(0).dirichlet(np.ones(128))
    group_of = allocate_groups(loads, 16)  # 2048 binaries: heuristic
    assert np.bincount(group_of).tolist() == [8] * 16
    assert allocation_deviation(loads, group_of, 16) < 0.01


def test_clusters_to_chiplets_orders_groups_and_chiplets_by_load():
    cfg = wafer(2, 2, 8, 2)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    freq = np.array([0.3, 0.2, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1])  # cluster loads 0.5, 0.1, 0.2, 0.2
    e2c = clusters_to_chiplets(labels, freq, cfg)
    assert np.bincount(e2c).tolist() == [2, 2, 2, 2]
    group_load = np.bincount(e2c // 2, weights=freq)
    assert group_load[0] >= group_load[1]  # groups by descending load
    chip_load = np.bincount(e2c, weights=freq)
    assert chip_load[0] >= chip_load[1] and chip_load[2] >= chip_load[3]  # heaviest cluster first in a group
    assert allocation_deviation(np.bincount(labels, weights=freq), e2c[::2] // 2, 2) == pytest.approx(0.1)
    with pytest.raises(PlacementError, match=r"clusters must be 4 clusters of 2 experts, not sizes \[3, 1, 2, 2\]"):
        clusters_to_chiplets(np.array([0, 0, 0, 1, 2, 2, 3, 3]), freq, cfg)
    with pytest.raises(PlacementError, match="groups must be a positive divisor of the cluster count \\(6\\), not 4"):
        allocate_groups(np.ones(6), 4)
    with pytest.raises(PlacementError, match="solver must be one of auto, dp, milp, not 'cplex'"):
        allocate_groups_exact(np.ones(4), 2, "cplex")


# --- refinement ------------------------------------------------------------------------------------------------

def replicas(experts, labels):
    return int(replicas_per_token(experts, labels).sum())


def test_incremental_deltas_equal_full_recomputation():
    trace = synthesize(12, 3, 1, 300, seed=5, groups_of=3)
    experts = trace.experts[0]
    labels = np.arange(12) % 4
    search = SwapSearch(experts, labels, 4)
    deltas = search.all_deltas()
    base = replicas(experts, labels)
    for a, b in itertools.combinations(range(12), 2):
        swapped = labels.copy()
        swapped[[a, b]] = swapped[[b, a]]
        truth = replicas(experts, swapped) - base
        if labels[a] == labels[b]:
            assert deltas[a, b] == np.inf
        else:
            assert deltas[a, b] == truth and search.delta(a, b) == truth


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 60), st.integers(0, 1000),
       st.sampled_from([4, refine_module.SAMPLE_TOKENS]))
def test_refine_never_worsens_and_keeps_sizes(clusters, size, top_k, tokens, seed, sample_tokens):
    """With a tiny sample size the sampled proposals and the all-token certification are exercised too."""
    experts = clusters * size
    top_k = min(top_k, experts)
    trace = random_trace(experts, top_k, tokens, seed)
    start = np.random.default_rng(seed).permutation(experts) // size
    with patch.object(refine_module, "SAMPLE_TOKENS", sample_tokens):
        refined = refine_clusters(trace.experts[0], start, clusters)
    assert np.bincount(refined, minlength=clusters).tolist() == [size] * clusters
    assert replicas(trace.experts[0], refined) <= replicas(trace.experts[0], start)
    # A local optimum: no single swap helps any more.
    search = SwapSearch(trace.experts[0], refined, clusters)
    assert not (search.all_deltas() < 0).any()


# --- exact optimum ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("experts,clusters,top_k", [(8, 4, 2), (8, 2, 3), (9, 3, 2), (6, 3, 3)])
def test_exact_optimum_matches_exhaustive_enumeration(experts, clusters, top_k):
    trace = synthesize(experts, top_k, 1, 200, seed=experts + top_k, groups_of=experts // clusters)
    tokens = trace.experts[0]
    labels, total = optimal_clusters(tokens, experts, clusters)
    assert np.bincount(labels).tolist() == [experts // clusters] * clusters
    assert replicas(tokens, labels) == total
    best = math.inf
    for p in partitions(list(range(experts)), experts // clusters):
        lab = np.empty(experts, int)
        for c, block in enumerate(p):
            lab[list(block)] = c
        best = min(best, replicas(tokens, lab))
    assert total == best


def test_exact_is_a_lower_bound_for_every_method():
    cfg = wafer(2, 2, 16, 4, base="wafer4x4")
    trace = synthesize(16, 4, 1, 400, seed=1, groups_of=4)
    data = LayerData(trace, 0)
    c_t = {m: layer_c_t(data.experts, place_layer(data, cfg, m)) for m in PLACERS}
    assert all(c_t["exact"] <= v + 1e-12 for v in c_t.values())


# --- METIS repair ----------------------------------------------------------------------------------------------

def test_metis_repair_makes_parts_equal_losing_least_weight():
    weights, _ = hidden_blocks(8, 4, seed=2)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    repaired = repair_sizes(labels, weights, 2)
    assert np.bincount(repaired).tolist() == [4, 4]
    moved = np.flatnonzero(repaired != labels)
    assert len(moved) == 1  # one move fixes a size difference of two
    def gain(e):
        return weights[e, repaired == 1].sum() - weights[e, (labels == 0) & (np.arange(8) != e)].sum()
    assert gain(moved[0]) == max(gain(e) for e in range(5))


# --- the paper's claims on the three shapes ---------------------------------------------------------------------

PAPER_SHAPES = ["qwen3-30b-a3b", "olmoe-1b-7b", "deepseek-moe-16b"]


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_structured_traces_mozart_beats_contiguous_and_refine_beats_mozart(name):
    cfg = override(load_config(name), {"moe.layers": 2})
    fit, held_out = split(synthesize_for(cfg, 8192, seed=11))
    c_t = {}
    for method in ("contiguous", "mozart", "mozart+refine"):
        placement = place(fit, cfg, method)
        c_t[method] = {part: np.mean([layer_c_t(t.experts[layer], placement.expert_to_chiplet[layer])
                                      for layer in range(2)])
                       for part, t in (("fit", fit), ("held-out", held_out))}
    for part in ("fit", "held-out"):
        assert c_t["mozart"][part] < c_t["contiguous"][part] - 0.2, c_t
    assert c_t["mozart+refine"]["fit"] <= c_t["mozart"]["fit"]  # guaranteed on the tokens it saw
    assert c_t["mozart+refine"]["held-out"] < c_t["mozart"]["held-out"] + 0.02, c_t


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_uniform_traces_no_method_beats_chance_beyond_noise(name):
    """Under uniform routing every layout fixed before the tokens arrive has expected C_T equal to the
    chance value E[distinct chiplets] (metrics.expected_distinct_chiplets). Measured on held-out tokens, a
    method's C_T is a mean of T i.i.d. per-token counts, so its noise is std/sqrt(T); no method may beat
    chance by more than 4 standard errors."""
    cfg = override(load_config(name), {"moe.layers": 1})
    fit, held_out = split(synthesize_for(cfg, 8192, seed=5, structured=False))
    chance = expected_distinct_chiplets(cfg.moe.experts, cfg.moe.top_k, cfg.chiplets)
    for method in [m for m in PLACERS if m != "exact"]:
        e2c = place(fit, cfg, method).expert_to_chiplet[0]
        per_token = replicas_per_token(held_out.experts[0], e2c)
        noise = per_token.std(ddof=1) / math.sqrt(per_token.size)
        assert per_token.mean() > chance - 4 * noise, (method, per_token.mean(), chance, noise)
