"""The memory controller's write gearbox: MEM_WRITE payload flits in, DRAM write words out."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol

__all__ = ["WriteGearbox", "write_flit_layout"]


def write_flit_layout(cfg) -> data.StructLayout:
    """A write payload flit (``data``) and how many of its words (``words``, 1 .. words_per_flit) belong to the
    write; word 0 is the lowest."""
    proto = Protocol(cfg)
    return data.StructLayout({"data": proto.flit_bits, "words": unsigned(proto.words_per_flit.bit_length())})


class WriteGearbox(wiring.Component):
    """Splits each write payload flit into its words, one per cycle.

    Members
    -------
    flits : In(stream.Signature(write_flit_layout(cfg)))
        Payload flits of MEM_WRITEs, in order.
    words : Out(stream.Signature(word_bits))
        The DRAM's write words.

    Latency and throughput
    ----------------------
    A flit's first word is offered the cycle after the flit is taken; one word per cycle. The next flit is
    taken in the cycle its predecessor's last word leaves, so a write streams at one word per cycle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        super().__init__({
            "flits": In(stream.Signature(write_flit_layout(cfg))),
            "words": Out(stream.Signature(cfg.dram.word_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        words_per_flit = self.proto.words_per_flit
        buffer = Signal(self.proto.flit_bits)
        buffer_valid = Signal()
        word_index = Signal(range(words_per_flit))
        buffer_words = Signal.like(self.flits.payload.words)
        last_word = Signal()
        word_taken = Signal()
        m.d.comb += [
            last_word.eq(word_index == buffer_words - 1),
            self.words.valid.eq(buffer_valid),
            self.words.payload.eq(buffer.word_select(word_index, self.cfg.dram.word_bits)),
            word_taken.eq(self.words.valid & self.words.ready),
            self.flits.ready.eq(~buffer_valid | (word_taken & last_word)),
        ]
        with m.If(word_taken):
            m.d.sync += word_index.eq(word_index + 1)
            with m.If(last_word):
                m.d.sync += buffer_valid.eq(0)
        with m.If(self.flits.valid & self.flits.ready):
            m.d.sync += [buffer.eq(self.flits.payload.data), buffer_valid.eq(1), word_index.eq(0),
                         buffer_words.eq(self.flits.payload.words)]
        return m
