"""The contract of the root node (:class:`mozart.hw.root.Root`)."""

from __future__ import annotations

from ..host import HostInterface, HostOp
from .link_fifo import LinkFifoContract

__all__ = ["RootContract", "QUEUE_PACKETS"]

#: Maximum-length dispatches each group's output queue holds (a group whose switch is backed up stops the others
#: only when its queue is full).
QUEUE_PACKETS = 4


class RootContract:
    """Sizes and timing of the root node (derived in :class:`mozart.hw.root.Root`'s docstring).

    Members
    -------
    entries : int
        Combine entries (``2 ** hardware.tag_bits``): tokens in flight at once.
    queue : LinkFifoContract
        Each group's output queue: ``queue_packets`` maximum-length dispatches plus one flit.
    """

    def __init__(self, cfg, queue_packets: int = QUEUE_PACKETS):
        self.cfg = cfg
        self.host = HostInterface(cfg)
        self.queue_packets = queue_packets
        self.queue = LinkFifoContract(queue_packets * self.host.proto.max_dispatch_flits + 1)

    @property
    def entries(self) -> int:
        return self.host.entries

    def token_cycles(self, longest_group_flits: int) -> int:
        """Cycles the command stream is busy with one TOKEN whose longest group sends that many flits."""
        return self.host.flits(HostOp.TOKEN) + longest_group_flits + 1
