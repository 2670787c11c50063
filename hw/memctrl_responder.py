"""The memory controller's response sender: one response packet per accepted request, in order."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol
from mozart.model.topology import Topology

from .dram_interface import burst_bits
from .memctrl_packer import FlitPacker
from .memctrl_request import ResponseOp, payload_flits, request_layout
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ResponseSender"]


class ResponseSender(wiring.Component):
    """Sends group ``group``'s memory responses: MEM_DATA, MEM_ACK, MEM_ERROR and a LOAD's WEIGHT packets.

    A request record leaves ``requests`` when its response has left: a DATA after its last payload flit, a LOAD
    after its image's last WEIGHT packet, a WRITE when its burst's ``write_done`` has come (and its MEM_ACK left
    if asked), an ERROR with its MEM_ERROR. A header that carries words leaves only with its first word.

    Members
    -------
    requests : In(stream.Signature(request_layout(cfg)))
        Accepted requests, in order.
    read_words : In(stream.Signature(word_bits))
        The DRAM's read words, in request order.
    write_done : In(1)
        Pulses once per finished DRAM write burst.
    port_out : Out(link_signature(cfg))
        Response packets.

    Latency and throughput
    ----------------------
    Combinational from a record (and its first word) to its header; payload flits follow one per
    ``words_per_flit`` words (:class:`~mozart.hw.memctrl_packer.FlitPacker`). A LOAD waits one cycle before its
    first WEIGHT header; a WEIGHT packet of at most ``max_burst_words`` words follows the last without a gap.
    """

    def __init__(self, cfg, group: int = 0):
        self.cfg, self.group = cfg, group
        self.proto = Protocol(cfg)
        self.node = Topology.of(cfg).memctrl(group)
        super().__init__({
            "requests": In(stream.Signature(request_layout(cfg))),
            "read_words": In(stream.Signature(cfg.dram.word_bits)),
            "write_done": In(1),
            "port_out": Out(link_signature(cfg)),
        })

    def _send_one(self, m, header, packer, write_done_here, take_token):
        """The IDLE state: the response of the record at the head of ``requests``."""
        record, port_out, words_per_flit = self.requests.payload, self.port_out, self.proto.words_per_flit
        with m.Switch(record.op):
            with m.Case(ResponseOp.DATA):
                m.d.comb += [
                    header.kind.eq(PacketKind.MEM_DATA), header.src.eq(self.node),
                    header.length.eq(payload_flits(record.size, words_per_flit)),
                    header.meta.mem_data.addr.eq(record.addr), header.meta.mem_data.words.eq(record.size),
                    port_out.valid.eq(self.read_words.valid), port_out.payload.first.eq(1),
                ]
                with m.If(port_out.ready & self.read_words.valid):
                    m.d.comb += packer.start.eq(1)
                    m.next = "PAYLOAD"
            with m.Case(ResponseOp.ERROR):
                m.d.comb += [
                    header.kind.eq(PacketKind.MEM_ERROR), header.src.eq(self.node), header.length.eq(0),
                    header.meta.mem_error.code.eq(record.code), header.meta.mem_error.addr.eq(record.addr),
                    port_out.valid.eq(1), port_out.payload.first.eq(1), port_out.payload.last.eq(1),
                    self.requests.ready.eq(port_out.ready),
                ]
            with m.Case(ResponseOp.WRITE):
                m.d.comb += [
                    header.kind.eq(PacketKind.MEM_ACK), header.src.eq(self.node), header.length.eq(0),
                    header.meta.mem_ack.addr.eq(record.addr), header.meta.mem_ack.words.eq(record.size),
                    port_out.valid.eq(record.ack & write_done_here), port_out.payload.first.eq(1),
                    port_out.payload.last.eq(1),
                    take_token.eq(write_done_here & (~record.ack | port_out.ready)),
                    self.requests.ready.eq(take_token),
                ]
            with m.Case(ResponseOp.LOAD):
                m.next = "WEIGHT"

    def elaborate(self, platform):
        m = Module()
        proto, record, port_out = self.proto, self.requests.payload, self.port_out
        max_burst_words = proto.max_burst_words
        m.submodules.packer = packer = FlitPacker(self.cfg)

        # write completions: one token per write burst, taken in order by the WRITE records
        write_tokens = Signal(range(self.cfg.dram.max_outstanding + 2))
        take_token = Signal()
        write_done_here = Signal()   # the write at the head of the records has finished
        m.d.comb += write_done_here.eq(write_tokens != 0)
        m.d.sync += write_tokens.eq(write_tokens + self.write_done - take_token)

        # a View over plain bits: a Signal of the layout would add a debug alias per field to the Verilog
        header = data.View(header_layout(self.cfg), Signal(header_layout(self.cfg).size, name="header"))
        image_offset = Signal(burst_bits(self.cfg))   # of the LOAD's next WEIGHT packet
        image_left = Signal(burst_bits(self.cfg))     # words of the LOAD not yet in a WEIGHT header
        chunk = Signal(proto.words_bits)              # words of the next WEIGHT packet
        m.d.comb += chunk.eq(Mux(image_left > max_burst_words, max_burst_words, image_left))
        # header.src is set in each header branch, not here: a constant-only comb assignment becomes an
        # `always @*` with an empty sensitivity list, which Verilator never evaluates (src would read 0).
        m.d.comb += [header.tag.eq(record.tag), header.dst.eq(record.dst)]
        m.d.comb += port_out.payload.data.eq(header)  # the PAYLOAD state sends words instead

        with m.FSM(name="respond") as fsm:
            with m.State("IDLE"):
                with m.If(self.requests.valid):
                    self._send_one(m, header, packer, write_done_here, take_token)
                    with m.If(record.op == ResponseOp.LOAD):
                        m.d.sync += [image_offset.eq(0), image_left.eq(record.size)]
            with m.State("WEIGHT"):
                m.d.comb += [
                    header.kind.eq(PacketKind.WEIGHT), header.src.eq(self.node),
                    header.length.eq(payload_flits(chunk, proto.words_per_flit)),
                    header.meta.weight.slot.eq(record.slot), header.meta.weight.expert.eq(record.expert),
                    header.meta.weight.offset.eq(image_offset), header.meta.weight.final.eq(image_left == chunk),
                    port_out.valid.eq(self.read_words.valid), port_out.payload.first.eq(1),
                ]
                with m.If(port_out.ready & self.read_words.valid):
                    m.d.comb += packer.start.eq(1)
                    m.d.sync += [image_offset.eq(image_offset + chunk), image_left.eq(image_left - chunk)]
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [
                    port_out.valid.eq(packer.flits.valid),
                    port_out.payload.data.eq(packer.flits.payload.data),
                    port_out.payload.last.eq(packer.flits.payload.last),
                ]
                with m.If(packer.done):
                    with m.If((record.op == ResponseOp.LOAD) & (image_left != 0)):
                        m.next = "WEIGHT"
                    with m.Else():
                        m.d.comb += self.requests.ready.eq(1)
                        m.next = "IDLE"
        # the packer sees the read words only while it sends a payload
        in_payload = fsm.ongoing("PAYLOAD")
        m.d.comb += [
            packer.words.payload.eq(self.read_words.payload),
            packer.words.valid.eq(self.read_words.valid & in_payload),
            self.read_words.ready.eq(packer.words.ready & in_payload),
            packer.flits.ready.eq(port_out.ready & in_payload),
            packer.count.eq(Mux(fsm.ongoing("WEIGHT"), chunk, record.size)),
        ]
        return m
