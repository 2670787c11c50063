"""The golden fixed-point arithmetic of the backward pass and the weight update (the forward is :mod:`.golden`).

Plain numpy, bit-exact by definition: the hardware that computes the backward pass must produce exactly these
integers. The formats extend the forward's (:class:`mozart.model.golden.Formats`; ``a`` = act_bits,
``w`` = weight_bits, ``G`` = gate_bits, ``p`` = partial_bits):

======================  ==========================  =======================================================
value                   integer format              fractional bits
======================  ==========================  =======================================================
output gradient ``dY``  signed ``a`` bits           ``F_dY = F_x`` (the token's format)
expert output grad.     signed ``a`` bits           ``F_dy = F_dY``
hidden gradient ``dh``  signed ``a`` bits           ``F_dh = F_dy + F_w - output_shift``
pre-activation grad.    signed ``a`` bits           ``F_dz = F_dh``
input gradient          signed ``a`` bits (expert)  ``F_dx = F_dz + F_w - hidden_shift``; summed over the
                        ``p`` bits (the token)      token's experts like the forward combine
gate gradient ``dg``    signed ``acc_bits``         ``F_y + F_dY`` (exact dot product, saturated)
weight gradients        int64, exact                ``dW2``: ``F_dy + F_h``; ``dW1``: ``F_dz + F_x``
======================  ==========================  =======================================================

Per (token, expert ``e``) with raw gate ``g``, the token's ``x`` and the expert's pre-activation ``z`` (the
requantised ``W1 x`` before the activation, :func:`mozart.model.golden.pre_activation`, what the forward pass
saves):

1. ``u = sat_acc(W2^T dY)``: the output gradient through ``W2``, before the gate (exact dot products, clamped).
2. ``dh = sat_a(rshift_round(g * u, G + output_shift))``: the hidden vector's gradient (the gate applied once,
   after ``W2``, with one rounding).
3. ``dz = dh * [z > 0]`` for ReLU; for SiLU/GELU ``dz = sat_a(rshift_round(dh * D[z], deriv_frac(a)))`` with the
   derivative table ``D`` (:func:`derivative_table`: ``f'`` at every ``a``-bit ``z``, signed ``a`` bits with
   ``a - 2`` fractional bits, rounded half away from zero).
4. ``dx = sat_a(rshift_round(sat_acc(W1^T dz), hidden_shift))``: through ``W1``.
5. ``dg = sat_acc(rshift_round(<u, h>, output_shift))`` with ``h = act(z)``: the gate's gradient for the router.
   ``<u, h> = <dY, W2 h>`` exactly (before ``u``'s clamp), so this is ``<dY, y>`` with ``y``'s own requantising
   shift, and the chiplet gets it from the ``W2`` pass it makes anyway, without recomputing ``y``.
6. ``dW2 += dy (x) h`` with ``dy = sat_a(rshift_round(g * dY, G))`` (the expert output's gradient) and
   ``dW1 += dz (x) x``, summed exactly over the layer's tokens (int64; :func:`weight_gradients` checks the sum
   fits ``grad_bits(cfg, tokens)``).

The token's input gradient is the backward combine, the forward's (:func:`mozart.model.golden.local_sum` of its
experts' ``dx`` per chiplet, then :func:`mozart.model.golden.tree_combine`).

The update, with the learning rate ``2**-training.lr_shift``: ``W <- sat_w(W - rshift_round(dW, s))`` where
``s = F_dW + lr_shift - F_w`` converts the gradient's format to the weight's (:func:`update_shift`; rounding half
away from zero, then saturation to the weight range).

Where ``x`` and ``z`` come from (the hardware's choice, documented in ``docs/golden.md``): the root re-sends each
token's ``x`` with its ``dY`` and gates in the backward DISPATCH (``token_flits`` more flits per replica), and the
chiplet restores ``z`` from the activations it saved in the forward pass. ``h = act(z)`` and ``act'(z)`` are then
two table lookups, so neither ``W1 x`` is recomputed nor ``h`` saved separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .golden import (_check_range, _matvec, activate, formats, local_sum, pre_activation, rshift_round, saturate,
                     tree_combine)

__all__ = ["deriv_frac", "derivative_table", "pre_activation", "ExpertBackward", "expert_backward",
           "BackwardFormats", "backward_formats",
           "weight_gradients", "grad_bits", "step_grad_bits", "update_shift", "update_weights",
           "LayerBackward", "moe_backward", "moe_backward_float", "float64_error", "previous_layer_gradient"]


def deriv_frac(act_bits: int) -> int:
    """Fractional bits of the activation-derivative table: range [-2, 2), enough for SiLU' and GELU'."""
    return act_bits - 2


def _silu_deriv(t: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-t))
    return s * (1.0 + t * (1.0 - s))


def _gelu_deriv(t: np.ndarray) -> np.ndarray:
    """``d/dt t * Phi(t) = Phi(t) + t * phi(t)``."""
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(t / math.sqrt(2.0)))
    return cdf + t * np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=64)
def _deriv_table(kind: str, act_bits: int, frac_in: int) -> tuple[int, ...]:
    n = 1 << act_bits
    codes = np.arange(n, dtype=np.int64)
    values = np.where(codes >= n // 2, codes - n, codes)
    t = values.astype(np.float64) * 2.0 ** -frac_in
    f = {"silu": _silu_deriv, "gelu": _gelu_deriv}[kind](t) * 2.0 ** deriv_frac(act_bits)
    q = np.sign(f) * np.floor(np.abs(f) + 0.5)
    return tuple(int(v) for v in saturate(q, act_bits))


def derivative_table(cfg) -> tuple[int, ...] | None:
    """``f'`` of the activation at every ``act_bits`` pattern of ``z`` (entry ``i`` for the pattern ``i``), in
    ``deriv_frac`` fractional bits; ``None`` for ReLU (its derivative is the sign test)."""
    num = cfg.numerics
    if num.activation == "relu":
        return None
    return _deriv_table(num.activation, num.act_bits, formats(cfg).h)


def _matvec_t(w: np.ndarray, v: np.ndarray, cfg) -> np.ndarray:
    """``w^T v`` with the forward's exact, saturated dot products (``w [..., m, n]``, ``v [..., m]``)."""
    return _matvec(np.swapaxes(w, -1, -2), v, cfg)


