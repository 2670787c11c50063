"""The synthetic trace generator: exact Plackett-Luce sampling, the knobs' effects, drift, presets, errors."""

import itertools

import numpy as np
import pytest

from mozart.model import synth
from mozart.model.config import load_config
from mozart.model.errors import TraceError
from mozart.model.stats import activation_frequency
from mozart.model.synth import (SYNTH_PRESETS, expert_groups, synthesize, synthesize_for, synthesize_preset,
                                synthesize_uniform)


def _popularity(e, skew, seed, layer=0):
    log_pop = synth._structure(seed, layer, 0, e, skew, 1, 0.0)[0]
    p = np.exp(log_pop)
    return p / p.sum()


def test_seeded_and_layers_independent():
    a = synthesize(32, 4, 3, 500, seed=1)
    b = synthesize(32, 4, 3, 500, seed=1)
    np.testing.assert_array_equal(a.experts, b.experts)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.experts, synthesize(32, 4, 3, 500, seed=2).experts)
    np.testing.assert_array_equal(synthesize(32, 4, 1, 500, seed=1).experts[0], a.experts[0])


def test_shape_and_gates():
    t = synthesize(64, 6, 2, 1000, seed=3)
    assert t.experts.shape == (2, 1000, 6) and t.experts.dtype == np.int32 and t.weights.dtype == np.float32
    np.testing.assert_allclose(t.weights.sum(axis=2), 1, rtol=1e-5)  # renormalised over the top-k
    assert (np.diff(t.weights, axis=2) <= 0).all()  # router order: highest gate first
    assert (t.weights > 0).all()
    assert synthesize(8, 2, 1, 0, seed=0).tokens == 0


def test_ordered_picks_are_exactly_plackett_luce():
    # Strong skew on 6 experts: many tokens repeat within their 2k draws and finish by the Gumbel continuation.
    e, k, n = 6, 3, 120_000
    t = synthesize(e, k, 1, n, seed=4, skew=1.5, coactivation=0.0, drift=0.0)
    p = _popularity(e, 1.5, 4)
    observed = {}
    for row, count in zip(*np.unique(t.experts[0], axis=0, return_counts=True)):
        observed[tuple(row)] = count
    for i, j, m in itertools.permutations(range(e), 3):
        prob = p[i] * p[j] / (1 - p[i]) * p[m] / (1 - p[i] - p[j])
        sigma = np.sqrt(n * prob * (1 - prob))
        assert abs(observed.get((i, j, m), 0) - n * prob) < 5 * sigma + 1, (i, j, m)


def test_gates_follow_the_perturbed_logits():
    # Direct simulation of R(x) = top-k of softmax(log p + Gumbel), renormalised, against the generator.
    e, k, n = 5, 2, 100_000
    p = _popularity(e, 1.0, 9)
    rng = np.random.default_rng(0)
    z = np.log(p) + rng.gumbel(size=(n, e))
    top = np.sort(z, axis=1)[:, ::-1][:, :k]
    direct = np.exp(top - top[:, :1])
    direct = direct[:, 0] / direct.sum(axis=1)
    generated = synthesize(e, k, 1, n, seed=9, skew=1.0, coactivation=0.0, drift=0.0).weights[0, :, 0]
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert np.quantile(generated, q) == pytest.approx(np.quantile(direct, q), abs=0.01)


def test_uniform_routing_is_uniform():
    t = synthesize_uniform(16, 4, 1, 40_000, seed=5)
    counts = np.bincount(t.experts[0].ravel(), minlength=16)
    expected = 40_000 * 4 / 16
    assert ((counts - expected) ** 2 / expected).sum() < 50  # chi-square, 15 dof: mean 15
    first = np.bincount(t.experts[0, :, 0], minlength=16)
    assert ((first - 2500) ** 2 / 2500).sum() < 50


def test_skew_makes_popularity_uneven():
    spread = [activation_frequency(synthesize(64, 4, 1, 20_000, seed=6, skew=s, coactivation=0, drift=0), 0).max() * 64
              for s in (0.0, 0.5, 1.0)]
    assert spread[0] < 1.15 < spread[1] < spread[2]


def _same_group_share(trace, seed, groups_of):
    group = expert_groups(trace.num_experts, seed=seed, groups_of=groups_of)[trace.experts[0]]
    pairs = list(itertools.combinations(range(trace.top_k), 2))
    return np.mean([(group[:, a] == group[:, b]).mean() for a, b in pairs])


def test_coactivation_strength_groups_experts():
    e, s = 32, 4
    shares = [_same_group_share(synthesize(e, 4, 1, 20_000, seed=7, skew=0, coactivation=c, groups_of=s), 7, s)
              for c in (0.0, 0.3, 0.7, 1.0)]
    assert shares[0] == pytest.approx((s - 1) / (e - 1), abs=0.01)  # independent: chance
    assert shares[0] < shares[1] < shares[2] < shares[3]
    assert shares[3] == 1.0  # every token stays in its group when the group holds k experts
    assert _same_group_share(synthesize(e, 4, 1, 20_000, seed=7, skew=0, coactivation=0, groups_of=s), 8, s) < 0.2


