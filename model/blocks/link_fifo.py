"""The contract of a link's flit FIFO (:class:`mozart.hw.link_fifo.LinkFifo`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["LinkFifoContract"]


@dataclass(frozen=True)
class LinkFifoContract:
    """A first-in first-out buffer of ``depth`` flits (``amaranth.lib.fifo.SyncFIFOBuffered``: a RAM of
    ``depth - 1`` entries plus an output register).

    Members
    -------
    depth : int
        Flits of storage, at least 1.
    latency : int
        Cycles from the edge that accepts a flit on an empty FIFO to the first edge at which it can leave:
        2 (one for the RAM write, one for the registered read), 1 when ``depth == 1``.
    throughput : float
        Sustained flits per cycle with the output ready: 1.0 for ``depth >= 3``; 0.5 for depth 1 or 2 (the
        one-entry RAM reports full in the cycle it is read, so it alternates).
    """

    depth: int

    def __post_init__(self):
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"LinkFifo depth must be a positive integer, not {self.depth!r}")

    @classmethod
    def of(cls, cfg, depth: int | None = None) -> "LinkFifoContract":
        """The FIFO of ``depth`` flits, by default ``hardware.buffer_depth``."""
        return cls(cfg.hardware.buffer_depth if depth is None else depth)

    @property
    def latency(self) -> int:
        return 1 if self.depth == 1 else 2

    @property
    def throughput(self) -> float:
        return 0.5 if self.depth <= 2 else 1.0
