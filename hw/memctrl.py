"""The memory controller of one group: serves memory packets and weight loads from the group's DRAM model."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.memctrl import MemoryControllerContract
from mozart.model.protocol import COUNTER_BITS, MEM_ERROR_BITS, Protocol
from mozart.model.topology import Topology

from .dram import BackdoorSignature, DramModel, burst_bits
from .protocol import MemError, PacketKind, header_layout, link_signature

__all__ = ["MemoryController"]


class _Op(enum.Enum, shape=2):
    """What the output side sends for one accepted request."""

    DATA = 0   #: MEM_DATA with the read words
    WRITE = 1  #: wait for the write to finish; MEM_ACK if asked
    ERROR = 2  #: MEM_ERROR
    LOAD = 3   #: WEIGHT packets of an expert image


class MemoryController(wiring.Component):
    """Memory controller of group ``group``: MEM_READ/MEM_WRITE service, weight streaming, bad-request errors.

    Requests are served **strictly in arrival order** (no row-hit-first reordering): the DRAM sees their
    bursts in order, responses leave in order, so per-address order holds for every requester and the
    output order is the input order. Bank parallelism comes from the DRAM model's lookahead instead.

    - MEM_READ (``addr``, ``words``): MEM_DATA to the request's ``src`` with ``tag``, ``addr`` and ``words``
      echoed and the words packed ``words_per_flit`` to a flit (word 0 lowest, unused words 0). Its header
      leaves only when the first word is read, so a packet never holds the switch waiting for the DRAM.
    - MEM_WRITE (``addr``, ``words``, ``ack``; ``ceil(words / words_per_flit)`` payload flits): written in
      order; with ``ack=1`` a MEM_ACK (``addr``, ``words``) follows once the last word is in the DRAM.
    - LOAD (``addr``, ``image_words``, ``chiplet``, ``slot``, ``expert``): the image streams to
      ``chiplet(group, chiplet)`` as WEIGHT packets of at most ``max_burst_flits`` payload flits (``offset``
      = word offset in the image, ``final=1`` on the last), tag echoed. LOADs run in command order.
    - Bad requests get MEM_ERROR (``code``, ``addr``) to ``src`` with the tag echoed, write nothing, and
      their payload is consumed and dropped; ``errors`` counts them:
      ADDRESS: ``addr`` past the DRAM, or a LOAD's ``chiplet`` not in the group;
      LENGTH: ``words``/``image_words`` of 0, a read or write over ``max_burst_words``, a run past the end,
      a write whose payload is not ``ceil(words / words_per_flit)`` flits, or a payload on a read or LOAD;
      KIND: any other packet kind (``addr`` 0).

    Flow control: a request occupies one of ``dram.max_outstanding`` slots from its header until its
    response has left; when all are taken ``port_in`` is not ready (nothing is dropped). The input stalls
    while the output is blocked; this cannot deadlock because requesters only issue reads they can absorb
    and everything that reaches a chiplet or the root is always sunk.

    Members
    -------
    port_in : In(link_signature(cfg))
        From the switch's memory port.
    port_out : Out(link_signature(cfg))
        To the switch's memory port.
    errors : Out(COUNTER_BITS)
        Bad requests so far (wraps).
    backdoor : In(BackdoorSignature(cfg))
        The DRAM's untimed storage port (preload of the weight image, readback in tests).

    Latency and throughput
    ----------------------
    (``.contract``, a :class:`mozart.model.blocks.MemoryControllerContract`, has each number.)
    ``read_latency``: header flit accepted to MEM_DATA header sent, row hit, idle controller:
    ``dram.hit_latency`` cycles (the burst goes to the DRAM in the header's cycle and the response header waits
    for the first word; a miss or conflict adds the DRAM's difference). Payload flits follow one per
    ``words_per_flit`` cycles. Throughput: one DRAM
    word per cycle; a response packet adds one header flit to its ``ceil(words / words_per_flit)`` payload
    flits, so a weight stream reaches ``load_efficiency`` of the DRAM's peak.
    """

    def __new__(cls, cfg, group: int = 0):
        MemoryControllerContract(cfg, group)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0):
        self.contract = MemoryControllerContract(cfg, group)
        self.cfg, self.group = cfg, group
        self.proto = Protocol(cfg)
        self.topology = Topology.of(cfg)
        self.node = self.contract.node
        self.dram = DramModel(cfg)
        super().__init__({
            "port_in": In(link_signature(cfg)),
            "port_out": Out(link_signature(cfg)),
            "errors": Out(COUNTER_BITS),
            "backdoor": In(BackdoorSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, proto = self.cfg, self.proto
        m.submodules.dram = dram = self.dram
        wiring.connect(m, wiring.flipped(self.backdoor), dram.backdoor)

        wpf, wb = proto.words_per_flit, cfg.dram.word_bits
        maxw = proto.max_burst_words
        total = cfg.dram.words
        chiplets = cfg.tree.chiplets_per_group
        chiplet0 = self.topology.chiplet(self.group, 0)
        size_bits = burst_bits(cfg)

        # -- the queue of accepted requests (the outstanding slots) ---------------------------------------------
        desc_layout = data.StructLayout({
            "op": _Op, "ack": 1, "code": 2, "dst": proto.node_bits, "tag": proto.tag_bits,
            "addr": proto.addr_bits, "size": size_bits, "slot": proto.slot_bits, "expert": proto.expert_bits,
        })
        m.submodules.desc = desc = SyncFIFOBuffered(width=desc_layout.size, depth=cfg.dram.max_outstanding)
        din = Signal(desc_layout)
        dout = data.View(desc_layout, desc.r_data)
        m.d.comb += desc.w_data.eq(din)

        # -- input side: parse, check, issue DRAM bursts ------------------------------------------------------
        hin = data.View(header_layout(cfg), self.port_in.payload.data)
        kind = hin.kind
        rd, wr, ld = hin.meta.mem_read, hin.meta.mem_write, hin.meta.load
        code = Signal(MEM_ERROR_BITS)  # a MemError value (the enum has no 0, so no Signal of it)
        bad = Signal()
        has_payload = ~self.port_in.payload.last

        def check(addr_bad, length_bad):
            # ADDRESS before LENGTH: an address past the end is the more specific fault
            with m.If(addr_bad):
                m.d.comb += [bad.eq(1), code.eq(MemError.ADDRESS)]
            with m.Elif(length_bad):
                m.d.comb += [bad.eq(1), code.eq(MemError.LENGTH)]

        def out_of_range(addr, words, limit):
            return (words == 0) | (words > limit) | (addr + words > total)

        write_flits = (wr.words + (wpf - 1)) // wpf if wpf > 1 else wr.words
        with m.Switch(kind):
            with m.Case(PacketKind.MEM_READ):
                check(rd.addr >= total, out_of_range(rd.addr, rd.words, maxw) | has_payload)
            with m.Case(PacketKind.MEM_WRITE):
                check(wr.addr >= total, out_of_range(wr.addr, wr.words, maxw) | (hin.length != write_flits))
            with m.Case(PacketKind.LOAD):
                check((ld.addr >= total) | (ld.chiplet >= chiplets),
                      out_of_range(ld.addr, ld.image_words, proto.image_words) | has_payload)
            with m.Default():
                m.d.comb += [bad.eq(1), code.eq(MemError.KIND)]

        m.d.comb += [
            din.code.eq(code), din.tag.eq(hin.tag), din.dst.eq(hin.src),
            din.slot.eq(ld.slot), din.expert.eq(ld.expert),
        ]
        with m.If(bad):
            m.d.comb += din.op.eq(_Op.ERROR)
            m.d.comb += din.addr.eq(Mux(kind == PacketKind.MEM_READ, rd.addr,
                                        Mux(kind == PacketKind.MEM_WRITE, wr.addr,
                                            Mux(kind == PacketKind.LOAD, ld.addr, 0))))
        with m.Elif(kind == PacketKind.MEM_READ):
            m.d.comb += [din.op.eq(_Op.DATA), din.addr.eq(rd.addr), din.size.eq(rd.words)]
        with m.Elif(kind == PacketKind.MEM_WRITE):
            m.d.comb += [din.op.eq(_Op.WRITE), din.addr.eq(wr.addr), din.size.eq(wr.words), din.ack.eq(wr.ack)]
        with m.Else():
            m.d.comb += [din.op.eq(_Op.LOAD), din.addr.eq(ld.addr), din.size.eq(ld.image_words),
                         din.dst.eq(chiplet0 + ld.chiplet)]

        # write payload gearbox: one flit in, its words out one per cycle. The buffer drains on its own, so the
        # parser returns to HEADER as soon as the last flit is in it and the next header overlaps that drain.
        wbuf = Signal(proto.flit_bits)
        wbuf_valid = Signal()
        wsub = Signal(range(wpf))
        wn = Signal(range(wpf + 1))             # words of the write in the buffered flit
        wleft = Signal(proto.words_bits)        # words of the write not yet in the buffer
        wbuf_last = Signal()
        whs = Signal()
        wload = Signal()
        m.d.comb += [
            wbuf_last.eq(wsub == wn - 1),
            dram.wdata.valid.eq(wbuf_valid),
            dram.wdata.payload.eq(wbuf.word_select(wsub, wb)),
            whs.eq(dram.wdata.valid & dram.wdata.ready),
        ]
        with m.If(whs):
            m.d.sync += wsub.eq(wsub + 1)
            with m.If(wbuf_last):
                m.d.sync += wbuf_valid.eq(0)
        with m.If(wload):
            m.d.sync += [wbuf.eq(self.port_in.payload.data), wbuf_valid.eq(1), wsub.eq(0),
                         wn.eq(Mux(wleft > wpf, wpf, wleft)), wleft.eq(Mux(wleft > wpf, wleft - wpf, 0))]

        # reads, writes and LOADs each go to the DRAM as one burst (a LOAD's burst is the whole image)
        need_cmd = Signal()
        m.d.comb += need_cmd.eq(~bad & ((kind == PacketKind.MEM_READ) | (kind == PacketKind.MEM_WRITE)
                                        | (kind == PacketKind.LOAD)))
        with m.FSM(name="parse"):
            with m.State("HEADER"):
                m.d.comb += [
                    desc.w_en.eq(self.port_in.valid & Mux(need_cmd, dram.cmd.ready, 1)),
                    dram.cmd.valid.eq(self.port_in.valid & desc.w_rdy & need_cmd),
                    dram.cmd.payload.addr.eq(din.addr),
                    dram.cmd.payload.words.eq(din.size),
                    dram.cmd.payload.write.eq(kind == PacketKind.MEM_WRITE),
                    self.port_in.ready.eq(desc.w_rdy & Mux(need_cmd, dram.cmd.ready, 1)),
                ]
                with m.If(self.port_in.valid & self.port_in.ready):
                    with m.If(bad):
                        m.d.sync += self.errors.eq(self.errors + 1)
                        with m.If(has_payload):
                            m.next = "DISCARD"
                    with m.Elif(kind == PacketKind.MEM_WRITE):
                        m.d.sync += wleft.eq(wr.words)
                        m.next = "WRITE"
            with m.State("WRITE"):
                # the header checked that the payload is exactly ceil(words / words_per_flit) flits
                m.d.comb += [
                    self.port_in.ready.eq(~wbuf_valid | (whs & wbuf_last)),
                    wload.eq(self.port_in.valid & self.port_in.ready),
                ]
                with m.If(wload & self.port_in.payload.last):
                    m.next = "HEADER"
            with m.State("DISCARD"):
                m.d.comb += self.port_in.ready.eq(1)
                with m.If(self.port_in.valid & self.port_in.payload.last):
                    m.next = "HEADER"

        # -- write completions: one token per write burst, consumed in order by the output side -------------------
        tokens = Signal(range(cfg.dram.max_outstanding + 2))
        take_token = Signal()
        m.d.sync += tokens.eq(tokens + dram.write_done - take_token)

        # -- output side: one response per request, in order ---------------------------------------------------
        hout = Signal(header_layout(cfg))
        flit_last = Signal()   # this word completes a flit
        oleft = Signal(proto.words_bits)
        osub = Signal(range(wpf))
        acc = [Signal(wb, name=f"acc{i}") for i in range(wpf - 1)]
        ooff = Signal(size_bits)
        oleft_img = Signal(size_bits)
        chunk = Signal(proto.words_bits)
        m.d.comb += chunk.eq(Mux(oleft_img > maxw, maxw, oleft_img))
        # hout.src is set in each header branch, not here: a constant-only comb assignment becomes an
        # `always @*` with an empty sensitivity list, which Verilator never evaluates (src would read 0).
        m.d.comb += [hout.tag.eq(dout.tag), hout.dst.eq(dout.dst)]
        m.d.comb += self.port_out.payload.data.eq(hout)  # the PAYLOAD state overrides this with words

        def flits(words):
            return (words + (wpf - 1)) // wpf if wpf > 1 else words

        with m.FSM(name="respond"):
            with m.State("IDLE"):
                with m.If(desc.r_rdy):
                    with m.Switch(dout.op):
                        with m.Case(_Op.DATA):
                            m.d.comb += [
                                hout.kind.eq(PacketKind.MEM_DATA), hout.src.eq(self.node),
                                hout.length.eq(flits(dout.size)),
                                hout.meta.mem_data.addr.eq(dout.addr), hout.meta.mem_data.words.eq(dout.size),
                                self.port_out.valid.eq(dram.rdata.valid), self.port_out.payload.first.eq(1),
                            ]
                            with m.If(self.port_out.ready & dram.rdata.valid):
                                m.d.sync += [oleft.eq(dout.size), osub.eq(0)]
                                m.next = "PAYLOAD"
                        with m.Case(_Op.ERROR):
                            m.d.comb += [
                                hout.kind.eq(PacketKind.MEM_ERROR), hout.src.eq(self.node), hout.length.eq(0),
                                hout.meta.mem_error.code.eq(dout.code), hout.meta.mem_error.addr.eq(dout.addr),
                                self.port_out.valid.eq(1), self.port_out.payload.first.eq(1),
                                self.port_out.payload.last.eq(1),
                                desc.r_en.eq(self.port_out.ready),
                            ]
                        with m.Case(_Op.WRITE):
                            m.d.comb += [
                                hout.kind.eq(PacketKind.MEM_ACK), hout.src.eq(self.node), hout.length.eq(0),
                                hout.meta.mem_ack.addr.eq(dout.addr), hout.meta.mem_ack.words.eq(dout.size),
                                self.port_out.valid.eq(dout.ack & (tokens != 0)), self.port_out.payload.first.eq(1),
                                self.port_out.payload.last.eq(1),
                                take_token.eq((tokens != 0) & (~dout.ack | self.port_out.ready)),
                                desc.r_en.eq(take_token),
                            ]
                        with m.Case(_Op.LOAD):
                            m.d.sync += [ooff.eq(0), oleft_img.eq(dout.size)]
                            m.next = "WEIGHT"
            with m.State("WEIGHT"):
                m.d.comb += [
                    hout.kind.eq(PacketKind.WEIGHT), hout.src.eq(self.node), hout.length.eq(flits(chunk)),
                    hout.meta.weight.slot.eq(dout.slot), hout.meta.weight.expert.eq(dout.expert),
                    hout.meta.weight.offset.eq(ooff), hout.meta.weight.final.eq(oleft_img == chunk),
                    self.port_out.valid.eq(dram.rdata.valid), self.port_out.payload.first.eq(1),
                ]
                with m.If(self.port_out.ready & dram.rdata.valid):
                    m.d.sync += [oleft.eq(chunk), osub.eq(0), ooff.eq(ooff + chunk), oleft_img.eq(oleft_img - chunk)]
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                # words_per_flit words per flit: the first ones wait in acc, the last one passes through
                m.d.comb += [
                    flit_last.eq((osub == wpf - 1) | (oleft == 1)),
                    self.port_out.valid.eq(dram.rdata.valid & flit_last),
                    self.port_out.payload.last.eq(oleft == 1),
                    dram.rdata.ready.eq(~flit_last | self.port_out.ready),
                ]
                words = []
                for j in range(wpf):
                    mine = dram.rdata.payload if j == wpf - 1 else Mux(osub == j, dram.rdata.payload, acc[j])
                    words.append(Mux(osub >= j, mine, 0))
                m.d.comb += self.port_out.payload.data.eq(Cat(*words))
                with m.If(dram.rdata.valid & dram.rdata.ready):
                    m.d.sync += oleft.eq(oleft - 1)
                    with m.If(flit_last):
                        m.d.sync += osub.eq(0)
                    with m.Else():
                        m.d.sync += osub.eq(osub + 1)
                        for j in range(wpf - 1):
                            with m.If(osub == j):
                                m.d.sync += acc[j].eq(dram.rdata.payload)
                    with m.If(oleft == 1):
                        with m.If((dout.op == _Op.LOAD) & (oleft_img != 0)):
                            m.next = "WEIGHT"
                        with m.Else():
                            m.d.comb += desc.r_en.eq(1)
                            m.next = "IDLE"
        return m
