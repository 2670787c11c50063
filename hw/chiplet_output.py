"""The expert chiplet's output: LOADED, COMBINE and MEM_WRITE packets onto its link, one whole packet at a time."""

from __future__ import annotations

import math
from contextlib import contextmanager

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model import golden
from mozart.model.protocol import Protocol

from .arbiter import lowest_index
from .chiplet_layouts import gate_grads_layout, hidden_layout, loaded_layout, partial_layout
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ChipletOutput"]


def _flits_of(elements, count: int, per_flit: int):
    """The flits of ``count`` elements packed like ``Protocol.pack_elements``: element 0 in the low bits, never
    split across flits."""
    return Array(Cat(*(elements[j] for j in range(i * per_flit, min(count, (i + 1) * per_flit))))
                 for i in range(math.ceil(count / per_flit)))


class ChipletOutput(wiring.Component):
    """Sends, by priority, a LOADED report, a token's partial as one COMBINE (the forward's, then a backward
    token's input-gradient partial), a backward token's gate gradients as one GATE_GRAD, a saved vector as
    MEM_WRITE packets and a whole packet from ``packets`` (restore reads, write-backs, UPDATED); a packet once
    started is sent whole.

    - **LOADED** (dst root, tag of the WEIGHT packet, meta slot and expert): one per ``loaded`` event, kept
      per slot until sent (``loaded_unsent``), lowest slot first.
    - **COMBINE** (dst root, the token's tag, ``reduce`` echoed, ``partial_flits`` flits of d_model signed
      ``partial_bits``), from ``partial`` or ``grad_partial``.
    - **GATE_GRAD** (dst root, the token's tag, meta ``experts``, ``gate_grad_flits`` flits of one signed
      ``acc_bits`` gate gradient per local expert).
    - **MEM_WRITE** (dst ``memctrl(group)``, the token's tag, ack 0, at most ``max_burst_flits`` flits each) of the
      saved pre-activation vector at :func:`mozart.model.golden.activation_addr` ``(cfg, index, save_index,
      expert)``.

    - a packet from **packets**, passed flit for flit, but only while ``hold_packets`` is low: the engine holds
      them while a save it produced is not yet sent, so a restore read never passes a save.

    Latency and throughput: a packet's header leaves 1 cycle after the output chose it (idle), then one flit
    per cycle while ``o.ready``; one idle cycle between packets. ``partial`` and ``hidden`` are taken with
    the last flit of their (last) packet.

    Members
    -------
    o : Out(link_signature(cfg))
        To the switch.
    loaded : In(stream.Signature(loaded layout, always_ready=True))
    loaded_unsent : Out(sram_slots)
    partial, grad_partial : In(stream.Signature(partial layout))
    gate_grads : In(stream.Signature(gate-gradient layout))
    hidden : In(stream.Signature(hidden layout))
    packets : In(link_signature(cfg))
    hold_packets : In(1)
    """

    def __init__(self, cfg, group: int, index: int, node: int):
        self._cfg, self._proto = cfg, Protocol(cfg)
        self._group, self._index, self._node = group, index, node
        super().__init__({
            "o": Out(link_signature(cfg)),
            "loaded": In(stream.Signature(loaded_layout(cfg), always_ready=True)),
            "loaded_unsent": Out(cfg.hardware.sram_slots),
            "partial": In(stream.Signature(partial_layout(cfg))),
            "grad_partial": In(stream.Signature(partial_layout(cfg))),
            "gate_grads": In(stream.Signature(gate_grads_layout(cfg))),
            "hidden": In(stream.Signature(hidden_layout(cfg))),
            "packets": In(link_signature(cfg)),
            "hold_packets": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, proto, hw = self._cfg, self._proto, self._cfg.hardware
        slots = hw.sram_slots
        event = self.loaded.payload
        report_layout = data.StructLayout({"expert": event.expert.shape(), "tag": event.tag.shape()})
        reports = Array(Signal(report_layout, name=f"slot{s}_loaded") for s in range(slots))
        with m.If(self.loaded.valid):
            m.d.sync += [self.loaded_unsent.bit_select(event.slot, 1).eq(1),
                         reports[event.slot].expert.eq(event.expert), reports[event.slot].tag.eq(event.tag)]
        any_report, lowest_report = lowest_index([self.loaded_unsent[s] for s in range(slots)])
        report_slot = Signal(proto.slot_bits)

        hidden_flits, burst = golden.hidden_flits(cfg), hw.max_burst_flits
        sent = Signal(range(max(proto.partial_flits, hidden_flits, proto.gate_grad_flits) + 1))   # vector flits sent
        combine_grad = Signal()     # the COMBINE being sent carries grad_partial, not partial
        burst_index = Signal(range(math.ceil(hidden_flits / burst) + 1))  # MEM_WRITE packet of the vector
        header = Signal(header_layout(cfg))
        m.d.comb += self.o.payload.data.eq(header.as_value()[:proto.header_bits])   # pad bits: zero-extended

        with m.FSM(name="tx"):
            with m.State("IDLE"):
                with m.If(any_report):
                    m.d.sync += report_slot.eq(lowest_report)
                    m.next = "LOADED"
                with m.Elif(self.partial.valid | self.grad_partial.valid):
                    m.d.sync += [sent.eq(0), combine_grad.eq(~self.partial.valid)]
                    m.next = "COMB_HDR"
                with m.Elif(self.gate_grads.valid):
                    m.d.sync += sent.eq(0)
                    m.next = "GATE_HDR"
                with m.Elif(self.hidden.valid):
                    m.d.sync += [sent.eq(0), burst_index.eq(0)]
                    m.next = "SAVE_HDR"
                with m.Elif(self.packets.valid & ~self.hold_packets):
                    m.next = "PACKET"
            with m.State("PACKET"):
                m.d.comb += [self.o.valid.eq(self.packets.valid), self.o.payload.eq(self.packets.payload),
                             self.packets.ready.eq(self.o.ready)]
                with m.If(self.packets.valid & self.o.ready & self.packets.payload.last):
                    m.next = "IDLE"
            with m.State("LOADED"):
                report = reports[report_slot]
                self._head(m, header, PacketKind.LOADED, proto.topology.root, report.tag)
                m.d.comb += [self.o.payload.last.eq(1), header.meta.loaded.slot.eq(report_slot),
                             header.meta.loaded.expert.eq(report.expert)]
                with m.If(self.o.ready):
                    m.d.sync += self.loaded_unsent.bit_select(report_slot, 1).eq(0)
                    m.next = "IDLE"
            self._combine(m, header, sent, combine_grad)
            self._gate_grads(m, header, sent)
            self._save(m, header, sent, burst_index)
        return m

    def _head(self, m, header, kind, dst, tag, length=0):
        # src is set with the other fields, in the state: a field driven only by a constant becomes a
        # sensitivity-less ``always @*`` in the Verilog, which Verilator never runs (ALWNEVER)
        m.d.comb += [self.o.valid.eq(1), self.o.payload.first.eq(1), header.kind.eq(kind), header.dst.eq(dst),
                     header.src.eq(self._node), header.tag.eq(tag), header.length.eq(length)]

    @contextmanager
    def _payload(self, m, flits, sent, count: int):
        """A one-packet vector's payload: flit ``sent`` of ``count``, one per cycle while ``o.ready``; the body runs
        in the cycle the last flit is taken (take the vector there), and the output goes back to IDLE."""
        last = sent == count - 1
        m.d.comb += [self.o.valid.eq(1), self.o.payload.last.eq(last), self.o.payload.data.eq(flits[sent])]
        with m.If(self.o.ready):
            m.d.sync += sent.eq(sent + 1)
            with m.If(last):
                m.next = "IDLE"
                yield

    def _combine(self, m, header, sent, combine_grad):
        """States COMB_HDR and COMB_DATA: the partial (``combine_grad``: the input-gradient partial) as one
        COMBINE packet."""
        cfg, proto = self._cfg, self._proto
        partial = partial_layout(cfg)(Mux(combine_grad, self.grad_partial.payload.as_value(),
                                          self.partial.payload.as_value()))
        flits = _flits_of(partial.data, cfg.moe.d_model, cfg.hardware.flit_bits // cfg.numerics.partial_bits)
        with m.State("COMB_HDR"):
            self._head(m, header, PacketKind.COMBINE, proto.topology.root, partial.tag, proto.partial_flits)
            m.d.comb += header.meta.combine.reduce.eq(partial.reduce)
            with m.If(self.o.ready):
                m.next = "COMB_DATA"
        with m.State("COMB_DATA"):
            with self._payload(m, flits, sent, proto.partial_flits):
                m.d.comb += [self.partial.ready.eq(~combine_grad), self.grad_partial.ready.eq(combine_grad)]

    def _gate_grads(self, m, header, sent):
        """States GATE_HDR and GATE_DATA: a backward token's gate gradients as one GATE_GRAD packet."""
        cfg, proto, grads = self._cfg, self._proto, self.gate_grads.payload
        flits = _flits_of(grads.dg, cfg.experts_per_chiplet, cfg.hardware.flit_bits // cfg.numerics.acc_bits)
        with m.State("GATE_HDR"):
            self._head(m, header, PacketKind.GATE_GRAD, proto.topology.root, grads.tag, proto.gate_grad_flits)
            m.d.comb += header.meta.gate_grad.experts.eq(grads.experts)
            with m.If(self.o.ready):
                m.next = "GATE_DATA"
        with m.State("GATE_DATA"):
            with self._payload(m, flits, sent, proto.gate_grad_flits):
                m.d.comb += self.gate_grads.ready.eq(1)

    def _save(self, m, header, sent, burst_index):
        """States SAVE_HDR and SAVE_DATA: the hidden vector as MEM_WRITE packets of at most ``max_burst_flits``."""
        cfg, proto, hidden = self._cfg, self._proto, self.hidden.payload
        hidden_flits, burst, words = golden.hidden_flits(cfg), cfg.hardware.max_burst_flits, proto.words_per_flit
        flits = _flits_of(hidden.data, cfg.moe.d_ff, cfg.hardware.flit_bits // cfg.numerics.act_bits)
        entry = (hidden.save_index * cfg.chiplets_per_group + self._index) * cfg.experts_per_chiplet + hidden.expert
        address = proto.activation_base + entry * golden.activation_entry_words(cfg) + burst_index * (burst * words)
        length = Mux(hidden_flits - burst_index * burst > burst, burst, hidden_flits - burst_index * burst)
        with m.State("SAVE_HDR"):
            self._head(m, header, PacketKind.MEM_WRITE, proto.topology.memctrl(self._group), hidden.tag, length)
            m.d.comb += [header.meta.mem_write.addr.eq(address), header.meta.mem_write.words.eq(length * words),
                         header.meta.mem_write.ack.eq(0)]
            with m.If(self.o.ready):
                m.next = "SAVE_DATA"
        with m.State("SAVE_DATA"):
            packet_end = (sent == hidden_flits - 1) | (sent == (burst_index + 1) * burst - 1)
            m.d.comb += [self.o.valid.eq(1), self.o.payload.last.eq(packet_end), self.o.payload.data.eq(flits[sent])]
            with m.If(self.o.ready):
                m.d.sync += sent.eq(sent + 1)
                with m.If(sent == hidden_flits - 1):
                    m.d.comb += self.hidden.ready.eq(1)
                    m.next = "IDLE"
                with m.Elif(packet_end):
                    m.d.sync += burst_index.eq(burst_index + 1)
                    m.next = "SAVE_HDR"
