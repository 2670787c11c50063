"""The contract of the memory controller (:class:`mozart.hw.memctrl.MemoryController`) and its DRAM model."""

from __future__ import annotations

import math

from ..dram_timing import DramTiming
from ..hardware_rules import dram_model_problems, raise_first
from ..protocol import Protocol
from ..topology import Topology

__all__ = ["MemoryControllerContract"]


class MemoryControllerContract:
    """Group ``group``'s memory controller: sizes, latency and throughput (derived in
    :class:`mozart.hw.memctrl.MemoryController`'s docstring); ``dram`` is the DRAM model's timing.

    Members
    -------
    dram : DramTiming
        Hit, miss and conflict latencies and the peak rate of the DRAM model (:mod:`mozart.model.dram_timing`).
    words_per_flit : int
    max_outstanding : int
        Requests in service at once (``dram.max_outstanding``): given to the DRAM, response not yet sent.
    reorder_window : int
        Requests the controller may choose among for the DRAM (``dram.reorder_window``; 1: strict order).
    window_latency : int
        Cycles the reorder window adds to every request: 1 with a window (a request waits there at least one
        cycle), 0 without.
    max_waiting : int
        Requests the controller holds before ``port_in`` stops: ``max_outstanding``, plus ``reorder_window``
        waiting in the window if there is one.
    reorder_wait_bound : int
        With a window, a request is given to the DRAM within this many requests given after it entered the
        window: ``W * (W + 1)`` (the oldest may be passed ``W`` times, :mod:`mozart.model.dram_timing`).
    read_latency : int
        Cycles from a MEM_READ header accepted to its MEM_DATA header sent (row hit, idle): the DRAM's hit
        latency, plus ``window_latency``.
    load_efficiency : float
        Fraction of the DRAM's peak a long weight stream reaches: a WEIGHT packet adds a header flit to
        ``max_burst_words`` words, so the DRAM or the output link limits. A stream of full MEM_WRITEs has the
        same bound on the input link (one header flit per ``max_burst_words`` words).
    read_buffer_words : int
        The DRAM model's read buffer: more than can be in flight (``t_cl``) plus a burst, so the DRAM can run
        ahead of headers.
    image_stream_cycles : float
        A LOAD's stream of one expert image at ``load_efficiency`` of the peak (the first word's latency aside).
    write_buffer_flits : int
        The controller's write buffer between the request decoder and the DRAM: two full MEM_WRITE payloads
        (``2 * max_burst_flits``). The DRAM holds two burst commands (active and next) and the header after them
        waits until the active one is done, so at most the rest of the active write and the whole next one are
        buffered: the buffer never stops the input link before the DRAM's command pipeline does.
    """

    def __init__(self, cfg, group: int = 0):
        raise_first(dram_model_problems(cfg))
        self.cfg, self.group = cfg, group
        self.proto = Protocol(cfg)
        self.node = Topology.of(cfg).memctrl(group)
        self.dram = DramTiming(cfg)
        self.read_buffer_words = cfg.dram.t_cl + self.proto.max_burst_words

    @property
    def words_per_flit(self) -> int:
        return self.proto.words_per_flit

    @property
    def max_outstanding(self) -> int:
        return self.cfg.dram.max_outstanding

    @property
    def reorder_window(self) -> int:
        return self.cfg.dram.reorder_window

    @property
    def window_latency(self) -> int:
        return int(self.reorder_window > 1)

    @property
    def max_waiting(self) -> int:
        return self.max_outstanding + (self.reorder_window if self.reorder_window > 1 else 0)

    @property
    def reorder_wait_bound(self) -> int:
        return self.reorder_window * (self.reorder_window + 1)

    @property
    def read_latency(self) -> int:
        return self.dram.hit_latency + self.window_latency

    @property
    def peak_words_per_cycle(self) -> int:
        return self.dram.peak_words_per_cycle

    @property
    def write_buffer_flits(self) -> int:
        return 2 * self.cfg.hardware.max_burst_flits

    @property
    def image_stream_cycles(self) -> float:
        """Cycles a LOAD streams one expert image at the load rate (``load_efficiency`` of the peak)."""
        return self.proto.image_words / (self.peak_words_per_cycle * self.load_efficiency)

    @property
    def load_efficiency(self) -> float:
        proto = self.proto
        words = proto.max_burst_words
        link_cycles = 1 + math.ceil(words / proto.words_per_flit)
        return min(1.0, words / link_cycles) / self.peak_words_per_cycle
