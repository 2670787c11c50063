"""The expert chiplet's packet decoder: sends each packet arriving from the switch to the unit of its kind."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ChipletDecoder"]


class ChipletDecoder(wiring.Component):
    """Routes whole packets by kind, decided at the head flit and kept until the packet's last flit.

    - WEIGHT naming a weight slot that exists (``slot < hardware.sram_slots``) -> ``weight``;
    - DISPATCH -> ``dispatch``;
    - MEM_DATA (a restore read's answer) -> ``mem_data``;
    - UPDATE -> ``update``; MEM_ACK (the write-back's last write done) -> ``mem_ack``;
    - any other kind, a WEIGHT for a slot that does not exist, and a stray payload flit outside a packet are
      consumed and dropped.

    A new packet kind gets a new output here and a unit of its own behind it.

    Latency and throughput: 0 cycles (combinational), one flit per cycle; ``i.ready`` is the ready of the
    output the flit goes to (a head flit may wait there), 1 for a dropped flit, 0 while no flit is offered at
    a packet boundary.

    Members
    -------
    i : In(link_signature(cfg))
        Flits from the switch.
    weight, dispatch, mem_data, update, mem_ack : Out(link_signature(cfg))
        The packets of each kind, flit for flit.
    """

    #: output -> the state that forwards a packet to it (and the packet kind, but WEIGHT's slot check)
    OUTPUTS = {"weight": "WEIGHT", "dispatch": "DISPATCH", "mem_data": "MEM_DATA", "update": "UPDATE",
               "mem_ack": "MEM_ACK"}

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({"i": In(link_signature(cfg)),
                          **{name: Out(link_signature(cfg)) for name in self.OUTPUTS}})

    def elaborate(self, platform):
        m = Module()
        flit = self.i
        header = header_layout(self._cfg)(flit.payload.data)
        m.d.comb += [getattr(self, name).payload.eq(flit.payload) for name in self.OUTPUTS]
        with m.FSM(name="route"):
            with m.State("HEAD"):
                with m.If(flit.valid & flit.payload.first):
                    with m.Switch(header.kind):
                        with m.Case(PacketKind.WEIGHT):
                            with m.If(header.meta.weight.slot < self._cfg.hardware.sram_slots):
                                self._forward(m, self.weight, "WEIGHT")
                            with m.Else():
                                self._forward(m, None, "DROP")
                        for name, state in self.OUTPUTS.items():
                            if name != "weight":
                                with m.Case(PacketKind[state]):
                                    self._forward(m, getattr(self, name), state)
                        with m.Default():
                            self._forward(m, None, "DROP")
                with m.Elif(flit.valid):   # a stray payload flit outside a packet
                    m.d.comb += flit.ready.eq(1)
            for state, output in [*((state, getattr(self, name)) for name, state in self.OUTPUTS.items()),
                                  ("DROP", None)]:
                with m.State(state):
                    self._forward(m, output, "HEAD", at_last=True)
        return m

    def _forward(self, m, output, state: str, *, at_last: bool = False):
        """Offer the current flit to ``output`` (``None``: drop it); after its transfer go to ``state`` if the
        flit is (``at_last``) or is not (a head) the packet's last."""
        flit = self.i
        if output is None:
            m.d.comb += flit.ready.eq(1)
        else:
            m.d.comb += [output.valid.eq(flit.valid), flit.ready.eq(output.ready)]
        with m.If(flit.valid & flit.ready & (flit.payload.last if at_last else ~flit.payload.last)):
            m.next = state
