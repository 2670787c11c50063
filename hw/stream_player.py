"""A stream player: sends a preloaded sequence of flits on a link, with seeded random idle cycles (test harness)."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.lfsr import COIN_BITS, STATE_BITS
from mozart.model.protocol import CYCLE_BITS

from .protocol import flit_layout, link_signature
from .xorshift import XorshiftCoin

__all__ = ["StreamPlayer"]


class StreamPlayer(wiring.Component):
    """Plays ``length`` flits from its memory on ``o`` once ``start`` is high, as a testbench driver would.

    The sequence is written through the ``load_*`` backdoor (one flit per cycle) before ``start``. While running,
    before each flit the player idles for a cycle when its coin (:class:`XorshiftCoin`, ``idle_seed``,
    ``idle_threshold``) says so; a flit on ``o`` keeps ``valid`` and its payload until taken (the stream rule).
    With ``idle_threshold = 0`` it sends one flit per cycle while ``o.ready`` is high, and the first flit is valid
    in the cycle after the first edge that sees ``start``.

    Parameters
    ----------
    cfg : WaferConfig
        Gives the flit layout.
    depth : int
        Flits the memory holds.
    releases : int
        Largest release count a flit may wait for (0: no gate).

    Members
    -------
    o : Out(link_signature(cfg))
    load_addr, load_data, load_en : In
        The backdoor write port.
    load_release : In(range(releases + 1))
        Written with each flit: the flit is offered only once ``released`` has reached it (a frame's flits all
        carry its first flit's value, so a frame is never held in the middle).
    released : In(range(releases + 1))
        Releases so far (must never fall), e.g. :class:`~mozart.hw.host_attention.HostAttention`'s.
    length : In(range(depth + 1))
        Flits to play.
    start : In(1)
        Level: high from the first cycle of playing on.
    idle_seed : In(STATE_BITS), idle_threshold : In(COIN_BITS)
    now : In(CYCLE_BITS)
        The harness's cycle counter, stamped into ``stamps`` when a frame's ``last`` flit is taken.
    sent : Out(range(depth + 1))
        Flits taken so far (the index of the flit on ``o``).
    stamp_addr : In(range(depth)), stamp_data : Out(CYCLE_BITS)
        Read backdoor (combinational) of the cycle at which frame ``stamp_addr`` was taken.

    Latency and throughput: one flit per cycle; ``valid`` does not depend combinationally on ``o.ready``.
    """

    def __init__(self, cfg, depth: int, releases: int = 0):
        self._cfg, self.depth, self.releases = cfg, depth, releases
        super().__init__({
            "o": Out(link_signature(cfg)),
            "load_addr": In(range(depth)), "load_data": In(flit_layout(cfg)), "load_en": In(1),
            "load_release": In(range(releases + 1)), "released": In(range(releases + 1)),
            "length": In(range(depth + 1)), "start": In(1),
            "idle_seed": In(STATE_BITS), "idle_threshold": In(COIN_BITS),
            "now": In(CYCLE_BITS), "sent": Out(range(depth + 1)),
            "stamp_addr": In(range(depth)), "stamp_data": Out(CYCLE_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        # each entry: the flit and the release count it waits for (one memory: a second would double the Verilog)
        entry = data.StructLayout({"flit": flit_layout(self._cfg), "release": range(self.releases + 1)})
        m.submodules.flits = flits = Memory(shape=entry, depth=self.depth, init=[])
        m.submodules.stamps = stamps = Memory(shape=CYCLE_BITS, depth=self.depth, init=[])
        coin = XorshiftCoin.driven(m, seed=self.idle_seed, threshold=self.idle_threshold, run=self.start)

        load = flits.write_port()
        m.d.comb += [load.addr.eq(self.load_addr), load.data.flit.eq(self.load_data),
                     load.data.release.eq(self.load_release), load.en.eq(self.load_en)]

        valid, taken, frames = Signal(), Signal(range(self.depth + 1)), Signal(range(self.depth + 1))
        take = self.o.valid & self.o.ready
        following = Signal(range(self.depth + 1))   # the flit on o from the next cycle on
        m.d.comb += following.eq(taken + take)
        # The read port's address runs one cycle ahead, so its data is always the flit at index 'taken'.
        read = flits.read_port()
        m.d.comb += [read.addr.eq(following), self.o.payload.eq(read.data.flit), self.sent.eq(taken),
                     # released only grows, so a flit once offered stays offered
                     self.o.valid.eq(valid & (read.data.release <= self.released))]
        m.d.sync += taken.eq(following)
        with m.If(self.start & (~valid | self.o.ready)):
            m.d.sync += valid.eq((following < self.length) & ~coin.heads)

        stamp_write = stamps.write_port()
        m.d.comb += [stamp_write.addr.eq(frames), stamp_write.data.eq(self.now),
                     stamp_write.en.eq(take & self.o.payload.last)]
        m.d.sync += frames.eq(frames + stamp_write.en)
        stamp_read = stamps.read_port(domain="comb")
        m.d.comb += [stamp_read.addr.eq(self.stamp_addr), self.stamp_data.eq(stamp_read.data)]
        return m
