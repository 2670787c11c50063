"""Formal harness of :class:`~mozart.hw.switch_input.SwitchInput`: multicast to exactly the chiplets of the mask."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assume

from mozart.model.protocol import Protocol

from ..protocol import PacketKind, header_layout
from ..switch_input import SwitchInput
from .harness import (FairReady, FormalHarness, StreamMonitor, assume_packet_lengths, check_stream_output,
                      cycles_waiting, drive_stream_source, output_rules)

__all__ = ["SwitchInputHarness"]


def popcount(value, width: int):
    return sum(value[k] for k in range(width))


class SwitchInputHarness(FormalHarness):
    """Free, well-framed packets in on switch port ``port``; free ``ready`` on every output and free
    ``alloc_free``.

    The unit is combinational and handles one input flit at a time, so every packet is checked, not only a
    watched one: every flit an output takes is a copy (or, for a replica's header, the rewrite) of the input
    flit of that cycle. Input packets are well formed: ``length`` flits follow the header, and a DISPATCH for
    this switch has ``n * route_flits + token_flits`` of them for its ``n`` chiplets (backward: two token
    vectors).

    Parameters
    ----------
    cfg : WaferConfig
    port : int
        The switch port (0, the up port, is the one that multicasts).
    block : type
        Built as ``block(cfg, 0, port)``.
    ready_every : int
        K of the liveness property.
    """

    PROPERTIES = {
        **output_rules("o"),
        "dispatch": "a DISPATCH for this switch with chiplet mask M goes to exactly the chiplet ports of M, each "
                    "taking each of its flits once: its own header replica (dst = that chiplet, one-hot mask, "
                    "length = route + token flits, two token vectors if backward, the other meta fields copied), its "
                    "own route word, then the token(s); nothing else leaves",
        "unicast": "any other packet leaves, unchanged and whole, on exactly one output: the route port of its dst "
                   "(the reducer for a reducing COMBINE from a chiplet port); each flit once",
        "alloc": "a reducing dispatch header leaves only while the table has a free entry, and opens exactly one "
                 "entry (its tag, |M| partials) as it leaves",
        "liveness": "with alloc_free high and every output ready at least one cycle in K, an offered flit is "
                    "taken within K cycles",
    }

    def __init__(self, cfg, port: int = 0, block=SwitchInput, ready_every: int = 2, only=None):
        self.cfg, self.port, self.ready_every = cfg, port, ready_every
        self.dut = block(cfg, 0, port)
        self.proto = Protocol(cfg)
        self.depth = self.proto.max_dispatch_flits + 2 * ready_every + 4  # a whole dispatch at the slowest
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        topo = self.proto.topology
        src = drive_stream_source(m, dut.i, "i")
        outs = [StreamMonitor(m, dut.o[k], f"o{k}") for k in range(self._targets)]
        ready = FairReady(m, list(dut.o), self.ready_every, "o")
        for mon in outs:
            check_stream_output(self, m, mon, "o.stream", "o.framing")
        # The table's alloc_free falls only through an allocation (this unit is the only one that allocates).
        m.d.comb += dut.alloc_free.eq(AnySeq(1))
        allocated, was_free = Signal(), Signal()
        m.d.sync += [allocated.eq(dut.alloc), was_free.eq(dut.alloc_free)]
        m.d.comb += Assume(dut.alloc_free | ~was_free | allocated)

        # -- input packets: well framed, length as the header says ---------------------------------------
        dispatch_node = topo.switch(0) if self.port == topo.UP_PORT else None
        hdr, flit = assume_packet_lengths(m, dut.i, self.cfg, dispatch_node, "i")
        mask_now = hdr.meta.dispatch.chiplets.as_value()
        mcast_now = (self.port == topo.UP_PORT) & (hdr.kind == PacketKind.DISPATCH) & (hdr.dst == topo.switch(0))

        header, mask, mcast, route = self._open_packet(m, src, hdr)
        wanted = self._wanted_outputs(m, mask, mcast, route, flit)
        self._check_copies(m, src, outs, hdr, flit, mcast, wanted)

        # -- the reduction table ---------------------------------------------------------------------------
        needs_entry = mcast_now & hdr.meta.dispatch.reduce & (mask_now != 0) & dut.i.payload.first
        self.check(m, "alloc", dut.alloc == (src.transfer & needs_entry))
        with m.If(dut.alloc):
            self.check(m, "alloc", dut.alloc_free & (dut.alloc_tag == hdr.tag)
                       & (dut.alloc_count == popcount(mask_now, topo.chiplets_per_group)))

        # -- liveness --------------------------------------------------------------------------------------------
        free_so_far = Signal(init=1)
        m.d.sync += free_so_far.eq(free_so_far & dut.alloc_free)
        waited = cycles_waiting(m, dut.i, self.ready_every, "i")
        with m.If(ready.fair & free_so_far & dut.alloc_free):
            self.check(m, "liveness", waited < self.ready_every)
        return m

    @property
    def _targets(self) -> int:
        """The unit's outputs: the switch's ports and the reduction unit."""
        return self.proto.topology.switch_ports + 1

    def _open_packet(self, m, src, hdr):
        """What the open packet is (the current flit's header at a head, else the saved one): its header, its
        chiplet mask, whether it is a multicast dispatch, and the output a unicast takes."""
        topo = self.proto.topology
        chiplets = topo.chiplets_per_group
        header = Signal(header_layout(self.cfg))  # the open packet's header (the current flit's, at a head)
        saved = Signal(header_layout(self.cfg))
        with m.If(src.transfer & self.dut.i.payload.first):
            m.d.sync += saved.eq(hdr)
        m.d.comb += header.eq(saved)
        with m.If(self.dut.i.payload.first):
            m.d.comb += header.eq(hdr)
        mask = header.meta.dispatch.chiplets.as_value()
        mcast = Signal()
        m.d.comb += mcast.eq((self.port == topo.UP_PORT) & (header.kind == PacketKind.DISPATCH)
                             & (header.dst == topo.switch(0)))
        reducing = (1 <= self.port <= chiplets) & (header.kind == PacketKind.COMBINE) & header.meta.combine.reduce
        route = Signal(range(self._targets))
        first_chiplet = topo.chiplet(0, 0)
        with m.If(reducing):
            m.d.comb += route.eq(topo.switch_ports)
        with m.Elif((header.dst >= first_chiplet) & (header.dst < first_chiplet + chiplets)):
            m.d.comb += route.eq(1 + header.dst - first_chiplet)
        with m.Elif(header.dst == topo.memctrl(0)):
            m.d.comb += route.eq(topo.memctrl_port)
        with m.Else():
            m.d.comb += route.eq(topo.UP_PORT)
        return header, mask, mcast, route

    def _wanted_outputs(self, m, mask, mcast, route, flit):
        """Outputs that must take the current flit: a chiplet of M gets the header, its own route word (route
        words in ascending chiplet order) and the token; a unicast goes to its route."""
        chiplets, route_flits = self.proto.topology.chiplets_per_group, self.proto.route_flits
        wanted = Signal(self._targets)
        token_start = 1 + popcount(mask, chiplets) * route_flits
        for c in range(chiplets):
            rank = popcount(mask[:c], c) if c else 0
            own_word = (flit >= 1 + rank * route_flits) & (flit < 1 + (rank + 1) * route_flits)
            with m.If(mcast):
                m.d.comb += wanted[1 + c].eq(mask[c] & ((flit == 0) | own_word | (flit >= token_start)))
        with m.If(~mcast):
            m.d.comb += wanted.eq(1 << route)
        return wanted

    def _replica_ok(self, m, k: int, hdr):
        """Output ``k`` (a chiplet port) carries the replica header of the current dispatch header ``hdr``."""
        dut, proto = self.dut, self.proto
        replica = Signal(header_layout(self.cfg), name=f"replica{k}")
        m.d.comb += replica.eq(dut.o[k].payload.data)
        return ((replica.dst == proto.topology.chiplet(0, k - 1))
                & (replica.meta.dispatch.chiplets.as_value() == (1 << (k - 1)))
                & (replica.length == proto.route_flits + (1 + hdr.meta.dispatch.backward) * proto.token_flits)
                & (replica.kind == hdr.kind) & (replica.src == hdr.src) & (replica.tag == hdr.tag)
                & (replica.meta.dispatch.reduce == hdr.meta.dispatch.reduce)
                & (replica.meta.dispatch.save == hdr.meta.dispatch.save)
                & (replica.meta.dispatch.save_index == hdr.meta.dispatch.save_index)
                & (replica.meta.dispatch.backward == hdr.meta.dispatch.backward)
                & (dut.o[k].payload.first == 1) & (dut.o[k].payload.last == dut.i.payload.last))

    def _check_copies(self, m, src, outs, hdr, flit, mcast, wanted) -> None:
        """Each output takes each flit it should, once, and nothing else; a copy is the input flit unchanged, but
        a dispatch header on a chiplet port, which is that chiplet's replica."""
        dut, chiplets = self.dut, self.proto.topology.chiplets_per_group
        took = Signal(self._targets)  # outputs that took the current flit in earlier cycles
        with m.If(src.transfer):
            m.d.sync += took.eq(0)
        with m.Else():
            m.d.sync += took.eq(took | sum(mon.transfer << k for k, mon in enumerate(outs)))
        for k, mon in enumerate(outs):
            with m.If(mon.transfer):
                with m.If(mcast):
                    self.check(m, "dispatch", wanted[k] & ~took[k])
                with m.Else():
                    self.check(m, "unicast", wanted[k] & ~took[k])
                unchanged = dut.o[k].payload.as_value() == dut.i.payload.as_value()
                if 1 <= k <= chiplets:  # a chiplet port: a dispatch's header arrives rewritten
                    rewrite_ok = self._replica_ok(m, k, hdr)
                    with m.If(mcast):
                        self.check(m, "dispatch", Mux(flit == 0, rewrite_ok, unchanged))
                else:
                    with m.If(mcast):
                        self.check(m, "dispatch", unchanged)
                with m.If(~mcast):
                    self.check(m, "unicast", unchanged)
        taken = took | sum(mon.transfer << k for k, mon in enumerate(outs))
        with m.If(src.transfer):
            with m.If(mcast):
                self.check(m, "dispatch", (taken & wanted) == wanted)
            with m.Else():
                self.check(m, "unicast", (taken & wanted) == wanted)
