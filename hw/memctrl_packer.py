"""The memory controller's flit packer: DRAM read words in, payload flits of one response out."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol

__all__ = ["FlitPacker"]


class FlitPacker(wiring.Component):
    """Packs ``count`` words into ``ceil(count / words_per_flit)`` payload flits (word 0 lowest, unused words 0).

    Members
    -------
    start : In(1)
        Begin a payload of ``count`` words (from the next cycle on); only between payloads.
    count : In(words_bits)
        Words of the payload ``start`` begins (1 .. max_burst_words).
    words : In(stream.Signature(word_bits))
        The words, in order.
    flits : Out(stream.Signature({data, last}))
        The payload flits; ``last`` on the payload's last flit.
    done : Out(1)
        The payload's last word is taken this cycle.

    Latency and throughput
    ----------------------
    Combinational: a flit is offered in the cycle its last word arrives (the earlier words wait in registers).
    One word per cycle, so one flit per ``words_per_flit`` cycles.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        super().__init__({
            "start": In(1),
            "count": In(self.proto.words_bits),
            "words": In(stream.Signature(cfg.dram.word_bits)),
            "flits": Out(stream.Signature(data.StructLayout({"data": self.proto.flit_bits, "last": 1}))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        words_per_flit, word_bits = self.proto.words_per_flit, self.cfg.dram.word_bits
        words_left = Signal(self.proto.words_bits)
        word_index = Signal(range(words_per_flit))  # 0 at a payload's start: its previous flit ended at 0
        held = [Signal(word_bits, name=f"held{i}") for i in range(words_per_flit - 1)]
        last_word = Signal()       # this word is the payload's last
        flit_complete = Signal()   # this word completes a flit
        taken = Signal()
        m.d.comb += [
            last_word.eq(words_left == 1),
            flit_complete.eq((word_index == words_per_flit - 1) | last_word),
            self.flits.valid.eq(self.words.valid & flit_complete),
            self.flits.payload.last.eq(last_word),
            self.words.ready.eq(~flit_complete | self.flits.ready),
            taken.eq(self.words.valid & self.words.ready),
            self.done.eq(taken & last_word),
        ]
        # the first words of a flit wait in held, the last one passes through
        packed = []
        for j in range(words_per_flit):
            word = self.words.payload if j == words_per_flit - 1 else Mux(word_index == j, self.words.payload, held[j])
            packed.append(Mux(word_index >= j, word, 0))
        m.d.comb += self.flits.payload.data.eq(Cat(*packed))
        with m.If(self.start):
            m.d.sync += words_left.eq(self.count)
        with m.If(taken):
            m.d.sync += words_left.eq(words_left - 1)
            with m.If(flit_complete):
                m.d.sync += word_index.eq(0)
            with m.Else():
                m.d.sync += word_index.eq(word_index + 1)
                for j in range(words_per_flit - 1):
                    with m.If(word_index == j):
                        m.d.sync += held[j].eq(self.words.payload)
        return m
