"""The expert chiplet's token receiver: DISPATCH packets into the activation buffer."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.chiplet import EngineGeometry
from mozart.model.protocol import Protocol

from .chiplet_layouts import memory_write_signature, ring_signature, token_layout
from .protocol import header_layout, link_signature

__all__ = ["ChipletTokenReceiver"]


class ChipletTokenReceiver(wiring.Component):
    """Takes a DISPATCH replica (header, one route word of ``route_flits`` flits, then ``token_flits`` token flits,
    or for a backward dispatch the output gradient's and the token's) when the token ring has room, writes the
    vectors into its ring entry of the activation buffer (``EngineGeometry.entry_flits`` flits per entry, from
    its start) and reports the whole token with its route word (local expert mask and gates), tag, ``reduce``,
    ``save``, ``save_index`` and ``backward`` as one ``token`` event at its last flit.

    Latency and throughput: one flit per cycle; the ``token`` event fires in the cycle of the last flit. The
    header waits (``i.ready`` low) while the ring is full.

    Members
    -------
    i : In(link_signature(cfg))
        DISPATCH packets.
    write : In(memory write signature)
        The activation buffer's write port.
    ring : In(ring_signature(token_slots))
        The ring entry the token goes to, and whether the ring has room.
    token : Out(stream.Signature(token layout, always_ready=True))
    """

    def __init__(self, cfg, token_slots: int):
        self._cfg, self._proto = cfg, Protocol(cfg)
        self._entry_flits = EngineGeometry(cfg).entry_flits
        super().__init__({
            "i": In(link_signature(cfg)),
            "write": In(memory_write_signature(token_slots * self._entry_flits, cfg.hardware.flit_bits)),
            "ring": In(ring_signature(token_slots)),
            "token": Out(stream.Signature(token_layout(cfg), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        proto, flit_bits, experts = self._proto, self._cfg.hardware.flit_bits, self._cfg.experts_per_chiplet
        header = header_layout(self._cfg)(self.i.payload.data)
        receiving = Signal()        # the header is taken: route and token flits follow
        count = Signal(range(proto.max_payload_flits + 1))   # payload flits taken
        route = Signal(proto.route_flits * flit_bits)
        token = self.token.payload
        tag, reduce, save = Signal.like(token.tag), Signal(), Signal()   # from the header
        save_index, backward = Signal.like(token.save_index), Signal()
        m.d.comb += [token.experts.eq(route[:experts]), token.gates.eq(route[experts:experts + len(token.gates)]),
                     token.tag.eq(tag), token.reduce.eq(reduce), token.save.eq(save), token.save_index.eq(save_index),
                     token.backward.eq(backward)]

        with m.If(~receiving):
            m.d.comb += self.i.ready.eq(self.ring.room)
            with m.If(self.i.valid & self.ring.room):
                m.d.sync += [tag.eq(header.tag), reduce.eq(header.meta.dispatch.reduce),
                             save.eq(header.meta.dispatch.save), save_index.eq(header.meta.dispatch.save_index),
                             backward.eq(header.meta.dispatch.backward), count.eq(0)]
                with m.If(~self.i.payload.last):
                    m.d.sync += receiving.eq(1)
        with m.Else():
            m.d.comb += [self.i.ready.eq(1),
                         self.write.addr.eq(self.ring.entry * self._entry_flits + count - proto.route_flits),
                         self.write.data.eq(self.i.payload.data),
                         self.write.en.eq(self.i.valid & (count >= proto.route_flits))]
            with m.If(self.i.valid):
                m.d.sync += count.eq(count + 1)
                for i in range(proto.route_flits):
                    with m.If(count == i):
                        m.d.sync += route[i * flit_bits:(i + 1) * flit_bits].eq(self.i.payload.data)
                with m.If(self.i.payload.last):
                    m.d.sync += receiving.eq(0)
                    m.d.comb += self.token.valid.eq(1)
        return m