def test_groups_smaller_than_k_and_large_k():
    t = synthesize(16, 4, 1, 2000, seed=1, coactivation=1.0, groups_of=2)
    assert (expert_groups(16, seed=1, groups_of=2)[t.experts[0, :, :2]] ==
            expert_groups(16, seed=1, groups_of=2)[t.experts[0, :, :1]]).all()
    big = synthesize(64, 20, 1, 500, seed=2)  # above the draw method's k: exact Gumbel top-k for all
    assert (np.sort(big.experts[0], axis=1)[:, 1:] != np.sort(big.experts[0], axis=1)[:, :-1]).all()


def _kept_partners(seed, a, b, drift):
    ga = expert_groups(64, seed=seed, groups_of=8, drift=drift, step=a)
    gb = expert_groups(64, seed=seed, groups_of=8, drift=drift, step=b)
    same_a, same_b = ga[:, None] == ga[None, :], gb[:, None] == gb[None, :]
    return (same_a & same_b).sum() / same_a.sum()


def test_drift_is_slow_and_optional():
    assert _kept_partners(3, 0, 5000, 0.0) == 1.0
    near, far = _kept_partners(3, 0, 1, 0.3), np.mean([_kept_partners(s, 0, 1000, 0.3) for s in range(5)])
    assert near > 0.95 and far < near
    v0 = activation_frequency(synthesize(64, 4, 1, 30_000, seed=3, drift=0.3, step=0), 0)
    v1 = activation_frequency(synthesize(64, 4, 1, 30_000, seed=3, drift=0.3, step=1), 0)
    v_far = activation_frequency(synthesize(64, 4, 1, 30_000, seed=3, drift=0.3, step=400), 0)
    assert np.corrcoef(v0, v1)[0, 1] > np.corrcoef(v0, v_far)[0, 1]
    assert not np.array_equal(synthesize(16, 2, 1, 50, seed=3, step=0).experts,
                              synthesize(16, 2, 1, 50, seed=3, step=1).experts)  # fresh tokens per step


@pytest.mark.parametrize("name,shape", [("qwen3-30b-a3b", (128, 8, 48)), ("olmoe-1b-7b", (64, 8, 16)),
                                        ("deepseek-moe-16b", (64, 6, 28))])
def test_presets_have_the_paper_shapes(name, shape):
    spec = SYNTH_PRESETS[name]
    cfg = load_config(name)
    assert (spec.num_experts, spec.top_k, spec.layers) == shape == (cfg.moe.experts, cfg.moe.top_k, cfg.moe.layers)
    assert spec.groups_of == cfg.experts_per_chiplet
    t = synthesize_preset(name, 10, seed=0)
    assert (t.num_experts, t.top_k, t.layers) == shape


def test_synthesize_for_a_config():
    cfg = load_config("tiny")
    t = synthesize_for(cfg, 100, seed=1)
    assert (t.num_experts, t.top_k, t.layers, t.tokens) == (8, 2, 2, 100)
    np.testing.assert_array_equal(synthesize_for(cfg, 100, 1, structured=False).experts,
                                  synthesize_uniform(8, 2, 2, 100, seed=1).experts)
    assert synthesize_for(cfg, 10, 1, coactivation=0.9).source.count("coactivation=0.9") == 1
    with pytest.raises(TraceError, match=r"knobs must be .*, not \['temperature'\]"):
        synthesize_for(cfg, 10, 1, temperature=2)
    with pytest.raises(TraceError, match="synthetic preset must be one of"):
        synthesize_preset("gpt-5", 10, 0)


@pytest.mark.parametrize("kwargs,message", [
    ({"top_k": 9}, "top_k must be an integer in 1..num_experts (8), not 9"),
    ({"tokens": -1}, "tokens must be a non-negative integer, not -1"),
    ({"seed": -3}, "seed must be a non-negative integer, not -3"),
    ({"coactivation": 1.5}, "coactivation must be between 0 and 1, not 1.5"),
    ({"skew": float("nan")}, "skew must be a finite number >= 0, not nan"),
    ({"groups_of": 0}, "groups_of must be an integer in 1..num_experts (8), not 0"),
    ({"step": 2.5}, "step must be a non-negative integer, not 2.5"),
    ({"drift": "0.1"}, "drift must be a finite number >= 0, not '0.1'"),
])
def test_bad_knobs_are_named(kwargs, message):
    args = {"num_experts": 8, "top_k": 2, "layers": 1, "tokens": 10, "seed": 0} | kwargs
    with pytest.raises(TraceError, match="synthetic trace: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        synthesize(args.pop("num_experts"), args.pop("top_k"), args.pop("layers"), args.pop("tokens"), **args)
