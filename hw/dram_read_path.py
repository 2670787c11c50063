"""The DRAM model's read path: CAS latency, then a read buffer with credit."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.memctrl import MemoryControllerContract

__all__ = ["ReadPath"]


class ReadPath(wiring.Component):
    """Delays each read word to ``t_cl`` cycles after its column access and buffers it until taken.

    A read column may issue only while ``space`` is 1: every issued read has a place reserved in the buffer
    (``read_buffer_words`` of the contract), so nothing is lost when ``rdata`` is not taken.

    Members
    -------
    issue : In(1)
        A read column access this cycle.
    word : In(word_bits)
        The storage's registered read data (the word of the access one cycle earlier).
    space : Out(1)
        The buffer can take one more read.
    rdata : Out(stream.Signature(word_bits))
        Read words, in access order.

    Latency and throughput
    ----------------------
    A word read in cycle ``c`` is on ``rdata`` in ``c + t_cl`` (memory read register, ``t_cl - 2`` delay
    stages, the buffer). One word per cycle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.depth = MemoryControllerContract(cfg).read_buffer_words
        super().__init__({
            "issue": In(1),
            "word": In(cfg.dram.word_bits),
            "space": Out(1),
            "rdata": Out(stream.Signature(cfg.dram.word_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        word_bits = self.cfg.dram.word_bits
        m.submodules.buffer = buffer = SyncFIFO(width=word_bits, depth=self.depth)
        reserved = Signal(range(self.depth + 1))
        m.d.comb += [
            self.space.eq(reserved < self.depth),
            self.rdata.valid.eq(buffer.r_rdy), self.rdata.payload.eq(buffer.r_data), buffer.r_en.eq(self.rdata.ready),
        ]
        m.d.sync += reserved.eq(reserved + self.issue - (self.rdata.valid & self.rdata.ready))

        # the memory's registered read is the first cycle; t_cl - 2 stages more, then the buffer
        valid = Signal()
        m.d.sync += valid.eq(self.issue)
        word = self.word
        for stage in range(self.cfg.dram.t_cl - 2):
            stage_valid, stage_word = Signal(name=f"rd_valid{stage}"), Signal(word_bits, name=f"rd_word{stage}")
            m.d.sync += [stage_valid.eq(valid), stage_word.eq(word)]
            valid, word = stage_valid, stage_word
        m.d.comb += [buffer.w_en.eq(valid), buffer.w_data.eq(word)]
        return m
