"""The record of one accepted memory request, passed from the request decoder to the response sender."""

from __future__ import annotations

from amaranth.lib import data, enum

from mozart.model.protocol import MEM_ERROR_BITS, Protocol

from .dram_interface import burst_bits

__all__ = ["ResponseOp", "payload_flits", "request_layout"]


class ResponseOp(enum.Enum, shape=2):
    """What the response sender sends for one accepted request."""

    DATA = 0   #: MEM_DATA with the read words
    WRITE = 1  #: wait for the write to finish; MEM_ACK if asked
    ERROR = 2  #: MEM_ERROR
    LOAD = 3   #: WEIGHT packets of an expert image


def request_layout(cfg) -> data.StructLayout:
    """One accepted request: ``op``, the MEM_ACK flag ``ack``, the MEM_ERROR ``code``, the response's ``dst`` and
    ``tag``, the DRAM run (``addr``, ``size`` words) and a LOAD's ``slot`` and ``expert``."""
    proto = Protocol(cfg)
    return data.StructLayout({
        "op": ResponseOp, "ack": 1, "code": MEM_ERROR_BITS, "dst": proto.node_bits, "tag": proto.tag_bits,
        "addr": proto.addr_bits, "size": burst_bits(cfg), "slot": proto.slot_bits, "expert": proto.expert_bits,
    })


def payload_flits(words, words_per_flit: int):
    """The payload flits of ``words`` words (an Amaranth value): ``ceil(words / words_per_flit)``."""
    return (words + (words_per_flit - 1)) // words_per_flit if words_per_flit > 1 else words
