"""One input port of the switch: route decode, dispatch multicast, and the fork to the switch's outputs."""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol

from .arbiter import lowest_one
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["SwitchInput"]


class SwitchInput(wiring.Component):
    """Decides where each packet arriving on switch port ``port`` goes, and offers its flits there.

    Outputs are indexed like the switch's ports (0 up, 1..C chiplets, C+1 memory controller), plus index P
    (= ``switch_ports``) for the reduction unit. At a head flit the unit decodes the header:

    - ``port == 0``, DISPATCH, ``dst`` = this switch: **multicast** to the chiplet ports of ``chiplets``. Each
      gets a rewritten header (``dst`` = its chiplet, ``chiplets`` = one-hot, ``length`` = one route word +
      token), then only its own route word (route words come in ascending chiplet order), then the token. The
      flit is offered to all its outputs at once and leaves the buffer when every one of them took it (an eager
      fork: an output that took it is not offered it again). With ``reduce=1`` the header waits until the
      reduction table has a free entry (``alloc_free``) and allocates it (``alloc``) as it leaves.
    - ``1 <= port <= C``, COMBINE with ``reduce=1``: to the reduction unit.
    - anything else: to the port ``Topology.switch_port_of`` gives for ``dst`` (up if ``dst`` is not below).

    The decision is kept for the packet's remaining flits.

    Members
    -------
    i : In(link_signature(cfg))
        Flits from the port's input buffer.
    o : Out(link_signature(cfg)).array(P + 1)
        One stream per destination; ``o[k].valid`` never depends on ``o[k].ready``.
    alloc_free : In(1)
        The reduction table has a free entry (used by port 0 only).
    alloc : Out(1)
        Strobe: a reducing dispatch header leaves this cycle; open an entry for ``alloc_tag``.
    alloc_tag : Out(tag_bits)
    alloc_count : Out(range(C + 1))
        Partials the entry expects (the number of destination chiplets).

    Attributes
    ----------
    latency : int
        0 cycles (combinational decode and fork).
    """

    def __init__(self, cfg, group: int, port: int):
        self._proto = proto = Protocol(cfg)
        topo = proto.topology
        self._group, self._port = group, port
        self._chiplets = topo.chiplets_per_group
        self._ports = topo.switch_ports
        # chiplet c's output is this + c (the topology numbers the ports: up, the chiplets, the memory controller)
        self._first_chiplet_port = topo.switch_port_of(group, topo.chiplet(group, 0))
        super().__init__({
            "i": In(link_signature(cfg)),
            "o": Out(link_signature(cfg)).array(self._targets),
            "alloc_free": In(1),
            "alloc": Out(1),
            "alloc_tag": Out(proto.tag_bits),
            "alloc_count": Out(range(self._chiplets + 1)),
        })
        self._cfg = cfg

    def elaborate(self, platform):
        m = Module()
        head = self.i.payload
        hdr = Signal(header_layout(self._cfg))
        m.d.comb += hdr.eq(head.data)
        decision = self._decode(m, hdr)

        targets = self._targets
        packet = _Packet(target=Signal(targets, name="target"), mcast=Signal(name="mcast"),
                         remaining=Signal(self._chiplets, name="remaining"),
                         word_flit=Signal(range(max(self._proto.route_flits, 2)), name="word_flit"),
                         sent=Signal(targets, name="sent"))
        want = self._wanted_outputs(m, decision, packet)
        fire = self._fork(m, decision, packet, want)
        self._advance(m, decision, packet, fire)
        m.d.comb += [
            self.alloc.eq(fire & head.first & decision.needs_alloc),
            self.alloc_tag.eq(hdr.tag),
            self.alloc_count.eq(sum(decision.chiplet_mask[chiplet] for chiplet in range(self._chiplets))),
        ]
        if self._port == self._proto.topology.UP_PORT:
            self._rewrite_replica_headers(m, hdr, decision)
        return m

    def _route_port(self, m, dst):
        """The switch port towards node ``dst``: its chiplet's, the memory controller's, else up."""
        topo = self._proto.topology
        first_chiplet = topo.chiplet(self._group, 0)
        route_port = Signal(range(self._ports))
        with m.If((dst >= first_chiplet) & (dst < first_chiplet + self._chiplets)):
            m.d.comb += route_port.eq(self._first_chiplet_port + (dst - first_chiplet))
        with m.Elif(dst == topo.memctrl(self._group)):
            m.d.comb += route_port.eq(topo.memctrl_port)
        with m.Else():
            m.d.comb += route_port.eq(topo.UP_PORT)
        return route_port

    def _decode(self, m, hdr) -> _Decision:
        """Where a head flit's packet goes (combinational; only multicast on the up port, only reduction on a
        chiplet port)."""
        topo = self._proto.topology
        route_port = self._route_port(m, hdr.dst)
        mcast_now = Signal()
        reduce_now = Signal()
        chiplet_mask = Signal(self._chiplets)
        if self._port == topo.UP_PORT:
            m.d.comb += [
                mcast_now.eq((hdr.kind == PacketKind.DISPATCH) & (hdr.dst == topo.switch(self._group))),
                chiplet_mask.eq(hdr.meta.dispatch.chiplets.as_value()),
            ]
        if self._first_chiplet_port <= self._port < self._first_chiplet_port + self._chiplets:
            m.d.comb += reduce_now.eq((hdr.kind == PacketKind.COMBINE) & hdr.meta.combine.reduce)
        target_now = Signal(self._targets)
        with m.If(mcast_now):
            m.d.comb += target_now.eq(chiplet_mask << self._first_chiplet_port)
        with m.Elif(reduce_now):
            m.d.comb += target_now.eq(1 << self._reducer_output)
        with m.Else():
            m.d.comb += target_now.eq(1 << route_port)
        needs_alloc = Signal()
        m.d.comb += needs_alloc.eq(mcast_now & hdr.meta.dispatch.reduce & chiplet_mask.any())
        return _Decision(target_now, mcast_now, chiplet_mask, needs_alloc)

    @property
    def _reducer_output(self) -> int:
        """The output towards the reduction unit: the one after the switch's ports."""
        return self._ports

    @property
    def _targets(self) -> int:
        """Outputs of the unit: one per switch port, and the reduction unit."""
        return self._reducer_output + 1

    def _wanted_outputs(self, m, decision: _Decision, packet: _Packet):
        """The outputs of the current flit: a head's targets (none while a reducing one waits for a table
        entry), a multicast route word's own chiplet, else the packet's targets."""
        head = self.i.payload
        want = Signal(self._targets)
        with m.If(head.first):
            m.d.comb += want.eq(Mux(~decision.needs_alloc | self.alloc_free, decision.target_now, 0))
        with m.Elif(packet.mcast & packet.remaining.any()):
            # the route word of the lowest chiplet left
            m.d.comb += want.eq(lowest_one(packet.remaining, self._chiplets) << self._first_chiplet_port)
        with m.Else():
            m.d.comb += want.eq(packet.target)
        return want

    def _fork(self, m, decision: _Decision, packet: _Packet, want):
        """The eager fork: the flit is offered to each wanted output that has not taken it yet; it leaves the
        input when every one of them has it (a reducing header also needs an entry). Returns that strobe."""
        head = self.i.payload
        targets = self._targets
        took = Signal(targets)
        for target in range(targets):
            m.d.comb += [
                self.o[target].valid.eq(self.i.valid & want[target] & ~packet.sent[target]),
                took[target].eq(self.o[target].valid & self.o[target].ready),
                self.o[target].payload.eq(head),
            ]
        all_took = Signal()
        m.d.comb += [
            all_took.eq(((packet.sent | took) & want) == want),
            self.i.ready.eq(all_took & (~head.first | ~decision.needs_alloc | self.alloc_free)),
        ]
        fire = self.i.valid & self.i.ready
        with m.If(fire):
            m.d.sync += packet.sent.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += packet.sent.eq(packet.sent | took)
        return fire

    def _advance(self, m, decision: _Decision, packet: _Packet, fire) -> None:
        """Keep a head's decision for the packet; step a multicast through its route words, one per chiplet."""
        head = self.i.payload
        route_flits = self._proto.route_flits
        with m.If(fire & head.first):
            m.d.sync += [packet.target.eq(decision.target_now), packet.mcast.eq(decision.mcast_now),
                         packet.remaining.eq(decision.chiplet_mask), packet.word_flit.eq(0)]
        with m.Elif(fire & packet.mcast & packet.remaining.any()):
            with m.If(packet.word_flit == route_flits - 1):
                m.d.sync += [packet.word_flit.eq(0),
                             packet.remaining.eq(packet.remaining & ~lowest_one(packet.remaining, self._chiplets))]
            with m.Else():
                m.d.sync += packet.word_flit.eq(packet.word_flit + 1)

    def _rewrite_replica_headers(self, m, hdr, decision: _Decision) -> None:
        """Each chiplet output of a multicast gets its own replica header (its chiplet, a one-hot mask, one
        route word and the token)."""
        proto, topo = self._proto, self._proto.topology
        for chiplet in range(self._chiplets):
            replica = Signal(header_layout(self._cfg), name=f"replica{chiplet}")
            m.d.comb += [
                replica.eq(hdr),
                replica.dst.eq(topo.chiplet(self._group, chiplet)),
                # the length field counts the flits after the header
                replica.length.eq(Mux(hdr.meta.dispatch.backward, proto.dispatch_flits(1, backward=True),
                                      proto.dispatch_flits(1)) - 1),
                replica.meta.dispatch.chiplets.as_value().eq(1 << chiplet),
            ]
            with m.If(self.i.payload.first & decision.mcast_now):
                m.d.comb += self.o[self._first_chiplet_port + chiplet].payload.data.eq(replica)


class _Decision(NamedTuple):
    """Where a head flit's packet goes, decoded combinationally from its header."""
    target_now: Signal    # one bit per output
    mcast_now: Signal     # a DISPATCH for this switch (up port only)
    chiplet_mask: Signal  # its destination chiplets
    needs_alloc: Signal   # it reduces: it needs a table entry


class _Packet(NamedTuple):
    """The decision for the packet in flight, kept from its head to its tail."""
    target: Signal     # outputs of the current packet
    mcast: Signal      # the current packet is a multicast dispatch
    remaining: Signal  # multicast: chiplets whose route word has not passed yet
    word_flit: Signal  # flit index inside the current route word
    sent: Signal       # outputs that already took the current flit
