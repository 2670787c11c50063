"""The shapes at the DRAM model's boundary: burst commands and the untimed backdoor."""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol

__all__ = ["BackdoorSignature", "burst_bits", "command_layout"]


def burst_bits(cfg) -> int:
    """Width of a burst length: up to a memory packet's ``max_burst_words`` or a whole expert image (a LOAD is
    one burst, so the DRAM sees its rows coming and activates each next bank while the current one streams)."""
    proto = Protocol(cfg)
    return max(proto.words_bits, proto.image_words.bit_length())


def command_layout(cfg) -> data.StructLayout:
    """A burst command: ``words`` (1 .. 2**burst_bits - 1) consecutive words from ``addr``; ``write``."""
    proto = Protocol(cfg)
    return data.StructLayout({"addr": unsigned(proto.addr_bits), "words": unsigned(burst_bits(cfg)),
                              "write": unsigned(1)})


class BackdoorSignature(wiring.Signature):
    """Direct access to the storage, outside the timing model (preload and readback in tests).

    ``we`` writes ``wdata`` at ``addr`` at the next clock edge; ``rdata`` holds the word at the ``addr`` of
    the previous cycle (one cycle of read latency)."""

    def __init__(self, cfg):
        proto = Protocol(cfg)
        super().__init__({"addr": Out(proto.addr_bits), "we": Out(1), "wdata": Out(cfg.dram.word_bits),
                          "rdata": In(cfg.dram.word_bits)})
