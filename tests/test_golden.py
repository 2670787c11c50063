"""The golden fixed-point arithmetic (mozart.model.golden) against literal, scalar re-statements of its rules."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mozart.model import golden
from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.protocol import Protocol, unpack_elements

TINY = load_config("tiny")


# -- literal scalar definitions (Python ints and Fractions: no shifts, no numpy) -------------------------------
def clamp(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def round_half_away(q: Fraction) -> int:
    mag = math.floor(abs(q) + Fraction(1, 2))
    return mag if q >= 0 else -mag


def ref_ffn(x, w1, w2, cfg):
    num = cfg.numerics
    table = golden.activation_table(cfg)
    h = []
    for row in w1:
        acc = clamp(sum(int(a) * int(b) for a, b in zip(row, x)), num.acc_bits)
        v = clamp(round_half_away(Fraction(acc, 1 << num.hidden_shift)), num.act_bits)
        h.append(max(v, 0) if table is None else table[v % (1 << num.act_bits)])
    y = []
    for row in w2:
        acc = clamp(sum(int(a) * int(b) for a, b in zip(row, h)), num.acc_bits)
        y.append(clamp(round_half_away(Fraction(acc, 1 << num.output_shift)), num.act_bits))
    return y, h


def ref_partial(x, w1s, w2s, mask, gates, cfg):
    pb = cfg.numerics.partial_bits
    p = [0] * len(x)
    for e in range(len(w1s)):
        if mask[e]:
            y, _ = ref_ffn(x, w1s[e], w2s[e], cfg)
            p = [clamp(a + clamp(int(gates[e]) * b, pb), pb) for a, b in zip(p, y)]
    return p


numerics = st.fixed_dictionaries({
    "numerics.act_bits": st.sampled_from([4, 6, 8]),
    "numerics.weight_bits": st.sampled_from([4, 8]),
    "numerics.gate_bits": st.sampled_from([1, 4, 8]),
    "numerics.hidden_shift": st.integers(0, 9),
    "numerics.output_shift": st.integers(0, 9),
    "numerics.activation": st.sampled_from(["relu", "silu", "gelu"]),
    "acc_extra": st.integers(0, 8),
    "partial_extra": st.integers(0, 12),
})


def make_cfg(d):
    d = dict(d)
    acc = max(8, d["numerics.act_bits"] + d["numerics.weight_bits"] + d.pop("acc_extra"))
    part = max(8, d["numerics.act_bits"] + d.pop("partial_extra"))
    return override(TINY, {**d, "numerics.acc_bits": acc, "numerics.partial_bits": part})


def rails_or_random(rng, shape, bits, mode):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if mode == "min":
        return np.full(shape, lo)
    if mode == "max":
        return np.full(shape, hi)
    if mode == "mixed":
        return np.where(rng.random(shape) < 0.5, lo, hi)
    return rng.integers(lo, hi + 1, shape)


# -- elementary operations ------------------------------------------------------------------------------------
@given(st.integers(2, 62).flatmap(lambda b: st.tuples(
    st.just(b), st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1), st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1))))
def test_saturating_add_is_the_clamped_sum(args):
    bits, a, b = args
    got = golden.saturating_add(np.array([a]), np.array([b]), bits)
    assert got.dtype == np.int64 and int(got[0]) == clamp(a + b, bits)


def test_reduce_partials_saturates_once_whatever_the_order():
    hi = 2**7 - 1
    partials = np.array([[hi], [hi], [-hi]])
    # a chain of two-operand saturating adds depends on the order once it clamps ...
    chain = lambda ps: golden.saturating_add(golden.saturating_add(ps[0], ps[1], 8), ps[2], 8)  # noqa: E731
    assert chain(partials).tolist() != chain(partials[::-1]).tolist()
    # ... the reduction of the switch and the root does not
    assert golden.reduce_partials(partials, 8).tolist() == [hi] == golden.reduce_partials(partials[::-1], 8).tolist()
    assert golden.reduce_partials([[hi], [hi]], 8).tolist() == [hi]
    with pytest.raises(ValueError, match="at least one partial"):
        golden.reduce_partials(np.zeros((0, 3)), 8)


def test_saturating_add_rails_and_arrays():
    hi, lo = 2**31 - 1, -2**31
    a = np.array([hi, lo, hi, lo, 5])
    b = np.array([1, -1, lo, hi, -7])
    assert golden.saturating_add(a, b, 32).tolist() == [hi, lo, -1, -1, -2]
    with pytest.raises(ValueError, match="bits must be between 1 and 62, not 63"):
        golden.saturating_add(a, b, 63)


@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, 20))
def test_rshift_round_is_half_away_from_zero(v, s):
    assert int(golden.rshift_round(np.array([v]), s)[0]) == round_half_away(Fraction(v, 1 << s))


def test_rshift_round_ties():
    assert golden.rshift_round(np.array([3, -3, 1, -1, 5, -5, 6, -6]), 1).tolist() == [2, -2, 1, -1, 3, -3, 3, -3]
    assert golden.rshift_round(np.array([6, -6, 5, -5]), 2).tolist() == [2, -2, 1, -1]


def test_exact_accumulator_width_holds_the_worst_dot_product():
    for n in (1, 2, 3, 8, 100, 2048):
        bits = golden.exact_acc_bits(TINY, n)
        worst = n * 128 * 128
        assert worst <= (1 << (bits - 1)) - 1
        assert -n * 128 * 127 >= -(1 << (bits - 1))


# -- the expert FFN and the partial ----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(numerics, st.integers(0, 2**32 - 1), st.sampled_from(["random", "min", "max", "mixed"]))
def test_expert_ffn_and_partial_match_the_literal_rules(d, seed, mode):
    cfg = make_cfg(d)
    num, moe = cfg.numerics, cfg.moe
    rng = np.random.default_rng(seed)
    E = 2
    x = rails_or_random(rng, moe.d_model, num.act_bits, mode)
    w1s = rails_or_random(rng, (E, moe.d_ff, moe.d_model), num.weight_bits, mode)
    w2s = rails_or_random(rng, (E, moe.d_model, moe.d_ff), num.weight_bits, mode)
    gates = rng.integers(0, 1 << num.gate_bits, E) if mode == "random" else np.full(E, (1 << num.gate_bits) - 1)
    mask = rng.integers(0, 2, E)
    y, h = golden.expert_ffn(x, w1s[0], w2s[0], cfg, return_hidden=True)
    ry, rh = ref_ffn(x, w1s[0], w2s[0], cfg)
    assert y.tolist() == ry and h.tolist() == rh
    assert golden.chiplet_partial(x, (w1s, w2s), mask, gates, cfg).tolist() == ref_partial(x, w1s, w2s, mask, gates,
                                                                                           cfg)


def test_saturation_at_every_stage():
    # accumulator: 8 products of (-128)(-128) = 131072 saturate to acc_bits 16 (32767), hidden 32767/128 -> 127
    cfg = override(TINY, {"numerics.acc_bits": 16})
    x = np.full(8, -128)
    w1 = np.full((16, 8), -128)
    acc_only = golden.expert_hidden(x, w1, cfg)
    assert acc_only.tolist() == [127] * 16                          # acc and hidden saturate
    wide = golden.expert_hidden(x, w1, TINY)
    assert wide.tolist() == [127] * 16                              # hidden alone saturates (131072/128 = 1024)
    w2 = np.full((8, 16), -128)
    y = golden.expert_ffn(x, w1, w2, TINY)
    assert y.tolist() == [-128] * 8                                 # output saturates low: 16*127*-128/128
    # gate product: 255 * -128 saturates at partial_bits 12; local sum of two experts saturates too
    small = override(TINY, {"numerics.partial_bits": 12})
    assert golden.gate_products(np.array([-128, 127]), 255, small).tolist() == [-2048, 2047]
    p = golden.chiplet_partial(x, (np.stack([w1, w1]), np.stack([w2, -w2 - 1])), [1, 1], [255, 255], small)
    # expert 0 gives -128 -> -2048 (saturated); expert 1 gives +127 -> 2047: sum -1, nothing lost
    assert p.tolist() == [-1] * 8
    p = golden.chiplet_partial(x, (np.stack([w1, w1]), np.stack([w2, w2])), [1, 1], [255, 255], small)
    assert p.tolist() == [-2048] * 8                                # the sum saturates as well


def test_empty_mask_gives_a_zero_partial_and_ranges_are_checked():
    rng = np.random.default_rng(0)
    w1s = rng.integers(-128, 128, (2, 16, 8))
    w2s = rng.integers(-128, 128, (2, 8, 16))
    assert golden.chiplet_partial(np.ones(8, int), (w1s, w2s), [0, 0], [9, 9], TINY).tolist() == [0] * 8
    with pytest.raises(ValueError, match="x must be signed 8-bit values .* not 128"):
        golden.expert_ffn(np.full(8, 128), w1s[0], w2s[0], TINY)
    with pytest.raises(ValueError, match="gates must be unsigned 8-bit values .* not 256"):
        golden.chiplet_partial(np.ones(8, int), (w1s, w2s), [1, 1], [256, 0], TINY)


def test_partial_is_vectorised_over_tokens():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (5, 8))
    w1s = rng.integers(-128, 128, (2, 16, 8))
    w2s = rng.integers(-128, 128, (2, 8, 16))
    mask = rng.integers(0, 2, (5, 2))
    gates = rng.integers(0, 256, (5, 2))
    batch = golden.chiplet_partial(x, (w1s, w2s), mask, gates, TINY)
    for t in range(5):
        assert batch[t].tolist() == ref_partial(x[t], w1s, w2s, mask[t], gates[t], TINY)


# -- activation tables ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["silu", "gelu"])
def test_activation_tables(kind):
    cfg = override(TINY, {"numerics.activation": kind})
    table = golden.activation_table(cfg)
    frac = golden.formats(cfg).h
    assert len(table) == 256 and table[0] == 0
    f = {"silu": lambda t: t / (1 + math.exp(-t)), "gelu": lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2)))}[kind]
    for code in range(256):
        v = code - 256 if code >= 128 else code
        exact = f(v / 2**frac) * 2**frac
        assert abs(table[code] - exact) <= 0.5 + 1e-9, (code, table[code], exact)
    assert golden.activate(np.array([127, -128, 0]), cfg).tolist() == [table[127], table[128], 0]
    assert golden.activation_table(TINY) is None
    assert golden.activate(np.array([-5, 0, 7]), TINY).tolist() == [0, 0, 7]


# -- whole layer -------------------------------------------------------------------------------------------
def test_moe_layer_is_the_sum_of_chiplet_partials_in_any_order():
    cfg = TINY
    rng = np.random.default_rng(2)
    T = 20
    x = rng.integers(-128, 128, (T, 8))
    w1 = rng.integers(-128, 128, (8, 16, 8))
    w2 = rng.integers(-128, 128, (8, 8, 16))
    experts = np.array([rng.choice(8, 2, replace=False) for _ in range(T)])
    gates = rng.integers(0, 256, (T, 2))
    e2c = rng.permutation(np.repeat(np.arange(4), 2))
    out = golden.moe_layer(x, w1, w2, experts, gates, e2c, cfg)
    assert golden.reduction_is_exact(cfg)
    # exact reduction: the plain integer sum of per-expert gated outputs
    for t in range(T):
        total = np.zeros(8, dtype=np.int64)
        for e, g in zip(experts[t], gates[t]):
            total += g * golden.expert_ffn(x[t], w1[e], w2[e], cfg)
        assert out[t].tolist() == total.tolist()


def test_reduction_exactness_rule():
    assert golden.reduction_is_exact(TINY)                          # 8 + 8 + 1 <= 32
    assert not golden.reduction_is_exact(override(TINY, {"numerics.partial_bits": 16}))


# -- quantisation, images and saving -------------------------------------------------------------------------
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=20))
def test_quantise_round_trip_within_half_an_lsb(values):
    q = golden.quantise(values, 8, 4)
    back = golden.dequantise(q, 4)
    for v, b in zip(values, back):
        if -8 <= v <= 127 / 16:
            assert abs(v - b) <= 1 / 32 + 1e-12
        else:
            assert b in (-8.0, 127 / 16)


def test_expert_image_layout():
    cfg = override(TINY, {"dram.word_bits": 32, "moe.d_ff": 12})     # two words a flit, W1 ends mid-flit
    proto = Protocol(cfg)
    rng = np.random.default_rng(3)
    w1 = rng.integers(-128, 128, (12, 8))
    w2 = rng.integers(-128, 128, (8, 12))
    words = golden.expert_image(w1, w2, cfg)
    assert len(words) == proto.image_words
    flits = [words[i] | (words[i + 1] << 32) for i in range(0, len(words), 2)]
    assert flits == golden.expert_image_flits(w1, w2, cfg)
    w2_start = math.ceil(96 / 8)
    assert unpack_elements(flits[:w2_start], 96, 8, 64).tolist() == w1.ravel().tolist()
    assert unpack_elements(flits[w2_start:], 96, 8, 64).tolist() == w2.ravel().tolist()
    with pytest.raises(ValueError, match=r"w1 and w2 must have shapes \(12, 8\) and \(8, 12\)"):
        golden.expert_image(w2, w1, cfg)


def test_activation_addresses_and_save_packets():
    cfg = override(TINY, {"moe.d_ff": 64, "hardware.max_burst_flits": 3, "dram.rows": 512})
    proto = Protocol(cfg)
    assert proto.saved_tokens == cfg.moe.layers * cfg.training.sequences * cfg.training.seq_len
    assert proto.save_index(1, 3) == proto.step_tokens + 3 and proto.save_index(0, proto.step_tokens + 3) == 3
    seen = set()
    for c in range(2):
        for record in (0, 1, proto.saved_tokens - 1):
            for e in range(2):
                a = golden.activation_addr(cfg, c, record, e)
                span = range(a, a + golden.activation_entry_words(cfg))
                assert a >= proto.activation_base and not seen & set(span)
                seen |= set(span)
    assert a + golden.activation_entry_words(cfg) == proto.activation_base + golden.activation_region_words(cfg)
    with pytest.raises(ValueError, match="save_index"):
        golden.activation_addr(cfg, 0, proto.saved_tokens, 0)
    z = np.arange(-32, 32)
    pkts = golden.save_packets(cfg, 1, 1, 7, 300, 1, z)
    assert [len(p.payload) for p in pkts] == [3, 3, 2] and all(p.tag == 7 for p in pkts)
    assert [p.meta["addr"] for p in pkts] == [golden.activation_addr(cfg, 1, 300, 1) + i for i in (0, 3, 6)]
    assert all(p.dst == proto.topology.memctrl(1) and p.meta["ack"] == 0 for p in pkts)
    flits = [f for p in pkts for f in p.payload]
    assert unpack_elements(flits, 64, 8, 64).tolist() == z.tolist()
    golden.check_activation_region(cfg)
    with pytest.raises(ConfigError, match="dram.words must hold the weight images and saved activations"):
        golden.check_activation_region(override(TINY, {"moe.d_ff": 64}))


def test_next_layer_tokens_requantise_the_outputs():
    """Partials with F_P = F_x + gate_bits fractional bits go back to the token format: a shift by gate_bits,
    rounded half away from zero, saturated to act_bits."""
    cfg = load_config("tiny")
    g = cfg.numerics.gate_bits
    assert golden.formats(cfg).partial - golden.formats(cfg).x == g
    half = 1 << (g - 1)
    outputs = np.array([[0, half - 1, half, -half, 5 << g, 1 << 30, -(1 << 30)]])
    top = (1 << (cfg.numerics.act_bits - 1)) - 1
    assert golden.next_layer_tokens(outputs, cfg).tolist() == [[0, 0, 1, -1, 5, top, -top - 1]]
