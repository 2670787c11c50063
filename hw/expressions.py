"""Helpers for Amaranth expressions that every block uses."""

from __future__ import annotations

from amaranth import Mux, Signal

__all__ = ["named", "clamp", "rshift_round", "tree_sum"]


def named(m, value, name: str, shape=None) -> Signal:
    """``value`` in a combinational signal of its own. Amaranth writes a Python expression out again at every
    use in the Verilog, and a signal once, so an expression used several times is smaller (and easier to find in
    a waveform) as a signal."""
    signal = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += signal.eq(value)
    return signal


def clamp(m, v, bits: int, name: str):
    """``v`` saturated to a signed ``bits``-bit value."""
    v = named(m, v, f"{name}_unclamped")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def rshift_round(m, v, shift: int, name: str):
    """Round half away from zero (golden.rshift_round): ``(v + 2**(s-1) - [v < 0]) >> s``."""
    if shift == 0:
        return v
    return named(m, (v + (1 << (shift - 1)) - v[-1]) >> shift, f"{name}_rounded")


def tree_sum(values):
    """Balanced adder tree (widths grow by one bit per level, not per term)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
