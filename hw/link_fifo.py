"""A flit FIFO on a link: the switch's input buffer, and the smallest block that exercises the cosim plumbing."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mozart.model.errors import ConfigError

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
    latency : int
        Cycles from the clock edge that accepts a flit on an empty FIFO to the first edge at which it can
        leave on ``o``: 2 (one for the RAM write, one for the registered read), 1 when ``depth == 1``.
    throughput : float
        Sustained flits per cycle with ``o.ready`` held high: 1.0 for ``depth >= 3``; 0.5 for depth 1 or 2
        (``SyncFIFOBuffered`` reports its one-entry RAM full in the cycle it is read, so it alternates).
    """

    def __init__(self, cfg, depth: int | None = None):
        depth = cfg.hardware.buffer_depth if depth is None else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            self._MustUse__silence = True  # a rejected component is not an unused one
            raise ConfigError(f"LinkFifo depth must be a positive integer, not {depth!r}")
        self._cfg = cfg
        self._depth = depth
        super().__init__({"i": In(link_signature(cfg)), "o": Out(link_signature(cfg))})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def latency(self) -> int:
        return 1 if self._depth == 1 else 2

    @property
    def throughput(self) -> float:
        return 0.5 if self._depth <= 2 else 1.0

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=flit_layout(self._cfg).size, depth=self._depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
