"""A seeded xorshift32 generator and the biased coin it flips once per cycle (test harness idle/backpressure).

No ``from __future__ import annotations``: the signature is read from the class annotations."""


from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.lfsr import COIN_BITS, STATE_BITS

__all__ = ["XorshiftCoin"]


class XorshiftCoin(wiring.Component):
    """A coin flipped once per cycle, bit-exact with :func:`mozart.model.lfsr.coin_flips`.

    While ``run`` is low the state loads ``seed`` (0 becomes 1); while it is high the state steps once per cycle.
    ``heads`` is high in a cycle when the state's low ``COIN_BITS`` bits are below ``threshold``
    (:func:`mozart.model.lfsr.threshold`): the first running cycle flips with the seed itself.

    Members
    -------
    seed : In(STATE_BITS)
    threshold : In(COIN_BITS)
        0: never heads.
    run : In(1)
    heads : Out(1)
        Combinational from the state register and ``threshold``.
    """

    seed: In(STATE_BITS)
    threshold: In(COIN_BITS)
    run: In(1)
    heads: Out(1)

    @classmethod
    def driven(cls, m, *, seed, threshold, run) -> "XorshiftCoin":
        """A coin added to ``m`` as submodule ``coin``, its inputs driven from the given values."""
        m.submodules.coin = coin = cls()
        m.d.comb += [coin.seed.eq(seed), coin.threshold.eq(threshold), coin.run.eq(run)]
        return coin

    def elaborate(self, platform):
        m = Module()
        state = Signal(STATE_BITS, init=1)
        step = Signal(STATE_BITS)
        shifted = state ^ (state << 13)[:STATE_BITS]
        shifted = shifted ^ (shifted >> 17)
        m.d.comb += step.eq(shifted ^ (shifted << 5)[:STATE_BITS])
        m.d.sync += state.eq(Mux(self.run, step, Mux(self.seed == 0, 1, self.seed)))
        m.d.comb += self.heads.eq(state[:COIN_BITS] < self.threshold)
        return m
