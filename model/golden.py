"""The golden fixed-point arithmetic of the Mozart hardware: one definition, vectorised numpy, bit-exact RTL.

Every block that computes (expert chiplet, switch reduction, root) and every testbench uses these functions;
the RTL implements exactly them (``mozart.hw.expert_engine``). Integers are numpy ``int64`` arrays holding the
two's-complement values (not raw bit patterns).

Formats (from ``cfg.numerics``; ``a`` = act_bits, ``w`` = weight_bits, ``g`` = gate_bits, ``p`` = partial_bits)
--------------------------------------------------------------------------------------------------------------
====================  ============================  ===========================================================
value                 integer format                real value (power-of-two scales, see :func:`formats`)
====================  ============================  ===========================================================
token ``x``           signed ``a`` bits             ``x * 2**-F_x``, ``F_x = act_frac_bits = max(0, a - 4)``
weights ``W1, W2``    signed ``w`` bits             ``W * 2**-F_w``, ``F_w = w - 1`` (Q0.(w-1), range [-1, 1))
hidden ``h``          signed ``a`` bits             ``F_h = F_x + F_w - hidden_shift``
expert output ``y``   signed ``a`` bits             ``F_y = F_h + F_w - output_shift``
gate ``g``            unsigned ``g`` bits, Q0.g      ``g * 2**-gate_bits``
partial ``P``         signed ``p`` bits             ``F_P = F_y + gate_bits`` (no rounding after the gate)
====================  ============================  ===========================================================

With the default numerics (8/8/32/8/32, shifts 7/7) ``F_x = F_h = F_y = 4``: tokens, hidden and outputs are
Q3.4, weights Q0.7. The integer arithmetic below never uses the ``F`` values; only the activation table and
the float helpers (:func:`quantise`, :func:`dequantise`, :func:`moe_layer_float`) do.

The expert FFN, stage by stage (``n`` = length of the dot product: d_model for W1, d_ff for W2)
---------------------------------------------------------------------------------------------
1. ``acc1 = sat_acc(W1 @ x)``: the dot products are computed *exactly* (the RTL accumulator is
   ``exact_acc_bits(n)`` wide, see below) and then saturated to signed ``acc_bits``.
2. ``h = act(sat_a(rshift_round(acc1, hidden_shift)))``: requantise to the token format, then the activation
   (ReLU, or the SiLU/GELU table of :func:`activation_table`, indexed by the ``a``-bit value).
3. ``acc2 = sat_acc(W2 @ h)``, ``y = sat_a(rshift_round(acc2, output_shift))``: requantise *after* W2 to
   ``a`` bits (the expert output is an activation in the token's format).
4. Per local expert ``e`` selected by the route word: ``gy_e = sat_p(gate_e * y_e)`` (gates unsigned).
5. The chiplet's partial: ``P = 0; for e ascending: P = saturating_add(P, gy_e, p)``.
6. Switch and root: :func:`reduce_partials`, the *exact* sum of the partials saturated once to ``p`` bits (the
   switch adds its chiplets' partials, the root its groups' results). An exact sum does not depend on the
   order in which partials arrive, so the network's timing never changes a result.

Rounding: :func:`rshift_round` divides by ``2**s`` rounding half away from zero:
``floor((v + 2**(s-1) - [v < 0]) / 2**s)`` (exact for every integer ``v``; ``s = 0`` is the identity).
Saturation: :func:`saturate` clamps to ``[-2**(b-1), 2**(b-1) - 1]``; nothing in the arithmetic wraps.

Width proofs
------------
- Product ``W * x``: ``|W*x| <= 2**(w-1) * 2**(a-1) = 2**(a+w-2)`` (only at ``-2**(w-1) * -2**(a-1)``), so
  a product fits signed ``a + w`` bits (the config requires ``acc_bits >= a + w``).
- A dot product of ``n`` terms: ``|sum| <= n * 2**(a+w-2) <= 2**(B-2)`` with
  ``B = exact_acc_bits(n) = a + w + ceil(log2 n)``, and ``2**(B-2) <= 2**(B-1) - 1``: it fits signed ``B`` bits
  exactly (``B - 1`` would not: ``n`` products of ``-2**(a-1) * -2**(w-1)`` reach ``+2**(B-2)``). The RTL
  accumulates in ``max(acc_bits, B)`` bits, so the running sum never wraps and the result equals the exact sum
  clamped to ``acc_bits`` whatever the order of the terms. With the defaults and d_model, d_ff <= 2**16,
  ``B <= 32 = acc_bits``: the clamp never acts.
- Rounding adds at most ``2**(s-1)``: computed one bit wider than its input.
- ``gate * y``: ``|g*y| <= (2**g - 1) * 2**(a-1) < 2**(a+g-1)``: fits signed ``a + g`` bits, then clamps to ``p``.
- Sums of partials: a token selects ``top_k`` experts in all, so the exact sum over every chiplet and group
  is below ``top_k * 2**(a+g-1)``, which fits ``a + g + ceil(log2 top_k)`` bits. If ``partial_bits`` is at
  least that (:func:`reduction_is_exact`; defaults: 17 <= 32), no saturation ever clamps. Smaller
  ``partial_bits`` clamp, but only once per reduction: a switch's sum of ``C`` partials fits
  ``p + ceil(log2 C)`` bits and the root's sum of ``G`` group results ``p + ceil(log2 G)`` bits, the guard bits
  the RTL keeps in its accumulators, so the result is still independent of arrival order.

Activation saving
-----------------
A dispatch with ``save=1`` makes the chiplet write each selected expert's pre-activation ``z`` (:func:`pre_activation`;
packed like a token, ``pack_elements(z, act_bits, flit_bits)``, then split into DRAM words, word 0 in a flit's low
bits) to its group's DRAM at :func:`activation_addr` of the dispatch's ``save_index``
(:meth:`Protocol.save_index`: the token's layer and position); :func:`save_packets` gives the exact MEM_WRITE
packets. The backward pass restores ``z``: ``h = act(z)`` and ``act'(z)`` follow from it by table.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from .protocol import Packet, PacketKind, Protocol, pack_elements

__all__ = [
    "Formats", "formats", "saturate", "saturating_add", "reduce_partials", "rshift_round", "exact_acc_bits",
    "reduction_is_exact",
    "activation_table", "activate", "pre_activation", "expert_hidden", "expert_ffn", "gate_products", "chiplet_partial",
    "moe_layer", "quantise", "dequantise", "moe_layer_float", "expert_image", "expert_image_flits",
    "hidden_flits", "activation_entry_words", "activation_addr", "activation_region_words", "save_packets",
    "saved_words",
    "local_sum", "tree_combine",
]


# -- elementary operations ---------------------------------------------------------------------------------
def saturate(v, bits: int) -> np.ndarray:
    """Clamp ``v`` to signed ``bits``: ``[-2**(bits-1), 2**(bits-1) - 1]``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def saturating_add(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """Element-wise signed saturating addition: ``saturate(a + b, bits)``.

    The combine reduction of the switches and the root, and the chiplet's local sum, use exactly this.
    ``a`` and ``b`` must already be ``bits``-bit values (then ``a + b`` cannot overflow int64 for
    ``bits <= 62``).
    """
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must be between 1 and 62, not {bits!r}")
    return saturate(np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64), bits)


