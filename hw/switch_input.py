"""One input port of the switch: route decode, dispatch multicast, and the fork to the switch's outputs."""

from __future__ import annotations

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

    latency = 0

    def __init__(self, cfg, group: int, port: int):
        self._proto = proto = Protocol(cfg)
        topo = proto.topology
        self._group, self._port = group, port
        self._chiplets = topo.chiplets_per_group
        self._ports = topo.switch_ports
        super().__init__({
            "i": In(link_signature(cfg)),
            "o": Out(link_signature(cfg)).array(self._ports + 1),
            "alloc_free": In(1),
            "alloc": Out(1),
            "alloc_tag": Out(proto.tag_bits),
            "alloc_count": Out(range(self._chiplets + 1)),
        })
        self._cfg = cfg

    def elaborate(self, platform):
        m = Module()
        proto, topo = self._proto, self._proto.topology
        C, P, port = self._chiplets, self._ports, self._port
        targets = P + 1
        reducer = P
        can_multicast = port == topo.UP_PORT
        can_reduce = 1 <= port <= C

        head = self.i.payload
        hdr = Signal(header_layout(self._cfg))
        m.d.comb += hdr.eq(head.data)

        # -- route decode of a head flit ---------------------------------------------------------------
        first_chiplet = topo.chiplet(self._group, 0)
        dst = hdr.dst
        route_port = Signal(range(P))
        with m.If((dst >= first_chiplet) & (dst < first_chiplet + C)):
            m.d.comb += route_port.eq(1 + (dst - first_chiplet))
        with m.Elif(dst == topo.memctrl(self._group)):
            m.d.comb += route_port.eq(topo.memctrl_port)
        with m.Else():
            m.d.comb += route_port.eq(topo.UP_PORT)

        mcast_now = Signal()
        reduce_now = Signal()
        chiplet_mask = Signal(C)
        if can_multicast:
            m.d.comb += [
                mcast_now.eq((hdr.kind == PacketKind.DISPATCH) & (hdr.dst == topo.switch(self._group))),
                chiplet_mask.eq(hdr.meta.dispatch.chiplets.as_value()),
            ]
        if can_reduce:
            m.d.comb += reduce_now.eq((hdr.kind == PacketKind.COMBINE) & hdr.meta.combine.reduce)
        target_now = Signal(targets)
        with m.If(mcast_now):
            m.d.comb += target_now.eq(chiplet_mask << 1)
        with m.Elif(reduce_now):
            m.d.comb += target_now.eq(1 << reducer)
        with m.Else():
            m.d.comb += target_now.eq(1 << route_port)
        needs_alloc = Signal()
        m.d.comb += needs_alloc.eq(mcast_now & hdr.meta.dispatch.reduce & chiplet_mask.any())

        # -- per-packet state --------------------------------------------------------------------------
        target = Signal(targets)   # outputs of the current packet
        mcast = Signal()           # the current packet is a multicast dispatch
        remaining = Signal(C)      # multicast: chiplets whose route word has not passed yet
        word_flit = Signal(range(max(proto.route_flits, 2)))  # flit index inside the current route word
        sent = Signal(targets)     # outputs that already took the current flit

        want = Signal(targets)     # outputs of the current flit
        with m.If(head.first):
            m.d.comb += want.eq(Mux(~needs_alloc | self.alloc_free, target_now, 0))
        with m.Elif(mcast & remaining.any()):
            m.d.comb += want.eq(lowest_one(remaining, C) << 1)  # the route word of the lowest chiplet left
        with m.Else():
            m.d.comb += want.eq(target)

        took = Signal(targets)
        for k in range(targets):
            m.d.comb += [
                self.o[k].valid.eq(self.i.valid & want[k] & ~sent[k]),
                took[k].eq(self.o[k].valid & self.o[k].ready),
                self.o[k].payload.eq(head),
            ]
        # A flit leaves the buffer when every output it goes to has it; a reducing header also needs an entry.
        all_took = Signal()
        m.d.comb += [
            all_took.eq(((sent | took) & want) == want),
            self.i.ready.eq(all_took & (~head.first | ~needs_alloc | self.alloc_free)),
        ]
        fire = self.i.valid & self.i.ready
        with m.If(fire):
            m.d.sync += sent.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += sent.eq(sent | took)

        with m.If(fire & head.first):
            m.d.sync += [target.eq(target_now), mcast.eq(mcast_now), remaining.eq(chiplet_mask), word_flit.eq(0)]
        with m.Elif(fire & mcast & remaining.any()):
            with m.If(word_flit == proto.route_flits - 1):
                m.d.sync += [word_flit.eq(0), remaining.eq(remaining & ~lowest_one(remaining, C))]
            with m.Else():
                m.d.sync += word_flit.eq(word_flit + 1)

        m.d.comb += [
            self.alloc.eq(fire & head.first & needs_alloc),
            self.alloc_tag.eq(hdr.tag),
            self.alloc_count.eq(sum(chiplet_mask[c] for c in range(C))),
        ]

        # -- multicast header rewrite: each chiplet output gets its own replica header -------------------
        if can_multicast:
            for c in range(C):
                replica = Signal(header_layout(self._cfg), name=f"replica{c}")
                m.d.comb += [
                    replica.eq(hdr),
                    replica.dst.eq(topo.chiplet(self._group, c)),
                    replica.length.eq(proto.route_flits + proto.token_flits),
                    replica.meta.dispatch.chiplets.as_value().eq(1 << c),
                ]
                with m.If(head.first & mcast_now):
                    m.d.comb += self.o[1 + c].payload.data.eq(replica)
        return m
