"""The expert chiplet's weight loader: WEIGHT packets into the weight SRAM slots, and which slot holds what."""

from __future__ import annotations

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol

from .arbiter import lowest_index
from .chiplet_layouts import loaded_layout, memory_write_signature, slot_expert_signature, slot_lookup_signature
from .protocol import header_layout, link_signature

__all__ = ["ChipletWeightLoader"]


class ChipletWeightLoader(wiring.Component):
    """Writes WEIGHT packets into the weight SRAM (``sram_slots`` slots of ``image_flits`` flits) and keeps the
    slot table: the expert each slot holds and whether it holds it completely (``valid``).

    A WEIGHT packet (meta ``slot``, ``expert``, ``offset``, ``final``) writes its payload flits into its slot
    from flit ``offset // words_per_flit`` on (never past the slot's end). Its header marks the slot empty and
    names the slot's new expert, and marks empty every other slot holding that expert: a chiplet holds one copy
    of a local expert, the newest load's (a local index names a different expert in each layer, so a slot left
    from an earlier layer must neither answer a lookup nor hold up a load). When a ``final`` packet's last flit
    is written the slot is valid and a ``loaded`` event reports it (slot, expert, tag of the packet).

    Interlocks at the header (the header waits, ``i.ready`` low): a slot it empties (its own, or another one
    holding its expert) whose valid expert is still needed by an accepted token (``expert_busy``), and a
    ``final`` packet for a slot whose previous LOADED is unsent.

    Latency and throughput: one payload flit per cycle, written in the cycle it arrives; the slot is valid
    and ``loaded`` fires in the cycle of the final packet's last flit (header-only packet: its header).

    Members
    -------
    i : In(link_signature(cfg))
        WEIGHT packets for existing slots (the decoder drops the others).
    write : In(memory write signature)
        The weight SRAM's write port.
    loaded : Out(stream.Signature(loaded layout, always_ready=True))
    loaded_unsent : In(sram_slots)
        Bit ``s``: slot ``s``'s LOADED is not yet sent.
    expert_busy : In(experts_per_chiplet)
        Bit ``e``: an accepted token still needs local expert ``e``.
    lookup : In(slot_lookup_signature(cfg))
        The lowest valid slot holding an expert (combinational), not counting ``held`` slots.
    slot_expert : In(slot_expert_signature(cfg))
        The expert a slot holds (combinational; for the update unit's UPDATED).
    held : In(sram_slots)
        Bit ``s``: slot ``s`` is being updated; no job may start on it.
    slot_in_use : Out(sram_slots)
        Bit ``s``: slot ``s`` holds an expert an accepted token still needs (an UPDATE of it waits).
    """

    def __init__(self, cfg):
        self._cfg, self._proto = cfg, Protocol(cfg)
        slots = cfg.hardware.sram_slots
        super().__init__({
            "i": In(link_signature(cfg)),
            "write": In(memory_write_signature(slots * self._proto.image_flits, cfg.hardware.flit_bits)),
            "loaded": Out(stream.Signature(loaded_layout(cfg), always_ready=True)),
            "loaded_unsent": In(slots),
            "expert_busy": In(cfg.experts_per_chiplet),
            "lookup": In(slot_lookup_signature(cfg)),
            "slot_expert": In(slot_expert_signature(cfg)),
            "held": In(slots),
            "slot_in_use": Out(slots),
        })

    def elaborate(self, platform):
        m = Module()
        proto, slots, image = self._proto, self._cfg.hardware.sram_slots, self._proto.image_flits
        slot_valid = Array(Signal(name=f"slot{s}_valid") for s in range(slots))
        slot_expert = Array(Signal(proto.expert_bits, name=f"slot{s}_expert") for s in range(slots))
        hits = [slot_valid[s] & ~self.held[s] & (slot_expert[s] == self.lookup.expert) for s in range(slots)]
        found, found_slot = lowest_index(hits)
        m.d.comb += [self.lookup.found.eq(found), self.lookup.slot.eq(found_slot),
                     self.slot_expert.expert.eq(slot_expert[self.slot_expert.slot])]

        header = header_layout(self._cfg)(self.i.payload.data)
        head = header.meta.weight
        receiving = Signal()        # the header is taken: payload flits follow
        current = Signal(self.loaded.payload.shape())   # slot, expert and tag of the packet being received
        final = Signal()
        w_ptr = Signal(range(slots * image + 1))
        w_end = Signal(range(slots * image + 1))   # a packet running past its slot must not write the next one
        busy = Array(self.expert_busy[e] for e in range(self._cfg.experts_per_chiplet))
        unsent = Array(self.loaded_unsent[s] for s in range(slots))
        m.d.comb += [self.slot_in_use[s].eq(slot_valid[s] & busy[slot_expert[s]]) for s in range(slots)]
        # the slots the header empties: its own, and every other one holding its expert (the older copy)
        emptied = Cat(*((head.slot == s) | (slot_expert[s] == head.expert) for s in range(slots)))
        blocked = Signal()   # an emptied slot's expert is still needed, or the slot's last LOADED is unsent
        m.d.comb += blocked.eq((self.slot_in_use & emptied).any() | (head.final & unsent[head.slot]))

        with m.If(~receiving):
            m.d.comb += [self.i.ready.eq(~blocked), self.loaded.payload.slot.eq(head.slot),
                         self.loaded.payload.expert.eq(head.expert), self.loaded.payload.tag.eq(header.tag)]
            with m.If(self.i.valid & ~blocked):
                for s in range(slots):
                    with m.If(emptied[s]):
                        m.d.sync += slot_valid[s].eq(0)
                m.d.sync += [slot_expert[head.slot].eq(head.expert),
                             current.slot.eq(head.slot), current.expert.eq(head.expert), current.tag.eq(header.tag),
                             final.eq(head.final), w_ptr.eq(head.slot * image + head.offset // proto.words_per_flit),
                             w_end.eq(head.slot * image + image)]
                with m.If(~self.i.payload.last):
                    m.d.sync += receiving.eq(1)
                with m.Elif(head.final):   # a header-only final packet
                    m.d.sync += slot_valid[head.slot].eq(1)
                    m.d.comb += self.loaded.valid.eq(1)
        with m.Else():
            m.d.comb += [self.i.ready.eq(1), self.loaded.payload.eq(current), self.write.addr.eq(w_ptr),
                         self.write.data.eq(self.i.payload.data), self.write.en.eq(self.i.valid & (w_ptr < w_end))]
            with m.If(self.i.valid):
                m.d.sync += w_ptr.eq(w_ptr + 1)
                with m.If(self.i.payload.last):
                    m.d.sync += receiving.eq(0)
                    with m.If(final):
                        m.d.sync += slot_valid[current.slot].eq(1)
                        m.d.comb += self.loaded.valid.eq(1)
        return m
