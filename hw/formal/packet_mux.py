"""Formal harness of :class:`~mozart.hw.packet_mux.PacketMux`: stream rules, conservation, no interleaving."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq

from ..packet_mux import PacketMux
from ..protocol import flit_layout
from .harness import FormalHarness, StreamMonitor, check_stream_output, drive_stream_source, output_rules

__all__ = ["PacketMuxHarness"]


class PacketMuxHarness(FormalHarness):
    """``n`` free, well-framed packet streams in; free ``o.ready``.

    Parameters
    ----------
    cfg : WaferConfig
        Gives the flit layout.
    n : int
        Inputs (the switch's up-port mux has ``switch_ports + 1``).
    block : type
        Built as ``block(flit_layout(cfg), n)``.
    """

    PROPERTIES = {
        **output_rules("o"),
        "conservation": "a flit leaves on o exactly when exactly one input hands one over, and it is that flit, "
                        "unchanged: none lost, created or duplicated",
        "no_interleave": "the flits of one output packet all come from the input that sent its head",
    }

    def __init__(self, cfg, n: int, block=PacketMux, only=None):
        self.dut = block(flit_layout(cfg), n)
        self.n = n
        self.depth = 2 * n + 4  # a packet from each input in turn, plus margin
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        n = self.n
        sources = [drive_stream_source(m, dut.i[k], f"i{k}") for k in range(n)]
        out = StreamMonitor(m, dut.o, "o")
        m.d.comb += dut.o.ready.eq(AnySeq(1))
        check_stream_output(self, m, out, "o.stream", "o.framing")

        handed = sum(s.transfer for s in sources)
        self.check(m, "conservation", out.transfer == (handed == 1))
        self.check(m, "conservation", handed <= 1)
        for k, s in enumerate(sources):
            with m.If(s.transfer):
                self.check(m, "conservation", dut.o.payload.as_value() == dut.i[k].payload.as_value())

        owner = Signal(range(n))  # the input whose packet is open on o
        for k, s in enumerate(sources):
            with m.If(s.transfer):
                with m.If(out.in_packet):
                    self.check(m, "no_interleave", owner == k)
                m.d.sync += owner.eq(k)
        return m
