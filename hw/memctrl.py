"""The memory controller of one group: serves memory packets and weight loads from the group's DRAM model."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.memctrl import MemoryControllerContract
from mozart.model.protocol import COUNTER_BITS

from .dram import BackdoorSignature, DramModel
from .memctrl_decoder import RequestDecoder
from .memctrl_reorder import ReorderWindow
from .memctrl_request import request_layout
from .memctrl_responder import ResponseSender
from .memctrl_write import WriteGearbox, write_flit_layout
from .protocol import header_layout, link_signature

__all__ = ["MemoryController"]


class MemoryController(wiring.Component):
    """Memory controller of group ``group``: MEM_READ/MEM_WRITE service, weight streaming, bad-request errors.

    Order: with ``dram.reorder_window`` W = 1 (the default) requests are served **strictly in arrival order**:
    the DRAM sees their bursts in order and responses leave in order. With W > 1 a
    :class:`~mozart.hw.memctrl_reorder.ReorderWindow` between the decoder and the DRAM gives the DRAM the oldest
    of the W oldest waiting requests whose row is open (a row hit), else the oldest, with an age limit; a request
    passes an older one only if their sources differ, their address ranges are disjoint, and they are not both
    writes or both LOADs. Responses leave in the DRAM's order, so each source's responses come in its request
    order and every read sees every older write to its words. Bank parallelism comes from the DRAM model's
    lookahead in both cases.

    Parts: :class:`~mozart.hw.memctrl_decoder.RequestDecoder` (checks headers, issues DRAM bursts), the write
    buffer (two payloads of flits, so the next header reaches the DRAM while a payload drains),
    :class:`~mozart.hw.memctrl_write.WriteGearbox` (write payload to DRAM words), the queue of requests in
    service (``request_layout`` records), :class:`~mozart.hw.memctrl_responder.ResponseSender` (one response per
    record, in order), the :class:`~mozart.hw.dram.DramModel` and, with W > 1, the reorder window.

    - MEM_READ (``addr``, ``words``): MEM_DATA to the request's ``src`` with ``tag``, ``addr`` and ``words``
      echoed and the words packed ``words_per_flit`` to a flit (word 0 lowest, unused words 0). Its header
      leaves only when the first word is read, so a packet never holds the switch waiting for the DRAM.
    - MEM_WRITE (``addr``, ``words``, ``ack``; ``ceil(words / words_per_flit)`` payload flits): written in
      order; with ``ack=1`` a MEM_ACK (``addr``, ``words``) follows once the last word is in the DRAM. The burst
      goes to the DRAM with the header; the payload goes into the write buffer, which holds two full
      payloads, so the next request's header (and its burst) follows at link rate while the DRAM still writes, and the
      DRAM opens the next write's row early.
    - LOAD (``addr``, ``image_words``, ``chiplet``, ``slot``, ``expert``): the image streams to
      ``chiplet(group, chiplet)`` as WEIGHT packets of at most ``max_burst_flits`` payload flits (``offset``
      = word offset in the image, ``final=1`` on the last), tag echoed. LOADs run in command order.
    - Bad requests get MEM_ERROR (``code``, ``addr``) to ``src`` with the tag echoed, write nothing, and
      their payload is consumed and dropped; ``errors`` counts them:
      ADDRESS: ``addr`` past the DRAM, or a LOAD's ``chiplet`` not in the group;
      LENGTH: ``words``/``image_words`` of 0, a read or write over ``max_burst_words``, a run past the end,
      a write whose payload is not ``ceil(words / words_per_flit)`` flits, or a payload on a read or LOAD;
      KIND: any other packet kind (``addr`` 0).

    Flow control: a request occupies one of ``dram.max_outstanding`` slots from the cycle it is given to the
    DRAM until its response has left (with W > 1 it waits in one of the window's W places before); when all
    are taken ``port_in`` is not ready (nothing is dropped). The input stalls
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
    dram_reading, dram_writing : Out(1)
        The DRAM reads or writes a column this cycle (the activity record of ``hw/wafer_harness.py``).

    Latency and throughput
    ----------------------
    (``.contract``, a :class:`mozart.model.blocks.MemoryControllerContract`, has each number.)
    ``read_latency``: header flit accepted to MEM_DATA header sent, row hit, idle controller:
    ``dram.hit_latency`` cycles (the burst goes to the DRAM in the header's cycle and the response header waits
    for the first word; a miss or conflict adds the DRAM's difference), one more with a reorder window. Payload
    flits follow one per ``words_per_flit`` cycles. Throughput: one DRAM word per cycle; a response packet adds
    one header flit to its ``ceil(words / words_per_flit)`` payload flits, so a weight stream reaches
    ``load_efficiency`` of the DRAM's peak; so does a stream of full MEM_WRITEs on the input link, where the
    DRAM's row changes allow (``docs/memctrl.md``).
    """

    def __new__(cls, cfg, group: int = 0):
        MemoryControllerContract(cfg, group)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0):
        self.contract = MemoryControllerContract(cfg, group)
        self.cfg, self.group = cfg, group
        self.node = self.contract.node
        self.dram = DramModel(cfg)
        super().__init__({
            "port_in": In(link_signature(cfg)),
            "port_out": Out(link_signature(cfg)),
            "errors": Out(COUNTER_BITS),
            "backdoor": In(BackdoorSignature(cfg)),
            "dram_reading": Out(1), "dram_writing": Out(1),
        })

    def _reorder(self, m, decoder, dram, requests):
        """The reorder window between the decoder and both the DRAM and the queue of requests in service."""
        m.submodules.reorder = window = ReorderWindow(self.cfg)
        wiring.connect(m, decoder.requests, window.requests_in)
        wiring.connect(m, window.bursts, dram.cmd)
        wiring.connect(m, window.requests_out, requests.w_stream)
        # the record carries the burst (addr, size, op), so the decoder's burst is only acknowledged; the
        # request's src is the header's, on port_in in the cycle the decoder hands the record on
        header = data.View(header_layout(self.cfg), self.port_in.payload.data)
        m.d.comb += [decoder.bursts.ready.eq(window.requests_in.ready), window.source.eq(header.src)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dram = dram = self.dram
        m.submodules.decoder = decoder = RequestDecoder(self.cfg, self.group)
        m.submodules.write_buffer = write_buffer = SyncFIFO(width=write_flit_layout(self.cfg).size,
                                                                    depth=self.contract.write_buffer_flits)
        m.submodules.write_gearbox = write_gearbox = WriteGearbox(self.cfg)
        m.submodules.requests = requests = SyncFIFOBuffered(width=request_layout(self.cfg).size,
                                                            depth=self.contract.max_outstanding)
        m.submodules.responder = responder = ResponseSender(self.cfg, self.group)

        wiring.connect(m, wiring.flipped(self.port_in), decoder.port_in)
        if self.cfg.dram.reorder_window == 1:   # strict order: bursts and records go straight on
            wiring.connect(m, decoder.bursts, dram.cmd)
            wiring.connect(m, decoder.requests, requests.w_stream)
        else:
            self._reorder(m, decoder, dram, requests)
        wiring.connect(m, decoder.write_flits, write_buffer.w_stream)
        wiring.connect(m, write_buffer.r_stream, write_gearbox.flits)
        wiring.connect(m, write_gearbox.words, dram.wdata)
        wiring.connect(m, requests.r_stream, responder.requests)
        wiring.connect(m, dram.rdata, responder.read_words)
        wiring.connect(m, responder.port_out, wiring.flipped(self.port_out))
        wiring.connect(m, wiring.flipped(self.backdoor), dram.backdoor)
        m.d.comb += [responder.write_done.eq(dram.write_done), self.errors.eq(decoder.errors),
                     self.dram_reading.eq(dram.access_valid & ~dram.access_write),
                     self.dram_writing.eq(dram.access_valid & dram.access_write)]
        return m
