"""A packet-granular stream multiplexer: ``n`` packet streams share one output, whole packets at a time."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arbiter import PacketArbiter

__all__ = ["PacketMux"]


class PacketMux(wiring.Component):
    """Merges ``n`` packet streams into one, with round-robin arbitration and a wormhole lock.

    A packet is the flits from a head to the first flit with ``last`` set. When the output is free, the first
    valid input after the last winner (cyclically) wins; its flits then pass until its tail, with no flit of any
    other input between them (:class:`~mozart.hw.arbiter.PacketArbiter`). Every flit is passed unchanged.
    The mux is combinational: a flit can pass in the cycle it is offered, and ``o.valid`` never depends on
    ``o.ready``.

    Parameters
    ----------
    layout : data.Layout
        The payload of every stream; it must have a 1-bit ``last`` field (e.g. ``flit_layout(cfg)``).
    n : int
        Number of inputs (at least 1).

    Members
    -------
    i : In(stream.Signature(layout)).array(n)
        The inputs. A valid flit on a free mux must be a head (the start of a packet).
    o : Out(stream.Signature(layout))
        The merged stream.

    Attributes
    ----------
    latency : int
        0 cycles (combinational).
    flits_per_cycle : float
        1.0: one flit per cycle while the owner offers one and ``o.ready`` is high, including from one packet's
        tail to the next packet's head.
    """

    def __init__(self, layout, n: int):
        layout = data.Layout.cast(layout)
        if not isinstance(layout, data.StructLayout) or "last" not in layout.members:
            raise ValueError(f"PacketMux layout must be a StructLayout with a 'last' field, not {layout!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"PacketMux input count must be a positive integer, not {n!r}")
        self._n = n
        sig = stream.Signature(layout)
        super().__init__({"i": In(sig).array(n), "o": Out(sig)})

    @property
    def n(self) -> int:
        return self._n

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = PacketArbiter(self._n)
        valid = 0
        payload = 0
        for index, source in enumerate(self.i):
            m.d.comb += [
                arbiter.requests[index].eq(source.valid),
                source.ready.eq(arbiter.grant[index] & self.o.ready),
            ]
            valid = valid | (source.valid & arbiter.grant[index])
            bits = source.payload.as_value()
            payload = payload | (bits & arbiter.grant[index].replicate(len(bits)))  # AND-OR mux: grant is one-hot
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.eq(payload),
            arbiter.done.eq(self.o.valid & self.o.ready & self.o.payload.last),
        ]
        return m
