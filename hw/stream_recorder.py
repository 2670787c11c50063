"""A stream recorder: takes the flits of a link into memory, with seeded random backpressure (test harness)."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.lfsr import COIN_BITS, STATE_BITS
from mozart.model.protocol import CYCLE_BITS

from .protocol import flit_layout, link_signature
from .xorshift import XorshiftCoin

__all__ = ["StreamRecorder"]


class StreamRecorder(wiring.Component):
    """Records every flit taken on ``i`` (``data``, ``first``, ``last``) in order, as a testbench monitor would.

    While ``start`` is high, ``i.ready`` is high in every cycle in which its coin (``backpressure_seed``,
    ``backpressure_threshold``) does not say "not ready"; before ``start`` it is low. Flits beyond ``depth`` are
    taken but not stored (``count`` keeps counting, so the testbench sees the overflow).

    Members
    -------
    i : In(link_signature(cfg))
    start : In(1)
    backpressure_seed : In(STATE_BITS), backpressure_threshold : In(COIN_BITS)
    now : In(CYCLE_BITS)
        The harness's cycle counter, stamped when a frame's ``last`` flit is taken.
    count : Out(CYCLE_BITS)
        Flits taken so far.
    frames : Out(CYCLE_BITS)
        Frames (``last`` flits) taken so far.
    read_addr : In(range(depth)), read_data : Out(flit_layout(cfg))
        Read backdoor (combinational) of the recorded flits.
    stamp_addr : In(range(depth)), stamp_data : Out(CYCLE_BITS)
        Read backdoor of the cycle at which frame ``stamp_addr`` ended.

    Latency and throughput: takes one flit per cycle while ready; ``ready`` does not depend on ``valid``.
    """

    def __init__(self, cfg, depth: int):
        self._cfg, self.depth = cfg, depth
        super().__init__({
            "i": In(link_signature(cfg)), "start": In(1),
            "backpressure_seed": In(STATE_BITS), "backpressure_threshold": In(COIN_BITS),
            "now": In(CYCLE_BITS), "count": Out(CYCLE_BITS), "frames": Out(CYCLE_BITS),
            "read_addr": In(range(depth)), "read_data": Out(flit_layout(cfg)),
            "stamp_addr": In(range(depth)), "stamp_data": Out(CYCLE_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.flits = flits = Memory(shape=flit_layout(self._cfg), depth=self.depth, init=[])
        m.submodules.stamps = stamps = Memory(shape=CYCLE_BITS, depth=self.depth, init=[])
        coin = XorshiftCoin.driven(m, seed=self.backpressure_seed, threshold=self.backpressure_threshold,
                                   run=self.start)

        take = Signal()
        m.d.comb += [self.i.ready.eq(self.start & ~coin.heads), take.eq(self.i.valid & self.i.ready)]
        record = flits.write_port()
        m.d.comb += [record.addr.eq(self.count), record.data.eq(self.i.payload),
                     record.en.eq(take & (self.count < self.depth))]
        stamp = stamps.write_port()
        m.d.comb += [stamp.addr.eq(self.frames), stamp.data.eq(self.now),
                     stamp.en.eq(take & self.i.payload.last & (self.frames < self.depth))]
        m.d.sync += [self.count.eq(self.count + take), self.frames.eq(self.frames + (take & self.i.payload.last))]

        for port, addr, out in ((flits.read_port(domain="comb"), self.read_addr, self.read_data),
                                (stamps.read_port(domain="comb"), self.stamp_addr, self.stamp_data)):
            m.d.comb += [port.addr.eq(addr), out.eq(port.data)]
        return m
