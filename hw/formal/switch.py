"""Formal harness of the whole :class:`~mozart.hw.switch.Switch`: every port's stream rules, and where a
watched packet leaves."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assume

from mozart.model.protocol import Protocol

from ..protocol import PacketKind, header_layout
from ..switch import Switch
from .harness import (FormalHarness, StreamMonitor, assume_packet_lengths, check_stream_output,
                      drive_stream_source, output_rules)

__all__ = ["SwitchHarness"]


class SwitchHarness(FormalHarness):
    """Free, well-framed packets of every kind on every input port; free ``ready`` on every output.

    The watched packet is the one packet whose tag is ``T`` (``AnyConst``; the environment sends no other
    packet with that tag, and it does not reduce: a reducing dispatch or partial leaves as a sum, which the
    reducer's harness covers). The second watched packet, tag ``U``, enters on the same port after it.

    Parameters
    ----------
    cfg : WaferConfig
    block : type
        Built as ``block(cfg, buffer_depth=..., reduction_entries=...)``.
    buffer_depth, reduction_entries : int
        The switch's parameters under proof (default 2 and 1, the smallest that keep every behaviour: a queue
        at full throughput needs 3, at 2 it alternates; the solver's time grows with every queue entry).
    """

    PROPERTIES = {
        **output_rules("port_out"),
        "delivery": "the watched packet's head leaves once on each port it is due (the chiplets of its mask for "
                    "a DISPATCH to this switch on the up port, else the route port of its dst) and on no other "
                    "port, and only after it entered",
        "flow_order": "a packet that entered on the same port after the watched one, for the same output, "
                      "leaves there after it",
    }

    def __init__(self, cfg, block=Switch, buffer_depth: int = 2, reduction_entries: int = 1, only=None):
        self.cfg = cfg
        self.dut = block(cfg, buffer_depth=buffer_depth, reduction_entries=reduction_entries)
        proto = Protocol(cfg)
        # A head through a queue and out, plus a cycle: deeper runs take the solver tens of minutes per step on
        # tiny (docs/formal.md, "What is not proved").
        self.depth = self.dut.contract.head_latency + 1
        self.proto = proto
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        cfg, topo = self.cfg, self.proto.topology
        ports, chiplets = topo.switch_ports, topo.chiplets_per_group
        tag_bits = self.proto.tag_bits

        outs = []
        for output in range(ports):
            m.d.comb += dut.port_out[output].ready.eq(AnySeq(1))
            mon = StreamMonitor(m, dut.port_out[output], f"out{output}")
            check_stream_output(self, m, mon, "port_out.stream", "port_out.framing")
            outs.append(mon)

        watched, second = Signal(tag_bits), Signal(tag_bits)
        m.d.comb += [watched.eq(AnyConst(tag_bits)), second.eq(AnyConst(tag_bits)), Assume(watched != second)]
        watched_port = Signal(range(ports))  # the only port a packet with the watched tag comes in on
        m.d.comb += [watched_port.eq(AnyConst(len(watched_port))), Assume(watched_port < ports)]
        entered = Signal()           # the watched packet's head went in
        second_entered = Signal()
        due = Signal(ports)          # output ports the watched packet is due on
        second_due = Signal(ports)
        for port in range(ports):
            src = drive_stream_source(m, dut.port_in[port], f"in{port}")
            dispatch_node = topo.switch(0) if port == topo.UP_PORT else None
            hdr, _ = assume_packet_lengths(m, dut.port_in[port], cfg, dispatch_node, f"in{port}")
            head = dut.port_in[port].valid & dut.port_in[port].payload.first
            mcast = (port == topo.UP_PORT) & (hdr.kind == PacketKind.DISPATCH) & (hdr.dst == topo.switch(0))
            reduces = (((hdr.kind == PacketKind.DISPATCH) & hdr.meta.dispatch.reduce)
                       | ((hdr.kind == PacketKind.COMBINE) & hdr.meta.combine.reduce))
            route = Signal(ports, name=f"in{port}_route")
            first_chiplet = topo.chiplet(0, 0)
            with m.If(mcast):
                m.d.comb += route.eq(hdr.meta.dispatch.chiplets.as_value() << 1)
            with m.Elif((hdr.dst >= first_chiplet) & (hdr.dst < first_chiplet + chiplets)):
                m.d.comb += route.eq(2 << (hdr.dst - first_chiplet)[:len(hdr.dst)])
            with m.Elif(hdr.dst == topo.memctrl(0)):
                m.d.comb += route.eq(1 << topo.memctrl_port)
            with m.Else():
                m.d.comb += route.eq(1 << topo.UP_PORT)
            with m.If(head & (hdr.tag == watched)):
                m.d.comb += [Assume(~entered), Assume(~reduces), Assume(watched_port == port)]
                with m.If(src.transfer):
                    m.d.sync += [entered.eq(1), due.eq(route)]
            with m.If(head & (hdr.tag == second)):
                m.d.comb += [Assume(~second_entered), Assume(~reduces), Assume(entered & (watched_port == port))]
                with m.If(src.transfer):
                    m.d.sync += [second_entered.eq(1), second_due.eq(route)]

        left = Signal(ports)  # ports the watched packet's head has left on
        for output, mon in enumerate(outs):
            out_hdr = Signal(header_layout(cfg), name=f"out{output}_header")
            m.d.comb += out_hdr.eq(dut.port_out[output].payload.data)
            head_out = mon.transfer & dut.port_out[output].payload.first
            with m.If(head_out & (out_hdr.tag == watched)):
                self.check(m, "delivery", entered & due[output] & ~left[output])
                m.d.sync += left[output].eq(1)
            with m.If(head_out & (out_hdr.tag == second) & second_due[output] & due[output]):
                self.check(m, "flow_order", left[output])
        return m