def reduce_partials(partials, bits: int) -> np.ndarray:
    """The in-network reduction (switch and root): ``partials [n, ...]`` summed exactly, then saturated once.

    A chain of two-operand saturating adds would depend on the order of the operands once one clamps; the
    exact sum does not, and the hardware sees partials in whatever order the network delivers them."""
    partials = np.asarray(partials, dtype=np.int64)
    if partials.ndim == 0 or partials.shape[0] == 0:
        raise ValueError(f"a reduction needs at least one partial, not shape {partials.shape}")
    return saturate(partials.sum(axis=0), bits)


def rshift_round(v, shift: int) -> np.ndarray:
    """``v / 2**shift`` rounded half away from zero: ``(v + 2**(shift-1) - [v < 0]) >> shift``."""
    v = np.asarray(v, dtype=np.int64)
    if shift == 0:
        return v
    return (v + (1 << (shift - 1)) - (v < 0)) >> shift


def exact_acc_bits(cfg, n: int) -> int:
    """Signed width that holds any dot product of ``n`` terms exactly (see the width proof above)."""
    num = cfg.numerics
    return num.act_bits + num.weight_bits + max(0, math.ceil(math.log2(n)))


def reduction_is_exact(cfg) -> bool:
    """True if no partial or reduction sum can saturate, so the order of additions does not matter."""
    num = cfg.numerics
    need = num.act_bits + num.gate_bits + max(0, math.ceil(math.log2(cfg.moe.top_k)))
    return num.partial_bits >= need


