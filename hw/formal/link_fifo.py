"""Formal harness of :class:`~mozart.hw.link_fifo.LinkFifo`: stream rules, conservation, order, liveness."""

from __future__ import annotations

from amaranth import Module, Signal

from ..link_fifo import LinkFifo
from .harness import FormalHarness, counter_bits, output_rules, stream_in_stream_out, watched_index

__all__ = ["LinkFifoHarness"]


class LinkFifoHarness(FormalHarness):
    """Free flits in (stream rules and packet framing assumed), free ``o.ready`` out.

    Parameters
    ----------
    cfg : WaferConfig
    depth : int, optional
        FIFO depth (default ``cfg.hardware.buffer_depth``).
    block : type
        The block under test, built as ``block(cfg, depth)`` (a mutant subclass in the mutant tests).
    ready_every : int
        K of the liveness property: ``o.ready`` high at least one cycle in K.
    """

    PROPERTIES = {
        **output_rules("o"),
        "conservation": "flits out never exceed flits in; the occupancy (in - out) never exceeds the depth; "
                        "o offers a flit only while the occupancy is positive",
        "order": "the w-th flit out is the w-th flit in, unchanged (w chosen by the solver): in order, none "
                 "lost, duplicated or altered",
        "liveness": "with o.ready high at least one cycle in K, an accepted flit leaves within "
                    "latency + depth * (K + 1) cycles",
    }

    def __init__(self, cfg, depth: int | None = None, block=LinkFifo, ready_every: int = 2, only=None):
        self.dut = block(cfg, depth)
        self.ready_every = ready_every
        self.bound = self.dut.contract.latency + self.dut.contract.depth * (ready_every + 1)
        self.depth = self.bound + 1  # the longest scenario: a flit that leaves at the liveness bound
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        src, out, ready = stream_in_stream_out(self, m, dut.i, dut.o, self.ready_every)

        bits = counter_bits(self.depth)
        flits_in, flits_out = Signal(bits), Signal(bits)
        m.d.sync += [flits_in.eq(flits_in + src.transfer), flits_out.eq(flits_out + out.transfer)]
        occupancy = flits_in - flits_out
        self.check(m, "conservation", flits_out <= flits_in)
        self.check(m, "conservation", occupancy <= dut.contract.depth)
        with m.If(dut.o.valid):
            self.check(m, "conservation", occupancy > 0)

        w, pick = watched_index(bits, "watched")
        m.d.comb += pick
        watched = Signal(dut.i.payload.shape())
        accepted, left = Signal(), Signal()
        age = Signal(range(self.bound + 2))
        with m.If(src.transfer & (flits_in == w)):
            m.d.sync += [watched.eq(dut.i.payload), accepted.eq(1), age.eq(0)]
        with m.If(out.transfer & (flits_out == w)):
            self.check(m, "order", accepted)
            self.check(m, "order", dut.o.payload.as_value() == watched.as_value())
            m.d.sync += left.eq(1)
        with m.If(accepted & ~left & (age <= self.bound)):
            m.d.sync += age.eq(age + 1)
        with m.If(ready.fair & accepted & ~left):
            self.check(m, "liveness", age <= self.bound)
        return m
