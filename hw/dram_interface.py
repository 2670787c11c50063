"""The shapes at the DRAM model's boundary: burst commands and the untimed backdoor."""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol, index_bits

__all__ = ["BackdoorSignature", "RowRequestSignature", "burst_bits", "command_layout"]


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


class RowRequestSignature(wiring.Signature):
    """From the burst scheduler to the bank tracker: the rows it needs, and whether the first is open.

    ``active_*``: the row of the active burst's next column; ``lookahead_*``: the next row after it (the active
    burst's following row, else the next burst's first); ``active_row_open`` (back): the active burst may issue
    a column this cycle."""

    def __init__(self, cfg):
        bank_shape, row_shape = unsigned(index_bits(cfg.dram.banks)), unsigned(index_bits(cfg.dram.rows))
        super().__init__({
            "active_valid": Out(1), "active_bank": Out(bank_shape), "active_row": Out(row_shape),
            "lookahead_valid": Out(1), "lookahead_bank": Out(bank_shape), "lookahead_row": Out(row_shape),
            "active_row_open": In(1),
        })
