"""The golden backward pass and update (model/golden_backward.py): the float reference against finite differences,
the fixed point against an independent loop implementation (bit for bit) and against float64 (error bounds), and
the update's rounding, saturation and untouched experts."""

from __future__ import annotations

import numpy as np
import pytest

from mozart.model import golden
from mozart.model import golden_backward as gb
from mozart.model.config import load_config, override

TINY = load_config("tiny")


def _float_case(rng, T=5, d=4, dff=6, E=3, k=2):
    return (rng.normal(size=(T, d)), rng.normal(size=(T, d)), rng.normal(size=(E, dff, d)) / 2,
            rng.normal(size=(E, d, dff)) / 2, np.array([rng.choice(E, k, replace=False) for _ in range(T)]),
            rng.uniform(0.1, 1.0, (T, k)))


@pytest.mark.parametrize("activation", ["relu", "silu", "gelu"])
def test_float_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(3)
    x, dY, w1, w2, ex, g = _float_case(rng)
    ref = gb.moe_backward_float(x, dY, w1, w2, ex, g, activation)

    def loss(x_, w1_, w2_, g_):
        return float((dY * golden.moe_layer_float(x_, w1_, w2_, ex, g_, activation)).sum())
    eps = 1e-6
    for name, arr, grad in (("x", x, ref["dx"]), ("w1", w1, ref["dw1"]), ("w2", w2, ref["dw2"]),
                            ("g", g, ref["dg"])):
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(6)]:
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args = (x, w1, w2, g)
            up = [plus if a is arr else a for a in args]
            down = [minus if a is arr else a for a in args]
            numeric = (loss(*up) - loss(*down)) / (2 * eps)
            assert numeric == pytest.approx(grad[idx], rel=1e-4, abs=1e-6), (name, idx)


def _loop_reference(x, z, dY, gate, w1, w2, cfg):
    """The module doc's steps written out with Python ints, one element at a time (an independent reading)."""
    num = cfg.numerics
    a = num.act_bits

    def sat(v, bits):
        return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))

    def rnd(v, s):
        return v if s == 0 else (v + (1 << (s - 1)) - (1 if v < 0 else 0)) >> s

    table = golden.activation_table(cfg)
    h = [max(v, 0) if table is None else table[v & ((1 << a) - 1)] for v in z]
    u = [sat(sum(w2[m][f] * dY[m] for m in range(len(x))), num.acc_bits) for f in range(len(z))]
    dy = [sat(rnd(gate * v, num.gate_bits), a) for v in dY]
    dh = [sat(rnd(gate * u[f], num.gate_bits + num.output_shift), a) for f in range(len(z))]
    deriv = gb.derivative_table(cfg)
    dz = [(dh[f] if z[f] > 0 else 0) if deriv is None
          else sat(rnd(dh[f] * deriv[z[f] & ((1 << a) - 1)], gb.deriv_frac(a)), a) for f in range(len(z))]
    dx = [sat(rnd(sat(sum(w1[f][m] * dz[f] for f in range(len(z))), num.acc_bits), num.hidden_shift), a)
          for m in range(len(x))]
    dg = sat(rnd(sum(u[f] * h[f] for f in range(len(z))), num.output_shift), num.acc_bits)
    return dy, dh, dz, dx, dg


@pytest.mark.parametrize("activation", ["relu", "silu", "gelu"])
def test_fixed_point_is_bit_exact_with_an_independent_implementation(activation):
    cfg = override(TINY, {"numerics.activation": activation})
    rng = np.random.default_rng(5)
    d, dff = cfg.moe.d_model, cfg.moe.d_ff
    for trial in range(20):
        extreme = trial % 4 == 0
        lim = 128
        x = rng.choice([-lim, lim - 1], d) if extreme else rng.integers(-lim, lim, d)
        dY = rng.choice([-lim, lim - 1], d) if extreme else rng.integers(-lim, lim, d)
        w1, w2 = rng.integers(-lim, lim, (dff, d)), rng.integers(-lim, lim, (d, dff))
        gate = int(rng.integers(0, 256))
        z = gb.pre_activation(x, w1, cfg)
        b = gb.expert_backward(x, z, dY, gate, w1, w2, cfg)
        dy, dh, dz, dx, dg = _loop_reference(x.tolist(), z.tolist(), dY.tolist(), gate, w1.tolist(), w2.tolist(), cfg)
        assert (b.dy.tolist(), b.dh.tolist(), b.dz.tolist(), b.dx.tolist(), int(b.dg)) == (dy, dh, dz, dx, dg)


def test_the_comparison_catches_a_rounding_mutant():
    """Truncating instead of rounding half away from zero changes results: the exactness test can fail."""
    rng = np.random.default_rng(1)
    v = rng.integers(-1000, 1000, 200)
    assert (golden.rshift_round(v, 4) != (v >> 4)).any()


@pytest.mark.parametrize("name,activation,bounds", [
    ("tiny", "relu", {"dx": 0.3, "dg": 0.08, "dw1": 0.3, "dw2": 0.1}),
    ("wafer4x4", "silu", {"dx": 0.25, "dg": 0.1, "dw1": 0.25, "dw2": 0.12}),
])
def test_error_against_float64_is_bounded(name, activation, bounds):
    """The fixed point approximates the float64 backward: relative error (Frobenius) on 256 random tokens, inputs
    drawn at the scale of the formats. The measured values are in docs/golden.md; the bounds guard regressions."""
    cfg = override(load_config(name), {"numerics.activation": activation})
    for key, error in gb.float64_error(cfg).items():
        assert error <= bounds[key], (key, error)


def test_update_rounds_saturates_and_leaves_unchosen_experts_alone():
    cfg = TINY
    shift = gb.update_shift(cfg, "w1")
    assert shift == gb.backward_formats(cfg).dw1 + cfg.training.lr_shift - golden.formats(cfg).w
    w = np.array([127, -128, 5, 5, 5])
    dw = np.array([-(1 << (shift + 3)), 1 << (shift + 3), 1 << (shift - 1), -(1 << (shift - 1)), 0])
    assert gb.update_weights(w, dw, shift, cfg).tolist() == [127, -128, 4, 6, 5]
    rng = np.random.default_rng(2)
    E = cfg.moe.experts
    x, dY = rng.integers(-64, 64, (8, cfg.moe.d_model)), rng.integers(-64, 64, (8, cfg.moe.d_model))
    w1 = rng.integers(-64, 64, (E, cfg.moe.d_ff, cfg.moe.d_model))
    w2 = rng.integers(-64, 64, (E, cfg.moe.d_model, cfg.moe.d_ff))
    experts = np.tile([0, 1], (8, 1))
    r = gb.moe_backward(x, dY, w1, w2, experts, np.full((8, 2), 128), np.arange(E) // cfg.experts_per_chiplet, cfg)
    assert (r.w1[2:] == w1[2:]).all() and (r.w2[2:] == w2[2:]).all() and not (r.dw1[2:]).any()
    assert (r.w1[:2] != w1[:2]).any()


def test_lr_shift_is_a_config_field():
    with pytest.raises(Exception, match="training.lr_shift must be between 0 and 62, not -1"):
        override(TINY, {"training.lr_shift": -1})
