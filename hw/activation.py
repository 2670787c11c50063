"""The activation and its derivative on one element, as hardware: ReLU is a comparison, SiLU and GELU are ROMs
of :func:`mozart.model.golden.activation_table` / :func:`mozart.model.golden_backward.derivative_table`."""

from __future__ import annotations

from amaranth import Mux, Signal, signed
from amaranth.lib.memory import Memory

from mozart.model import golden, golden_backward

__all__ = ["activate", "derivative"]


def _rom(m, table, value, bits: int, name: str) -> Signal:
    m.submodules[name] = rom = Memory(shape=signed(bits), depth=1 << bits, init=table)
    read = rom.read_port(domain="comb")
    out = Signal(signed(bits), name=name)
    m.d.comb += [read.addr.eq(value.as_unsigned()), out.eq(read.data)]
    return out


def activate(m, z, cfg, name: str):
    """``act(z)`` of a signed ``act_bits`` value, combinational (``golden.activate`` on one element)."""
    table = golden.activation_table(cfg)
    if table is None:
        return Mux(z < 0, 0, z)
    return _rom(m, table, z, cfg.numerics.act_bits, name)


def derivative(m, z, cfg, name: str):
    """``act'(z)`` in ``deriv_frac(act_bits)`` fractional bits, combinational; ``None`` for ReLU, whose derivative
    is the test ``z > 0`` (``golden_backward.derivative_table``)."""
    table = golden_backward.derivative_table(cfg)
    if table is None:
        return None
    return _rom(m, table, z, cfg.numerics.act_bits, name)
