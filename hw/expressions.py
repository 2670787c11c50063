"""Helpers for Amaranth expressions that every block uses."""

from __future__ import annotations

from amaranth import Signal

__all__ = ["named"]


def named(m, value, name: str, shape=None) -> Signal:
    """``value`` in a combinational signal of its own. Amaranth writes a Python expression out again at every
    use in the Verilog, and a signal once, so an expression used several times is smaller (and easier to find in
    a waveform) as a signal."""
    signal = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += signal.eq(value)
    return signal
