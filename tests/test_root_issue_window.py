"""The root's issue window alone in amaranth.sim, against a cycle-level reference of its rule (no Verilator).

Seeded random stimulus: TOKENs offered with idle cycles, LOADED and LOAD (evict) reports (a fifth of the LOADEDs
from a slot that is not their expert's latest: an older layer's answer), combine entries occupied and freed, a
dispatcher with random backpressure. Each cycle the reference says which tokens are stored,
which are ready (experts resident, entry free if first, no older token with the same entry) and so what
``token`` must offer; at the end every token was dispatched exactly once and the window is empty. Mutants of
the rule (readiness ignored, same-entry rule ignored, youngest first, a LOADED from any slot) must fail the
check.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from amaranth import Const, Elaboratable, Module, Mux, Signal
from amaranth.sim import Simulator

from mozart.hw.root_interfaces import loaded_layout, token_layout
from mozart.hw.root_issue_window import RootIssueWindow
from mozart.model.blocks.root import RootContract
from mozart.model.config import load_config


class _Bench(Elaboratable):
    """The window with the neighbours it asks: a token's needs are its routing's low bits (the test writes them
    there), and the combine entries' occupancy is a mask the test drives."""

    def __init__(self, contract, window_class):
        self.contract = contract
        self.dut = window_class(contract)
        self.occupied = Signal(contract.entries)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += dut.needs.needs.eq(dut.needs.route[:self.contract.residents])
        for probe in dut.entry:
            m.d.comb += probe.occupied.eq(self.occupied.bit_select(probe.entry, 1))
        return m


def _contract(window):
    cfg = load_config("tiny")
    cfg = dataclasses.replace(cfg, hardware=dataclasses.replace(cfg.hardware, issue_window=window))
    return RootContract(cfg)


def _tokens(contract, rng, n):
    """``n`` token payloads: a few entries (so that two stored tokens share one), random ``first``, random needs."""
    layout = token_layout(contract)
    tokens = []
    for i in range(n):
        value = layout.const({"header": {"token": rng.randrange(4), "first": rng.randrange(2), "final": 1,
                                         "dedup": 1, "save": 0},
                              "route": [rng.getrandbits(contract.residents) & rng.getrandbits(contract.residents)]
                              + [0] * (contract.host.route_flits - 1),
                              "flits": [i] + [0] * (contract.host.token_flits - 1)})
        tokens.append(value.as_value().value)
    return tokens


class _Reference:
    """The window's rule, cycle by cycle (module docstring)."""

    def __init__(self, contract):
        self.contract, self.layout = contract, token_layout(contract)
        self.stored: list[int] = []   # payloads, oldest first
        self.resident = 0
        self.latest: dict[int, int] = {}   # RESIDENT bit -> the slot of its latest LOAD (none: any slot sets it)
        self.sending: int | None = None   # index in ``stored`` of the token being sent

    def report(self, evict, loaded):
        """The RESIDENT bits after an edge with ``evict`` and ``loaded`` ((resident, slot) or None)."""
        newest = None
        if loaded is not None:
            same = evict is not None and evict[0] == loaded[0]
            newest = evict[1] if same else self.latest.get(loaded[0], loaded[1])
        self.resident &= ~(1 << evict[0]) if evict is not None else ~0
        if loaded is not None and loaded[1] == newest:
            self.resident |= 1 << loaded[0]
        if evict is not None:
            self.latest[evict[0]] = evict[1]

    def ready(self, occupied):
        out = []
        for i, payload in enumerate(self.stored):
            token = self.layout.from_bits(payload)
            needs = token.route[0] & ((1 << self.contract.residents) - 1)
            older = any(self.layout.from_bits(p).header.token == token.header.token for p in self.stored[:i])
            entry_free = not token.header.first or not (occupied >> token.header.token) & 1
            out.append(not needs & ~self.resident and entry_free and not older)
        return out