# -- formats and the activation table ----------------------------------------------------------------------
class Formats:
    """Fractional bits of each value (real = integer * 2**-frac); see the module docstring."""

    def __init__(self, cfg):
        num = cfg.numerics
        self.x = max(0, num.act_bits - 4)
        self.w = num.weight_bits - 1
        self.h = self.x + self.w - num.hidden_shift
        self.y = self.h + self.w - num.output_shift
        self.gate = num.gate_bits
        self.partial = self.y + num.gate_bits

    def __repr__(self) -> str:
        return f"Formats(x={self.x}, w={self.w}, h={self.h}, y={self.y}, partial={self.partial})"


def formats(cfg) -> Formats:
    return Formats(cfg)


def _silu(t: np.ndarray) -> np.ndarray:
    return t / (1.0 + np.exp(-t))


def _gelu(t: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * t * (1.0 + erf(t / math.sqrt(2.0)))


@lru_cache(maxsize=64)
def _table(kind: str, act_bits: int, frac: int) -> tuple[int, ...]:
    n = 1 << act_bits
    codes = np.arange(n, dtype=np.int64)
    values = np.where(codes >= n // 2, codes - n, codes)           # index = the a-bit pattern of h
    t = values.astype(np.float64) * 2.0 ** -frac
    f = {"silu": _silu, "gelu": _gelu}[kind](t) * 2.0 ** frac
    q = np.sign(f) * np.floor(np.abs(f) + 0.5)                       # half away from zero, like rshift_round
    return tuple(int(v) for v in saturate(q, act_bits))


def activation_table(cfg) -> tuple[int, ...] | None:
    """The activation lookup table, or ``None`` for ReLU.

    Entry ``i`` (``0 <= i < 2**act_bits``) is the output for the hidden value whose ``act_bits``-bit two's
    complement pattern is ``i``: ``round_half_away(f(h * 2**-F_h) * 2**F_h)`` saturated to ``act_bits``, with
    ``f`` = SiLU ``t / (1 + exp(-t))`` or GELU ``t/2 (1 + erf(t / sqrt 2))`` in float64. The RTL holds this very
    tuple as a ROM, so model and hardware agree by construction.
    """
    num = cfg.numerics
    if num.activation == "relu":
        return None
    return _table(num.activation, num.act_bits, formats(cfg).h)


def activate(h, cfg) -> np.ndarray:
    """The activation applied to requantised hidden values (``act_bits`` in, ``act_bits`` out)."""
    h = np.asarray(h, dtype=np.int64)
    table = activation_table(cfg)
    if table is None:
        return np.maximum(h, 0)
    mask = (1 << cfg.numerics.act_bits) - 1
    return np.asarray(table, dtype=np.int64)[h & mask]


# -- the expert FFN and the chiplet partial ------------------------------------------------------------------
def _check_range(name: str, v: np.ndarray, bits: int, signed: bool = True) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        bad = v.min() if v.min() < lo else v.max()
        raise ValueError(f"{name} must be {'signed' if signed else 'unsigned'} {bits}-bit values "
                         f"({lo}..{hi}), not {int(bad)}")


def _matvec(w: np.ndarray, x: np.ndarray, cfg) -> np.ndarray:
    """Saturated exact dot products: ``w [..., m, n]``, ``x [..., n]`` -> ``[..., m]``."""
    if exact_acc_bits(cfg, w.shape[-1]) > 62:
        raise ValueError(f"dot products of {w.shape[-1]} terms need more than 62 bits; int64 cannot hold them")
    return saturate(np.einsum("...mn,...n->...m", w, x), cfg.numerics.acc_bits)


def pre_activation(x, w1, cfg) -> np.ndarray:
    """``z = sat_a(rshift_round(sat_acc(W1 x), hidden_shift))``: the hidden vector before the activation (what a
    saving dispatch writes to DRAM for the backward pass).

    ``x``: ``[..., d_model]``; ``w1``: ``[d_ff, d_model]`` (or broadcastable ``[..., d_ff, d_model]``).
    """
    num = cfg.numerics
    x = np.asarray(x, dtype=np.int64)
    w1 = np.asarray(w1, dtype=np.int64)
    _check_range("x", x, num.act_bits)
    _check_range("w1", w1, num.weight_bits)
    return saturate(rshift_round(_matvec(w1, x, cfg), num.hidden_shift), num.act_bits)


def expert_hidden(x, w1, cfg) -> np.ndarray:
    """``h = act(z)`` with ``z`` = :func:`pre_activation`."""
    return activate(pre_activation(x, w1, cfg), cfg)


def expert_ffn(x, w1, w2, cfg, *, return_hidden: bool = False):
    """One expert: ``y = sat_a(rshift_round(sat_acc(W2 h), output_shift))`` with ``h`` = :func:`expert_hidden`.

    ``x``: ``[..., d_model]``, ``w1``: ``[d_ff, d_model]``, ``w2``: ``[d_model, d_ff]``. Returns ``y``
    (``[..., d_model]``), or ``(y, h)`` with ``return_hidden``.
    """
    num = cfg.numerics
    w2 = np.asarray(w2, dtype=np.int64)
    _check_range("w2", w2, num.weight_bits)
    h = expert_hidden(x, w1, cfg)
    y = saturate(rshift_round(_matvec(w2, h, cfg), num.output_shift), num.act_bits)
    return (y, h) if return_hidden else y


def gate_products(y, gates, cfg) -> np.ndarray:
    """``sat_p(gate * y)``: ``y [..., d_model]`` times unsigned raw gates ``[...]``."""
    num = cfg.numerics
    gates = np.asarray(gates, dtype=np.int64)
    _check_range("gates", gates, num.gate_bits, signed=False)
    return saturate(np.asarray(y, dtype=np.int64) * gates[..., None], num.partial_bits)


def chiplet_partial(x, experts, mask, gates, cfg, *, return_saved: bool = False):
    """The COMBINE partial of one chiplet: the gate-weighted saturating sum of its selected local experts.

    Parameters
    ----------
    x : ``[d_model]`` or ``[T, d_model]`` int
    experts : ``(w1s, w2s)``, ``w1s [E, d_ff, d_model]`` and ``w2s [E, d_model, d_ff]`` (local index order)
    mask : ``[E]`` or ``[T, E]`` bool/int: the route word's expert mask
    gates : ``[E]`` or ``[T, E]`` raw unsigned Q0.gate_bits
    return_saved : also return ``z [.., E, d_ff]`` (the pre-activations a saving dispatch writes; unselected
        experts too)

    The sum starts at 0 and adds ``sat_p(gate_e * y_e)`` for ``e`` ascending with :func:`saturating_add`.
    """
    w1s, w2s = (np.asarray(w, dtype=np.int64) for w in experts)
    x = np.asarray(x, dtype=np.int64)
    mask = np.asarray(mask).astype(bool)
    gates = np.asarray(gates, dtype=np.int64)
    n_exp = w1s.shape[0]
    if mask.shape[-1] != n_exp or gates.shape[-1] != n_exp:
        raise ValueError(f"mask and gates must have {n_exp} entries (one per local expert), "
                         f"not {mask.shape[-1]} and {gates.shape[-1]}")
    y = expert_ffn(x[..., None, :], w1s, w2s, cfg)   # [.., E, d_model]
    partial = local_sum(gate_products(y, gates, cfg), mask, cfg.numerics.partial_bits)
    return (partial, pre_activation(x[..., None, :], w1s, cfg)) if return_saved else partial


def local_sum(values, mask, bits: int) -> np.ndarray:
    """A chiplet's local sum: ``values [..., E, n]`` of the selected local experts (``mask [..., E]``) added with
    :func:`saturating_add` in ascending local order from 0 (the forward partial and the backward's input gradient)."""
    values = np.asarray(values, dtype=np.int64)
    mask = np.asarray(mask).astype(bool)
    out = np.zeros(values.shape[:-2] + values.shape[-1:], dtype=np.int64)
    for e in range(values.shape[-2]):
        out = np.where(mask[..., e, None], saturating_add(out, values[..., e, :], bits), out)
    return out


def tree_combine(experts, expert_to_chiplet, cfg, width: int, chiplet_value) -> np.ndarray:
    """What the root returns for every token: each chiplet's value, reduced in its switch and at the root.

    ``experts [T, k]`` global ids, ``expert_to_chiplet [E]``; ``chiplet_value(local, hit)`` gives a chiplet's
    ``[T, width]`` partial from its local experts' ids (ascending) and ``hit [T, len(local), k]`` (token ``t``'s
    ``j``-th choice is local expert ``i``). Chiplets and groups a token does not reach contribute nothing; switches
    and root take :func:`reduce_partials`."""
    experts = np.asarray(experts, dtype=np.int64)
    e2c = np.asarray(expert_to_chiplet, dtype=np.int64)
    bits, zero = cfg.numerics.partial_bits, np.zeros((len(experts), width), dtype=np.int64)
    group_results = []
    for g in range(cfg.groups):
        chiplet_partials = [zero]
        for c in range(cfg.chiplets_per_group):
            local = np.flatnonzero(e2c == g * cfg.chiplets_per_group + c)
            hit = experts[:, None, :] == local[None, :, None]
            reached = hit.any(axis=(1, 2))
            if reached.any():
                chiplet_partials.append(np.where(reached[:, None], chiplet_value(local, hit), 0))
        group_results.append(reduce_partials(chiplet_partials, bits))
    return reduce_partials(group_results, bits)


def moe_layer(x, w1, w2, experts, gates, expert_to_chiplet, cfg) -> np.ndarray:
    """The golden output of a whole MoE layer as the root returns it.

    Parameters
    ----------
    x : ``[T, d_model]`` int tokens
    w1, w2 : ``[E, d_ff, d_model]``, ``[E, d_model, d_ff]`` int weights by global expert id
    experts : ``[T, k]`` global expert ids chosen per token (distinct per token)
    gates : ``[T, k]`` raw unsigned gates, aligned with ``experts``
    expert_to_chiplet : ``[E]`` global chiplet index per expert (one layer of a
        :class:`~mozart.model.placement.Placement`); local index = ascending global id within a chiplet

    Each chiplet computes :func:`chiplet_partial` over its selected local experts; the switch reduces its
    chiplets' partials and the root the groups' results, both with :func:`reduce_partials`. Chiplets and
    groups a token does not reach contribute nothing.
    """
    x = np.asarray(x, dtype=np.int64)
    w1 = np.asarray(w1, dtype=np.int64)
    w2 = np.asarray(w2, dtype=np.int64)
    gates = np.asarray(gates, dtype=np.int64)
    e2c = np.asarray(expert_to_chiplet, dtype=np.int64)
    if e2c.shape != (cfg.moe.experts,):
        raise ValueError(f"expert_to_chiplet must have {cfg.moe.experts} entries, not shape {e2c.shape}")

    def partial(local, hit):
        mask, local_gates = hit.any(axis=2), (gates[:, None, :] * hit).sum(axis=2)
        return chiplet_partial(x, (w1[local], w2[local]), mask, local_gates, cfg)
    return tree_combine(experts, e2c, cfg, x.shape[1], partial)


def next_layer_tokens(outputs, cfg) -> np.ndarray:
    """The tokens of the next MoE layer from this layer's outputs: the combined partials ``P`` (``F_P``
    fractional bits, ``partial_bits``) requantised to the token format, ``sat_a(rshift_round(P, F_P - F_x))``.

    This is what the host does between two MoE layers in a multi-layer co-simulation, where it stands in for
    the attention block: an identity on the values (no residual, no attention arithmetic), only the change of
    format the next layer's input needs."""
    f = Formats(cfg)
    shift = f.partial - f.x
    if shift < 0:
        raise ValueError(f"the partial format must have at least the token's fractional bits ({f.x}), not {f.partial}")
    return saturate(rshift_round(np.asarray(outputs, dtype=np.int64), shift), cfg.numerics.act_bits)


# -- quantisation and the float reference --------------------------------------------------------------------
def quantise(values, bits: int, frac: int, signed: bool = True) -> np.ndarray:
    """Float -> integer fixed point: ``round_half_away(v * 2**frac)``, saturated to ``bits``."""
    v = np.asarray(values, dtype=np.float64) * 2.0 ** frac
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    if signed:
        return saturate(q, bits)
    return np.clip(q, 0, (1 << bits) - 1).astype(np.int64)


def dequantise(values, frac: int) -> np.ndarray:
    """Integer fixed point -> float64: ``v * 2**-frac``."""
    return np.asarray(values, dtype=np.float64) * 2.0 ** -frac


def moe_layer_float(x, w1, w2, experts, gates, activation: str = "relu") -> np.ndarray:
    """The float64 MoE layer the fixed-point one approximates: ``sum_k gate_k * W2 f(W1 x)`` (real values)."""
    f = {"relu": lambda t: np.maximum(t, 0.0), "silu": _silu, "gelu": _gelu}[activation]
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for j in range(np.asarray(experts).shape[1]):
        e = np.asarray(experts)[:, j]
        h = f(np.einsum("tmn,tn->tm", np.asarray(w1)[e], x))
        out += np.asarray(gates)[:, j, None] * np.einsum("tmn,tn->tm", np.asarray(w2)[e], h)
    return out


# -- weight images and activation saving ---------------------------------------------------------------------
def _flits_to_words(flits: Sequence[int], cfg) -> list[int]:
    wb = cfg.dram.word_bits
    per = cfg.hardware.flit_bits // wb
    mask = (1 << wb) - 1
    return [(f >> (i * wb)) & mask for f in flits for i in range(per)]


def expert_image_flits(w1, w2, cfg) -> list[int]:
    """An expert's weight image as flits: W1 (``d_ff x d_model`` row-major) packed by
    :func:`~mozart.model.protocol.pack_elements`, then W2 (``d_model x d_ff`` row-major) starting on a fresh flit.
    ``len == Protocol(cfg).image_flits``."""
    moe, wb = cfg.moe, cfg.numerics.weight_bits
    w1 = np.asarray(w1, dtype=np.int64)
    w2 = np.asarray(w2, dtype=np.int64)
    if w1.shape != (moe.d_ff, moe.d_model) or w2.shape != (moe.d_model, moe.d_ff):
        raise ValueError(f"w1 and w2 must have shapes ({moe.d_ff}, {moe.d_model}) and ({moe.d_model}, {moe.d_ff}), "
                         f"not {w1.shape} and {w2.shape}")
    _check_range("w1", w1, wb)
    _check_range("w2", w2, wb)
    flits = pack_elements(w1.ravel(), wb, cfg.hardware.flit_bits) + pack_elements(w2.ravel(), wb,
                                                                                  cfg.hardware.flit_bits)
    assert len(flits) == Protocol(cfg).image_flits
    return flits


def expert_image(w1, w2, cfg) -> list[int]:
    """An expert's weight image as DRAM words (``Protocol(cfg).image_words``; word 0 of a flit = its low bits)."""
    return _flits_to_words(expert_image_flits(w1, w2, cfg), cfg)


def hidden_flits(cfg) -> int:
    """Flits of one saved hidden vector (``d_ff`` activations packed like a token)."""
    return math.ceil(cfg.moe.d_ff / (cfg.hardware.flit_bits // cfg.numerics.act_bits))


def activation_entry_words(cfg) -> int:
    """DRAM words of one saved hidden vector."""
    return hidden_flits(cfg) * (cfg.hardware.flit_bits // cfg.dram.word_bits)


def activation_region_words(cfg) -> int:
    """Words of the whole activation region: one entry per (saved token record, chiplet of the group, local
    expert): ``Protocol.saved_tokens`` records, every layer's tokens of a training step."""
    return Protocol(cfg).saved_tokens * cfg.chiplets_per_group * cfg.experts_per_chiplet * activation_entry_words(cfg)


def activation_addr(cfg, chiplet: int, save_index: int, expert: int) -> int:
    """DRAM word address of the saved ``z`` of local ``expert`` of chiplet ``chiplet`` (index in its group) for the
    token record ``save_index`` (:meth:`Protocol.save_index`):
    ``activation_base + ((save_index * C + chiplet) * E + expert) * activation_entry_words``."""
    c, e, records = cfg.chiplets_per_group, cfg.experts_per_chiplet, Protocol(cfg).saved_tokens
    if not (0 <= chiplet < c and 0 <= expert < e and 0 <= save_index < records):
        raise ValueError(f"(chiplet, save_index, expert) must be within ({c}, {records}, {e}), "
                         f"not ({chiplet}, {save_index}, {expert})")
    return Protocol(cfg).activation_base + ((save_index * c + chiplet) * e + expert) * activation_entry_words(cfg)


def _hidden_packed(h, cfg) -> list[int]:
    """One hidden vector as the flits a chiplet saves (``hidden_flits``): packed like a token."""
    return pack_elements(np.asarray(h, dtype=np.int64), cfg.numerics.act_bits, cfg.hardware.flit_bits)


def saved_words(h, cfg) -> list[int]:
    """The DRAM words of one saved hidden vector (``activation_entry_words``), as :func:`save_packets` writes them."""
    return _flits_to_words(_hidden_packed(h, cfg), cfg)


def check_activation_region(cfg) -> None:
    """Raise :class:`ConfigError` unless the group DRAM holds the weight images and the activation region."""
    from .hardware_rules import activation_region_problems, raise_first  # noqa: PLC0415
    raise_first(activation_region_problems(cfg))


def save_packets(cfg, group: int, chiplet: int, tag: int, save_index: int, expert: int, z) -> list[Packet]:
    """The MEM_WRITE packets a chiplet sends for one saved pre-activation (``ack=0``; the dispatch's ``tag``): the
    entry's flits in order, at most ``hardware.max_burst_flits`` payload flits each, the address advancing by the
    words sent."""
    proto = Protocol(cfg)
    topo = proto.topology
    flits = _hidden_packed(z, cfg)
    burst = cfg.hardware.max_burst_flits
    addr = activation_addr(cfg, chiplet, save_index, expert)
    out = []
    for start in range(0, len(flits), burst):
        chunk = flits[start:start + burst]
        out.append(Packet(PacketKind.MEM_WRITE, topo.memctrl(group), topo.chiplet(group, chiplet), tag,
                          {"addr": addr + start * proto.words_per_flit, "words": len(chunk) * proto.words_per_flit,
                           "ack": 0}, tuple(chunk)))
    return out
