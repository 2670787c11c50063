"""The expert chiplet's restore unit: a backward token's saved pre-activations, read back from DRAM."""

from __future__ import annotations

import math

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mozart.model import golden
from mozart.model.protocol import Protocol

from .arbiter import lowest_index
from .chiplet_layouts import memory_write_signature, restore_request_layout
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ChipletRestore"]


class ChipletRestore(wiring.Component):
    """Reads the pre-activations ``z`` a backward token's selected local experts saved in the forward pass back
    into the restore buffer, and reports each (token entry, expert) whose ``z`` is complete.

    - A ``request`` (a backward token's activation-buffer entry, local expert mask and record ``save_index``) waits
      in a queue of ``token_slots`` (the ring's size, so a request is always taken). In arrival order, each
      selected expert's entry (:func:`mozart.model.golden.activation_addr`, ``hidden_flits`` flits) is read with
      MEM_READs of at most ``max_burst_flits`` flits (the token's tag), one header-only packet each on ``o``,
      ascending expert, while
      fewer than ``dram.max_outstanding`` reads are unanswered.
    - MEM_DATA answers on ``data`` come back in request order (the memory controller serves one source in order);
      their flits go into the restore buffer at ``(entry * experts_per_chiplet + expert) * hidden_flits`` onward,
      packed as they were saved. When an expert's last read is in, bit ``entry * experts_per_chiplet + expert`` of
      ``restored`` rises; a new request for the entry clears the entry's bits. A MEM_DATA while no read is
      outstanding is consumed and dropped.

    Deadlock freedom: every read is issued with its place in the restore buffer already its own (one place per
    entry and expert), so ``data`` is always taken: the answers never hold the chiplet's input (docs/protocol.md,
    "The backward pass").

    Latency and throughput: a request's first MEM_READ is offered 1 cycle after the request (the queue), then one
    per cycle while ``o`` takes them; ``restored`` rises in the cycle after the last answer flit is written. The
    restore of one expert takes the memory controller's read latency plus ``hidden_flits`` answer flits.

    Members
    -------
    request : In(stream.Signature(restore request layout))
    o : Out(link_signature(cfg))
        MEM_READ packets to ``memctrl(group)``.
    data : In(link_signature(cfg))
        MEM_DATA packets (only those; the decoder sorts them out).
    write : In(memory write signature)
        The restore buffer's write port (``token_slots * experts_per_chiplet * hidden_flits`` flits).
    restored : Out(token_slots * experts_per_chiplet)
    """

    def __init__(self, cfg, group: int, index: int, node: int, token_slots: int):
        golden.check_activation_region(cfg)   # every address it reads must exist
        self._cfg, self._proto = cfg, Protocol(cfg)
        self._group, self._index, self._node, self._token_slots = group, index, node, token_slots
        experts = cfg.experts_per_chiplet
        self.depth = token_slots * experts * golden.hidden_flits(cfg)
        super().__init__({
            "request": In(stream.Signature(restore_request_layout(cfg, token_slots))),
            "o": Out(link_signature(cfg)),
            "data": In(link_signature(cfg)),
            "write": In(memory_write_signature(self.depth, cfg.hardware.flit_bits)),
            "restored": Out(token_slots * experts),
        })

    def _reads(self):
        """(reads per expert entry, flits of the last read)."""
        hidden_flits, burst = golden.hidden_flits(self._cfg), self._cfg.hardware.max_burst_flits
        reads = math.ceil(hidden_flits / burst)
        return reads, hidden_flits - (reads - 1) * burst

    def _descriptor_layout(self):
        reads, _ = self._reads()
        return data.StructLayout({"entry": range(self._token_slots), "expert": self._proto.expert_bits,
                                  "read": range(reads), "last": 1})

    def elaborate(self, platform):
        m = Module()
        request_layout = restore_request_layout(self._cfg, self._token_slots)
        m.submodules.pending = pending = SyncFIFOBuffered(width=request_layout.size, depth=self._token_slots)
        m.submodules.outstanding = outstanding = SyncFIFOBuffered(width=self._descriptor_layout().size,
                                                                  depth=self._cfg.dram.max_outstanding)
        m.d.comb += [pending.w_data.eq(self.request.payload), pending.w_en.eq(self.request.valid),
                     self.request.ready.eq(pending.w_rdy)]
        self._issue(m, pending, outstanding)
        self._answers(m, outstanding)
        return m

    def _issue(self, m, pending, outstanding):
        """The MEM_READs of the oldest request, each recorded in ``outstanding``."""
        cfg, proto = self._cfg, self._proto
        experts, words = cfg.experts_per_chiplet, proto.words_per_flit
        reads, last_flits = self._reads()
        burst = cfg.hardware.max_burst_flits
        current = data.View(restore_request_layout(cfg, self._token_slots), pending.r_data)
        issued = Signal(experts)                  # experts of the current request whose reads are all issued
        read = Signal(range(reads))
        remaining = Signal(experts)
        m.d.comb += remaining.eq(current.experts & ~issued)
        any_left, expert = lowest_index([remaining[e] for e in range(experts)])
        last_read = read == reads - 1
        entry = (current.save_index * cfg.chiplets_per_group + self._index) * experts + expert
        header = Signal(header_layout(cfg))
        m.d.comb += self.o.payload.data.eq(header.as_value()[:proto.header_bits])
        with m.If(pending.r_rdy):
            # every field under a condition: a field driven only by a constant becomes an always block that
            # Verilator never runs (ALWNEVER)
            m.d.comb += [header.kind.eq(PacketKind.MEM_READ), header.dst.eq(proto.topology.memctrl(self._group)),
                         header.src.eq(self._node), header.tag.eq(current.tag),
                         header.meta.mem_read.addr.eq(proto.activation_base
                                                      + entry * golden.activation_entry_words(cfg)
                                                      + read * (burst * words)),
                         header.meta.mem_read.words.eq(Mux(last_read, last_flits, burst) * words),
                         self.o.payload.first.eq(1), self.o.payload.last.eq(1),
                         self.o.valid.eq(any_left & outstanding.w_rdy)]
            with m.If(~any_left):   # every read of the request issued (or none selected)
                m.d.comb += pending.r_en.eq(1)
                m.d.sync += [issued.eq(0), read.eq(0)]
        descriptor = Signal(self._descriptor_layout())
        m.d.comb += [descriptor.entry.eq(current.entry), descriptor.expert.eq(expert), descriptor.read.eq(read),
                     descriptor.last.eq(last_read), outstanding.w_data.eq(descriptor),
                     outstanding.w_en.eq(self.o.valid & self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += read.eq(Mux(last_read, 0, read + 1))
            with m.If(last_read):
                m.d.sync += issued.eq(issued | (Const(1, experts) << expert)[:experts])

    def _answers(self, m, outstanding):
        """MEM_DATA flits into the restore buffer; ``restored`` bits."""
        cfg = self._cfg
        experts, hidden_flits, burst = cfg.experts_per_chiplet, golden.hidden_flits(cfg), cfg.hardware.max_burst_flits
        target = data.View(self._descriptor_layout(), outstanding.r_data)
        flit = Signal(range(burst + 1))           # payload flits of the current answer written
        asked = Signal()                          # the packet in progress answers an outstanding read
        m.d.comb += self.data.ready.eq(1)         # an answer nobody asked for is consumed and dropped
        taken = self.data.valid & self.data.ready
        head = self.data.payload.first
        with m.If(taken & head):
            m.d.sync += [flit.eq(0), asked.eq(outstanding.r_rdy)]
        with m.Elif(taken & asked):
            m.d.comb += [self.write.addr.eq((target.entry * experts + target.expert) * hidden_flits
                                            + target.read * burst + flit),
                         self.write.data.eq(self.data.payload.data), self.write.en.eq(1)]
            m.d.sync += flit.eq(flit + 1)
        answer_done = taken & self.data.payload.last & Mux(head, outstanding.r_rdy, asked)
        m.d.comb += outstanding.r_en.eq(answer_done)
        complete = Signal(self._token_slots * experts)
        with m.If(answer_done & target.last):
            m.d.comb += complete.eq(Const(1, len(complete)) << (target.entry * experts + target.expert))
        cleared = Signal(self._token_slots * experts)
        entry_bits = Const((1 << experts) - 1, len(cleared))
        with m.If(self.request.valid & self.request.ready):
            m.d.comb += cleared.eq(entry_bits << (self.request.payload.entry * experts))
        m.d.sync += self.restored.eq((self.restored & ~cleared) | complete)

