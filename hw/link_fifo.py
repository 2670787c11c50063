"""A flit FIFO on a link: the switch's input buffer, and the smallest block that exercises the cosim plumbing."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mozart.model.blocks import LinkFifoContract

from .protocol import flit_layout, link_signature

__all__ = ["LinkFifo"]


class LinkFifo(wiring.Component):
    """A first-in first-out buffer of ``depth`` flits between two links.

    Flits leave in the order they came, unchanged (``data``, ``first`` and ``last`` alike); the FIFO does not
    look at packets. ``i.ready`` is high while there is room, ``o.valid`` while a flit is buffered; neither
    depends combinationally on the other side, so a chain of LinkFifos has no combinational path through it.

    Parameters
    ----------
    cfg : WaferConfig
        Gives the flit layout (``hardware.flit_bits``) and the default depth.
    depth : int, optional
        Flits of storage, at least 1 (default ``cfg.hardware.buffer_depth``). Storage is one block RAM of
        ``depth - 1`` entries plus an output register (``amaranth.lib.fifo.SyncFIFOBuffered``).

    Members
    -------
    i : In(link_signature(cfg))
        Flits in.
    o : Out(link_signature(cfg))
        The same flits out, in order.

    Attributes
    ----------
    contract : LinkFifoContract
        Depth, latency (2 cycles, 1 at depth 1) and throughput (1 flit per cycle from depth 3, else 0.5):
        :class:`mozart.model.blocks.LinkFifoContract`.
    """

    def __new__(cls, cfg, depth: int | None = None):
        LinkFifoContract.of(cfg, depth)   # a rejected depth raises before a component exists (none is left unused)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, depth: int | None = None):
        self._cfg = cfg
        self.contract = LinkFifoContract.of(cfg, depth)
        super().__init__({"i": In(link_signature(cfg)), "o": Out(link_signature(cfg))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=flit_layout(self._cfg).size, depth=self.contract.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
