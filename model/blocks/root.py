"""The contract of the root node (:class:`mozart.hw.root.Root`)."""

from __future__ import annotations

from ..host import HostInterface
from .link_fifo import LinkFifoContract

__all__ = ["RootContract"]


class RootContract:
    """Sizes and timing of the root node (derived in :class:`mozart.hw.root.Root`'s docstring).

    Members
    -------
    entries : int
        Combine entries (``2 ** hardware.tag_bits``): tokens in flight at once.
    queue : LinkFifoContract
        Each group's output queue: ``hardware.root_queue_packets`` maximum-length dispatches plus one flit (a group
        whose switch is backed up stops the others only when its queue is full).
    up_port_flits_per_cycle : float
        The root's one input port: the ``G`` up links merge in one packet mux (``hw/root_receiver.py``) that
        passes one flit per cycle, whole packets at a time; the receiver behind it is always ready.
    window : int
        TOKENs the issue window holds (``hardware.issue_window``).
    slots : int
        Weight slots of the wafer: the root's LOADED bits, numbered by :meth:`slot_index`.
    residents : int
        Local experts of the wafer: the root's RESIDENT bits, numbered by :meth:`resident_index`.
    chiplets : int
        Expert chiplets of the wafer: the root's backward credit counters, one each (:meth:`chiplet_index`).
    credit_limit : int
        Backward replicas a chiplet may have without their GATE_GRAD (``hardware.token_slots``,
        ``docs/protocol.md``'s promise 1): each credit counter counts 0..credit_limit.
    window_token_flits : int
        Flits of one issue-window position's token vectors: the longest TOKEN's, a backward TOKEN's output gradient
        and token (``2 token_flits``).
    """

    #: The packet mux behind the up links passes one flit per cycle.
    up_port_flits_per_cycle = 1.0

    def __init__(self, cfg):
        self.cfg = cfg
        self.host = HostInterface(cfg)
        # sized in maximum-length forward dispatches (a backward one, a token longer, streams through the same
        # queue): the forward's timing, which every measurement so far rests on, does not move with training
        forward = self.host.proto.dispatch_flits(cfg.tree.chiplets_per_group) - 1
        self.queue = LinkFifoContract(cfg.hardware.root_queue_packets * forward + 1)
        self.window = cfg.hardware.issue_window
        self.chiplets = chiplets = cfg.groups * cfg.chiplets_per_group
        self.credit_limit = cfg.hardware.token_slots
        self.window_token_flits = self.host.vectors(backward=True) * self.host.token_flits
        self.slots = chiplets * cfg.hardware.sram_slots
        self.residents = chiplets * cfg.experts_per_chiplet

    def chiplet_index(self, group, chiplet):
        """The wafer-wide index of ``chiplet`` of ``group`` (ints or Amaranth values)."""
        return group * self.cfg.chiplets_per_group + chiplet

    def slot_index(self, chiplet, slot):
        """The LOADED bit of ``slot`` of the wafer-wide ``chiplet``."""
        return chiplet * self.cfg.hardware.sram_slots + slot

    def resident_index(self, chiplet, local):
        """The RESIDENT bit of local expert ``local`` of the wafer-wide ``chiplet``."""
        return chiplet * self.cfg.experts_per_chiplet + local

    @property
    def entries(self) -> int:
        return self.host.entries