def _run(window_class, window, seed, n=120):
    contract = _contract(window)
    bench = _Bench(contract, window_class)
    dut = bench.dut
    rng = random.Random(seed)
    tokens = _tokens(contract, rng, n)
    dispatched: list[int] = []

    async def process(ctx):
        ref, layout = _Reference(contract), loaded_layout(contract)
        offered, occupied = 0, 0
        for cycle in range(6000):
            draining = offered == n and cycle > 4500
            ctx.set(dut.token_in.valid, offered < n and (ctx.get(dut.token_in.valid) or rng.random() < 0.5))
            ctx.set(dut.token_in.payload, tokens[offered] if offered < n else 0)
            loaded = (rng.randrange(contract.residents), 0) if draining or rng.random() < 0.15 else None
            if loaded is not None:
                stale = not draining and rng.random() < 0.2
                loaded = (loaded[0], rng.randrange(contract.slots) if stale else ref.latest.get(loaded[0], 0))
            evicted = (rng.randrange(contract.residents), rng.randrange(contract.slots)) \
                if not draining and rng.random() < 0.04 else None
            for port, report in ((dut.loaded, loaded), (dut.evict, evicted)):
                ctx.set(port.valid, report is not None)
                if report is not None:
                    ctx.set(port.payload, layout.const({"resident": report[0], "slot": report[1]}))
            if draining:
                occupied = 0
            elif rng.random() < 0.1:
                occupied ^= 1 << rng.randrange(4)
            ctx.set(bench.occupied, occupied)
            ctx.set(dut.token.ready, draining or rng.random() < 0.5)
            _, _, taken_in, valid, ready, payload, empty = await ctx.tick().sample(
                dut.token_in.ready, dut.token.valid, dut.token.ready, dut.token.payload, dut.empty)
            taken_in = taken_in and offered < n and ctx.get(dut.token_in.valid)
            # what the window must have shown in the cycle before this edge
            assert taken_in or offered == n or not ctx.get(dut.token_in.valid) or len(ref.stored) == window
            assert empty == (not ref.stored), f"cycle {cycle}: empty"
            if ref.sending is not None:
                assert not valid and payload == ref.stored[ref.sending], f"cycle {cycle}: the sent token must hold"
            else:
                ready_now = ref.ready(occupied)
                assert valid == any(ready_now), f"cycle {cycle}: valid {valid}, ready positions {ready_now}"
                if valid:
                    assert payload == ref.stored[ready_now.index(True)], f"cycle {cycle}: not the oldest ready"
            # the edge: update the reference
            if ref.sending is not None and ready:
                ref.stored.pop(ref.sending)
                ref.sending = None
            elif valid and ready:
                ref.sending = ref.stored.index(payload)
                dispatched.append(payload)
            if taken_in:
                ref.stored.append(tokens[offered])
                offered += 1
                ctx.set(dut.token_in.valid, 0)
            ref.report(evicted, loaded)
        assert ctx.get(dut.empty), f"the window must drain ({offered} of {n} offered, resident {ref.resident:b})"

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(process)
    sim.run()
    assert sorted(dispatched) == sorted(tokens), "every token dispatched exactly once"
    return tokens, dispatched


@pytest.mark.parametrize("window", [1, 2, 3])
def test_window_dispatches_the_oldest_ready_token(window):
    tokens, dispatched = _run(RootIssueWindow, window, seed=window)
    if window == 1:
        assert dispatched == tokens
    else:
        assert dispatched != tokens, "the stimulus must make younger tokens go ahead"


class _IgnoresResidency(RootIssueWindow):
    def _ready(self, m, stored, payload, needs, resident):
        return super()._ready(m, stored, payload, [0] * len(needs), resident)


class _IgnoresSameEntry(RootIssueWindow):
    def _ready(self, m, stored, payload, needs, resident):
        ready = super()._ready(m, stored, payload, needs, resident)
        # the mutant: position 1 does not look at position 0's entry
        header = [token_layout(self.contract)(p).header for p in payload]
        if len(ready) > 1:
            ready[1] = stored[1] & ~(needs[1] & ~resident).any() & (~header[1].first | ~self.entry[1].occupied)
        return ready


class _YoungestFirst(RootIssueWindow):
    def _oldest(self, m, ready):
        chosen = Signal(range(self.contract.window))
        for p in range(self.contract.window):
            with m.If(ready[p]):
                m.d.comb += chosen.eq(p)
        return chosen


class _AnySlotSetsResident(RootIssueWindow):
    def _resident_bits(self, m):   # the mutant: a LOADED sets its bit whatever slot it comes from
        resident = Signal(self.contract.residents)
        layout = loaded_layout(self.contract)
        evict, report = layout(self.evict.payload), layout(self.loaded.payload)
        one = Const(1, self.contract.residents)
        m.d.sync += resident.eq(resident & ~Mux(self.evict.valid, one << evict.resident, 0)
                                | Mux(self.loaded.valid, one << report.resident, 0))
        return resident


@pytest.mark.parametrize("mutant", [_IgnoresResidency, _IgnoresSameEntry, _YoungestFirst, _AnySlotSetsResident])
def test_mutants_of_the_rule_are_caught(mutant):
    with pytest.raises(AssertionError):
        _run(mutant, 2, seed=2)
