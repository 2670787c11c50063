"""The memory controller's request decoder: request packets in; checked requests, DRAM bursts and write payload
out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import COUNTER_BITS, MEM_ERROR_BITS, Protocol
from mozart.model.topology import Topology

from .dram_interface import command_layout
from .memctrl_request import ResponseOp, payload_flits, request_layout
from .memctrl_write import write_flit_layout
from .protocol import MemError, PacketKind, header_layout, link_signature

__all__ = ["RequestDecoder"]


class RequestDecoder(wiring.Component):
    """Checks each request header of group ``group``'s memory controller and hands it on.

    A good MEM_READ, MEM_WRITE or LOAD becomes one DRAM burst (a LOAD's burst is its whole image) and one
    request record; a bad one (the rules are in :class:`~mozart.hw.memctrl.MemoryController`) becomes an ERROR
    record, counts in ``errors`` and has its payload dropped. A header is taken only when everything it goes to
    can take it in the same cycle. A MEM_WRITE's payload flits then go to ``write_flits``, each with the number
    of its words that belong to the write.

    Members
    -------
    port_in : In(link_signature(cfg))
        Request packets.
    requests : Out(stream.Signature(request_layout(cfg)))
        One record per request header, in order (to the queue of requests in service).
    bursts : Out(stream.Signature(command_layout(cfg)))
        DRAM burst commands.
    write_flits : Out(stream.Signature(write_flit_layout(cfg)))
        MEM_WRITE payload flits.
    errors : Out(COUNTER_BITS)
        Bad requests so far (wraps).

    Latency and throughput
    ----------------------
    Combinational: a header goes to ``requests`` and ``bursts`` in the cycle it is taken, a payload flit to
    ``write_flits`` in its cycle. One flit per cycle; the header after a packet can be taken in the cycle after
    its last flit.
    """

    def __init__(self, cfg, group: int = 0):
        self.cfg, self.group = cfg, group
        self.proto = Protocol(cfg)
        self.chiplet0 = Topology.of(cfg).chiplet(group, 0)
        super().__init__({
            "port_in": In(link_signature(cfg)),
            "requests": Out(stream.Signature(request_layout(cfg))),
            "bursts": Out(stream.Signature(command_layout(cfg))),
            "write_flits": Out(stream.Signature(write_flit_layout(cfg))),
            "errors": Out(COUNTER_BITS),
        })

    def _check(self, m, header, code):
        """Drive ``code`` with the header's MemError and return a signal that is 1 for a bad request."""
        proto, total = self.proto, self.cfg.dram.words
        read, write, load = header.meta.mem_read, header.meta.mem_write, header.meta.load
        has_payload = ~self.port_in.payload.last
        bad = Signal()

        def check(addr_bad, length_bad):
            # ADDRESS before LENGTH: an address past the end is the more specific fault
            with m.If(addr_bad):
                m.d.comb += [bad.eq(1), code.eq(MemError.ADDRESS)]
            with m.Elif(length_bad):
                m.d.comb += [bad.eq(1), code.eq(MemError.LENGTH)]

        def out_of_range(addr, words, limit):
            return (words == 0) | (words > limit) | (addr + words > total)

        with m.Switch(header.kind):
            with m.Case(PacketKind.MEM_READ):
                check(read.addr >= total, out_of_range(read.addr, read.words, proto.max_burst_words) | has_payload)
            with m.Case(PacketKind.MEM_WRITE):
                check(write.addr >= total, out_of_range(write.addr, write.words, proto.max_burst_words)
                      | (header.length != payload_flits(write.words, proto.words_per_flit)))
            with m.Case(PacketKind.LOAD):
                check((load.addr >= total) | (load.chiplet >= self.cfg.tree.chiplets_per_group),
                      out_of_range(load.addr, load.image_words, proto.image_words) | has_payload)
            with m.Default():
                m.d.comb += [bad.eq(1), code.eq(MemError.KIND)]
        return bad

    def _record(self, m, header, bad, code, record):
        """Fill ``record`` (a request_layout View) from the header."""
        kind = header.kind
        read, write, load = header.meta.mem_read, header.meta.mem_write, header.meta.load
        m.d.comb += [
            record.code.eq(code), record.tag.eq(header.tag), record.dst.eq(header.src),
            record.slot.eq(load.slot), record.expert.eq(load.expert),
        ]
        with m.If(bad):
            m.d.comb += record.op.eq(ResponseOp.ERROR)
            m.d.comb += record.addr.eq(Mux(kind == PacketKind.MEM_READ, read.addr,
                                           Mux(kind == PacketKind.MEM_WRITE, write.addr,
                                               Mux(kind == PacketKind.LOAD, load.addr, 0))))
        with m.Elif(kind == PacketKind.MEM_READ):
            m.d.comb += [record.op.eq(ResponseOp.DATA), record.addr.eq(read.addr), record.size.eq(read.words)]
        with m.Elif(kind == PacketKind.MEM_WRITE):
            m.d.comb += [record.op.eq(ResponseOp.WRITE), record.addr.eq(write.addr), record.size.eq(write.words),
                         record.ack.eq(write.ack)]
        with m.Else():
            m.d.comb += [record.op.eq(ResponseOp.LOAD), record.addr.eq(load.addr), record.size.eq(load.image_words),
                         record.dst.eq(self.chiplet0 + load.chiplet)]

    def elaborate(self, platform):
        m = Module()
        port_in, words_per_flit = self.port_in, self.proto.words_per_flit
        header = data.View(header_layout(self.cfg), port_in.payload.data)
        code = Signal(MEM_ERROR_BITS)  # a MemError value (the enum has no 0, so no Signal of it)
        bad = self._check(m, header, code)
        record = self.requests.payload
        self._record(m, header, bad, code, record)
        write_words_left = Signal(self.proto.words_bits)  # words of the write not yet sent on write_flits

        # reads, writes and LOADs each go to the DRAM as one burst
        needs_burst = Signal()
        m.d.comb += [
            needs_burst.eq(~bad & ((header.kind == PacketKind.MEM_READ) | (header.kind == PacketKind.MEM_WRITE)
                                   | (header.kind == PacketKind.LOAD))),
            self.bursts.payload.addr.eq(record.addr),
            self.bursts.payload.words.eq(record.size),
            self.bursts.payload.write.eq(header.kind == PacketKind.MEM_WRITE),
            self.write_flits.payload.data.eq(port_in.payload.data),
            self.write_flits.payload.words.eq(Mux(write_words_left > words_per_flit, words_per_flit,
                                                  write_words_left)),
        ]
        with m.FSM(name="parse") as fsm:
            with m.State("HEADER"):
                with m.If(port_in.valid & port_in.ready):
                    with m.If(bad):
                        m.d.sync += self.errors.eq(self.errors + 1)
                        with m.If(~port_in.payload.last):
                            m.next = "DISCARD"
                    with m.Elif(header.kind == PacketKind.MEM_WRITE):
                        m.d.sync += write_words_left.eq(header.meta.mem_write.words)
                        m.next = "WRITE"
            with m.State("WRITE"):
                # the header checked that the payload is exactly ceil(words / words_per_flit) flits
                with m.If(port_in.valid & port_in.ready):
                    m.d.sync += write_words_left.eq(Mux(write_words_left > words_per_flit,
                                                        write_words_left - words_per_flit, 0))
                    with m.If(port_in.payload.last):
                        m.next = "HEADER"
            with m.State("DISCARD"):
                with m.If(port_in.valid & port_in.payload.last):
                    m.next = "HEADER"
        # a header is taken only if the request queue and, for a burst, the DRAM take it in the same cycle
        in_header, in_write = fsm.ongoing("HEADER"), fsm.ongoing("WRITE")
        header_ready = self.requests.ready & Mux(needs_burst, self.bursts.ready, 1)
        m.d.comb += [
            self.requests.valid.eq(in_header & port_in.valid & Mux(needs_burst, self.bursts.ready, 1)),
            self.bursts.valid.eq(in_header & port_in.valid & self.requests.ready & needs_burst),
            self.write_flits.valid.eq(in_write & port_in.valid),
            port_in.ready.eq(Mux(in_header, header_ready, Mux(in_write, self.write_flits.ready,
                                                              fsm.ongoing("DISCARD")))),
        ]
        return m