@dataclass(frozen=True)
class ExpertBackward:
    """One expert's backward on one or more tokens (leading dimensions broadcast)."""

    dy: np.ndarray   #: [..., d_model] gradient of the expert's output
    dh: np.ndarray   #: [..., d_ff] gradient of its hidden vector
    dz: np.ndarray   #: [..., d_ff] gradient of its pre-activation
    dx: np.ndarray   #: [..., d_model] its contribution to the token's input gradient
    dg: np.ndarray   #: [...] gradient of its gate (for the router)
    h: np.ndarray    #: [..., d_ff] act(z), the hidden vector the forward pass used


def expert_backward(x, z, dY, gate, w1, w2, cfg) -> ExpertBackward:
    """Steps 1-5 of the module doc for expert ``(w1, w2)``: ``x``, ``dY`` ``[..., d_model]``, ``z`` ``[..., d_ff]``,
    raw unsigned ``gate`` ``[...]``."""
    num = cfg.numerics
    a, G = num.act_bits, num.gate_bits
    x, z, dY = (np.asarray(v, dtype=np.int64) for v in (x, z, dY))
    gate = np.asarray(gate, dtype=np.int64)
    w1, w2 = np.asarray(w1, dtype=np.int64), np.asarray(w2, dtype=np.int64)
    _check_range("dY", dY, a)
    _check_range("z", z, a)
    _check_range("gate", gate, G, signed=False)
    _check_range("w2", w2, num.weight_bits)
    h = activate(z, cfg)
    u = _matvec_t(w2, dY, cfg)
    dy = saturate(rshift_round(gate[..., None] * dY, G), a)
    dh = saturate(rshift_round(gate[..., None] * u, G + num.output_shift), a)
    table = derivative_table(cfg)
    if table is None:
        dz = np.where(z > 0, dh, 0)
    else:
        slope = np.asarray(table, dtype=np.int64)[z & ((1 << a) - 1)]
        dz = saturate(rshift_round(dh * slope, deriv_frac(a)), a)
    dx = saturate(rshift_round(_matvec_t(w1, dz, cfg), num.hidden_shift), a)
    dg = saturate(rshift_round(np.einsum("...n,...n->...", u, h), num.output_shift), num.acc_bits)
    return ExpertBackward(dy, dh, dz, dx, dg, h)


def grad_bits(cfg, tokens: int) -> int:
    """Signed width that holds any weight gradient summed over ``tokens`` tokens exactly: products of two
    ``act_bits`` values, ``ceil(log2 tokens)`` of headroom (the hardware's gradient accumulators)."""
    a = cfg.numerics.act_bits
    return 2 * a + max(0, math.ceil(math.log2(max(tokens, 1))))


def step_grad_bits(cfg) -> int:
    """The hardware's gradient accumulators: :func:`grad_bits` for every token of one training step
    (``training.sequences * training.seq_len``), the most one expert can see."""
    return grad_bits(cfg, cfg.training.sequences * cfg.training.seq_len)


def weight_gradients(xs, b: ExpertBackward, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Step 6: ``dW1 [d_ff, d_model]`` and ``dW2 [d_model, d_ff]`` of one expert, summed exactly over its tokens
    (``xs [T, d_model]`` and the expert's :class:`ExpertBackward` on them, ``[T, ...]``)."""
    xs = np.asarray(xs, dtype=np.int64)
    dw1 = np.einsum("tf,tm->fm", b.dz, xs)
    dw2 = np.einsum("tm,tf->mf", b.dy, b.h)
    bits = grad_bits(cfg, len(xs))
    for name, g in (("dW1", dw1), ("dW2", dw2)):
        _check_range(name, g, bits)
    return dw1, dw2


@dataclass(frozen=True)
class BackwardFormats:
    """Fractional bits of the backward's values (the table in the module doc)."""

    dY: int
    dy: int
    dh: int
    dz: int
    dx: int
    dg: int
    dw1: int
    dw2: int


def backward_formats(cfg) -> BackwardFormats:
    f, num = formats(cfg), cfg.numerics
    dy = f.x
    dh = dy + f.w - num.output_shift
    dz = dh
    return BackwardFormats(dY=f.x, dy=dy, dh=dh, dz=dz, dx=dz + f.w - num.hidden_shift, dg=f.y + f.x,
                           dw1=dz + f.x, dw2=dy + f.h)


def update_shift(cfg, which: str) -> int:
    """The shift from ``dW1``/``dW2``'s format to the weights' with the learning rate ``2**-lr_shift``."""
    b = backward_formats(cfg)
    frac = {"w1": b.dw1, "w2": b.dw2}[which]
    shift = frac + cfg.training.lr_shift - formats(cfg).w
    if shift < 0:
        raise ValueError(f"training.lr_shift must make the update shift non-negative for {which}, not "
                         f"{cfg.training.lr_shift} (shift {shift})")
    return shift


def update_weights(w, dw, shift: int, cfg) -> np.ndarray:
    """``sat_w(W - rshift_round(dW, shift))``."""
    return saturate(np.asarray(w, dtype=np.int64) - rshift_round(dw, shift), cfg.numerics.weight_bits)


@dataclass(frozen=True)
class LayerBackward:
    """The golden backward of one MoE layer and its update (:func:`moe_backward`)."""

    dx: np.ndarray    #: [T, d_model] the tokens' input gradients (partial_bits), as the root returns them
    dg: np.ndarray    #: [T, k] the gates' gradients, aligned with ``experts``
    dw1: np.ndarray   #: [E, d_ff, d_model] exact weight gradients
    dw2: np.ndarray   #: [E, d_model, d_ff]
    w1: np.ndarray    #: [E, d_ff, d_model] updated weights
    w2: np.ndarray    #: [E, d_model, d_ff]


def moe_backward(x, dY, w1, w2, experts, gates, expert_to_chiplet, cfg) -> LayerBackward:
    """The whole layer's backward and update, as the wafer computes it.

    ``x [T, d_model]`` the layer's input tokens, ``dY [T, d_model]`` the gradient of its output, weights by global
    expert id, ``experts``/``gates [T, k]`` and ``expert_to_chiplet [E]`` as for :func:`golden.moe_layer`. Each
    chiplet sums its selected experts' ``dx`` (:func:`chiplet_input_gradient`); switches and the root reduce the
    partials exactly, saturated once. Experts no token chose keep their weights (a zero gradient updates nothing).
    """
    x, dY = np.asarray(x, dtype=np.int64), np.asarray(dY, dtype=np.int64)
    w1, w2 = np.asarray(w1, dtype=np.int64), np.asarray(w2, dtype=np.int64)
    experts, gates = np.asarray(experts, dtype=np.int64), np.asarray(gates, dtype=np.int64)
    e2c = np.asarray(expert_to_chiplet, dtype=np.int64)
    T, k = experts.shape
    E = cfg.moe.experts
    dx_of = np.zeros((T, k, x.shape[1]), dtype=np.int64)
    dg = np.zeros((T, k), dtype=np.int64)
    dw1, dw2 = np.zeros_like(w1), np.zeros_like(w2)
    for e in range(E):
        tok, slot = np.nonzero(experts == e)
        if not len(tok):
            continue
        z = pre_activation(x[tok], w1[e], cfg)
        b = expert_backward(x[tok], z, dY[tok], gates[tok, slot], w1[e], w2[e], cfg)
        dx_of[tok, slot], dg[tok, slot] = b.dx, b.dg
        dw1[e], dw2[e] = weight_gradients(x[tok], b, cfg)
    def input_gradient(local, hit):
        contributions = (dx_of[:, None, :, :] * hit[..., None]).sum(axis=2)   # [T, local, d_model]
        return local_sum(contributions, hit.any(axis=2), cfg.numerics.partial_bits)
    dx = tree_combine(experts, e2c, cfg, x.shape[1], input_gradient)
    new_w1 = update_weights(w1, dw1, update_shift(cfg, "w1"), cfg)
    new_w2 = update_weights(w2, dw2, update_shift(cfg, "w2"), cfg)
    return LayerBackward(dx, dg, dw1, dw2, new_w1, new_w2)


def previous_layer_gradient(dx, cfg) -> np.ndarray:
    """The output gradient of the previous MoE layer from this layer's input gradients: the combined ``dx``
    (``F_dx`` fractional bits, ``partial_bits``) requantised to the gradient format ``F_dY``,
    ``sat_a(rshift_round(dx, F_dx - F_dY))``: what the host does between two layers of the backward pass, where it
    stands in for the attention block's backward (an identity on the values, like the forward's
    :func:`mozart.model.golden.next_layer_tokens`)."""
    b = backward_formats(cfg)
    shift = b.dx - b.dY
    if shift < 0:
        raise ValueError(f"the input gradient must have at least the output gradient's fractional bits ({b.dY}), "
                         f"not {b.dx}")
    return saturate(rshift_round(np.asarray(dx, dtype=np.int64), shift), cfg.numerics.act_bits)


def moe_backward_float(x, dY, w1, w2, experts, gates, activation: str = "relu") -> dict[str, np.ndarray]:
    """The float64 backward the fixed-point one approximates (real values): ``dx [T, d_model]``, ``dg [T, k]``,
    ``dw1 [E, ...]``, ``dw2 [E, ...]`` of ``sum_k gate_k * W2 f(W1 x)``."""
    from .golden import _gelu, _silu  # noqa: PLC0415 (the float activations live with the forward's)
    f = {"relu": lambda t: np.maximum(t, 0.0), "silu": _silu, "gelu": _gelu}[activation]
    df = {"relu": lambda t: (t > 0).astype(np.float64), "silu": _silu_deriv, "gelu": _gelu_deriv}[activation]
    x, dY = np.asarray(x, dtype=np.float64), np.asarray(dY, dtype=np.float64)
    w1, w2 = np.asarray(w1, dtype=np.float64), np.asarray(w2, dtype=np.float64)
    experts, gates = np.asarray(experts), np.asarray(gates, dtype=np.float64)
    dx, dg = np.zeros_like(x), np.zeros(experts.shape)
    dw1, dw2 = np.zeros_like(w1), np.zeros_like(w2)
    for j in range(experts.shape[1]):
        e = experts[:, j]
        z = np.einsum("tmn,tn->tm", w1[e], x)
        h = f(z)
        y = np.einsum("tmn,tn->tm", w2[e], h)
        dy = gates[:, j, None] * dY
        dz = np.einsum("tmn,tm->tn", w2[e], dy) * df(z)
        dx += np.einsum("tmn,tm->tn", w1[e], dz)
        dg[:, j] = (dY * y).sum(axis=1)
        np.add.at(dw2, e, np.einsum("tm,tf->tmf", dy, h))
        np.add.at(dw1, e, np.einsum("tf,tm->tfm", dz, x))
    return {"dx": dx, "dg": dg, "dw1": dw1, "dw2": dw2}


def float64_error(cfg, tokens: int = 256, seed: int = 0) -> dict[str, float]:
    """Relative (Frobenius) error of :func:`moe_backward` against :func:`moe_backward_float` per gradient
    (``dx``, ``dg``, ``dw1``, ``dw2``) on ``tokens`` random tokens, inputs at the formats' scale: tokens and ``dY``
    unit normal, weights ``N(0, 1/sqrt(n))``, gates from a Dirichlet, random top-k experts."""
    from .golden import dequantise, quantise  # noqa: PLC0415 (only the measurement needs them)
    f, bf = formats(cfg), backward_formats(cfg)
    rng = np.random.default_rng(seed)
    d, dff, E, k = cfg.moe.d_model, cfg.moe.d_ff, cfg.moe.experts, cfg.moe.top_k
    a, w, G = cfg.numerics.act_bits, cfg.numerics.weight_bits, cfg.numerics.gate_bits
    x = quantise(rng.normal(size=(tokens, d)), a, f.x)
    dY = quantise(rng.normal(size=(tokens, d)), a, bf.dY)
    w1 = quantise(rng.normal(0, d ** -0.5, (E, dff, d)), w, f.w)
    w2 = quantise(rng.normal(0, dff ** -0.5, (E, d, dff)), w, f.w)
    experts = np.array([rng.choice(E, k, replace=False) for _ in range(tokens)])
    gates = quantise(rng.dirichlet(np.ones(k), tokens), G, G, signed=False)
    ours = moe_backward(x, dY, w1, w2, experts, gates, np.arange(E) // cfg.experts_per_chiplet, cfg)
    ref = moe_backward_float(dequantise(x, f.x), dequantise(dY, bf.dY), dequantise(w1, f.w), dequantise(w2, f.w),
                             experts, dequantise(gates, G), cfg.numerics.activation)
    out = {}
    for key, frac in (("dx", bf.dx), ("dg", bf.dg), ("dw1", bf.dw1), ("dw2", bf.dw2)):
        value = dequantise(getattr(ours, key), frac)
        out[key] = float(np.linalg.norm(value - ref[key]) / np.linalg.norm(ref[key]))
    return out
