"""The reorder window in front of the DRAM (``dram.reorder_window`` > 1): the RTL (``ReorderWindow`` feeding
``DramModel``, wired as in the memory controller) against its Python twin (``DramTiming.run``), cycle for cycle,
in the order served; the age limit's bound on waiting; the ordering rules."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from mozart.hw.dram import DramModel
from mozart.hw.memctrl_reorder import ReorderWindow
from mozart.hw.memctrl_request import ResponseOp
from mozart.model.blocks import MemoryControllerContract
from mozart.model.config import override
from mozart.model.dram_timing import Command, DramTiming, may_pass, split_address
from mozart.model.protocol import Protocol
from test_dram import CONFIGS as DRAM_CONFIGS   # the DRAM configs of the cycle-exact tests

#: two banks with slow rows and refresh (reordering has most to win); many banks with short rows (test_dram's)
CONFIGS = {name: DRAM_CONFIGS[name] for name in ("slow2bank", "many_banks")}


class WindowedDram(Elaboratable):
    """The reorder window's bursts into the DRAM model, as in ``MemoryController``; the queue of requests in
    service (``window.requests_out``) is left to the testbench."""

    def __init__(self, cfg, window_class=ReorderWindow):
        self.window, self.dram = window_class(cfg), DramModel(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.window, m.submodules.dram = self.window, self.dram
        wiring.connect(m, self.window.bursts, self.dram.cmd)
        return m


def op_of(command: Command) -> ResponseOp:
    return ResponseOp.WRITE if command.write else ResponseOp.LOAD if command.load else ResponseOp.DATA


def run_rtl(cfg, commands, write_offered, *, window_class=ReorderWindow):
    """Offer ``commands`` (each from its ``at`` cycle, held until taken) to the window, write word ``i`` from
    ``write_offered[i]``, all read data and given requests taken at once. Returns (accesses as (addr, write,
    cycle), read-data cycles, the commands' indices in the order given)."""
    dut = WindowedDram(cfg, window_class)
    window, dram = dut.window, dut.dram
    tag_limit = 1 << Protocol(cfg).tag_bits
    assert len(commands) <= tag_limit, "the tag identifies a command here"
    accesses, read_cycles, given = [], [], []
    offered = list(write_offered)
    total_words = sum(c.words for c in commands)
    limit = 400 + total_words * (cfg.dram.t_rp + cfg.dram.t_rcd + 4) + max(c.at for c in commands)

    async def bench(ctx):
        head, cycle = 0, 0
        ctx.set(dram.rdata.ready, 1)
        ctx.set(window.requests_out.ready, 1)
        while cycle < limit and len(accesses) < total_words:
            offer = head < len(commands) and commands[head].at <= cycle
            ctx.set(window.requests_in.valid, offer)
            if offer:
                c = commands[head]
                ctx.set(window.requests_in.payload, {"op": op_of(c), "addr": c.addr, "size": c.words, "tag": head})
                ctx.set(window.source, c.source)
            ctx.set(dram.wdata.valid, bool(offered) and offered[0] <= cycle)
            if ctx.get(dram.access_valid):
                accesses.append((ctx.get(dram.access_addr), bool(ctx.get(dram.access_write)), cycle))
                if ctx.get(dram.access_write):
                    offered.pop(0)
            if ctx.get(dram.rdata.valid):
                read_cycles.append(cycle)
            if ctx.get(window.requests_out.valid):
                given.append(ctx.get(window.requests_out.payload.tag))
            if offer and ctx.get(window.requests_in.ready):
                head += 1
            await ctx.tick()
            cycle += 1
        for _ in range(cfg.dram.t_cl + 1):   # the last reads' data
            if ctx.get(dram.rdata.valid):
                read_cycles.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return accesses, read_cycles, given


def random_traffic(cfg, rng, count, *, sources=3):
    """Requests of a few sources, each source working on a few rows of its own (so row hits exist) with some
    jumps anywhere (so overlaps between sources exist too); random idle; write words trickle in."""
    d = cfg.dram
    home = {s: [rng.randrange(d.words - 16) for _ in range(2)] for s in range(sources)}
    commands, offered, at = [], [], 0
    for _ in range(count):
        source = rng.randrange(sources)
        words = rng.randint(1, 8) if rng.random() < 0.9 else rng.randint(9, 24)
        base = rng.choice(home[source]) + rng.randrange(8) if rng.random() < 0.8 else rng.randrange(d.words)
        base = min(base, d.words - words)
        write, load = rng.random() < 0.35, rng.random() < 0.1
        at += rng.choice([0, 0, 0, 1, 3])
        commands.append(Command(base, words, write, at, source, load and not write))
        ready = max(offered[-1] if offered else 0, at)
        for _ in range(words if write else 0):
            ready += rng.choice([0, 0, 1, 2])
            offered.append(ready)
    return commands, offered


def check_against_twin(cfg, commands, offered, window):
    model = DramTiming(cfg)
    expected = [(a.addr, a.write, a.cycle) for a in model.run(commands, write_offered=offered, reorder_window=window)]
    got, read_cycles, given = run_rtl(cfg, commands, offered)
    assert given == model.served, "the window must give the DRAM the requests in the twin's order"
    first = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), None)
    assert got == expected, f"RTL access cycles must equal the twin's; first difference at access {first}"
    assert read_cycles == [c + cfg.dram.t_cl for _, w, c in expected if not w], \
        "read data must appear t_cl cycles after its column command"
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("window", [2, 4, 8])
def test_random_traffic_cycle_exact(name, window):
    cfg = override(CONFIGS[name], {"dram.reorder_window": window})
    commands, offered = random_traffic(cfg, random.Random(window), 150)
    model = check_against_twin(cfg, commands, offered, window)
    passed = sum(1 for i, c in enumerate(model.served) if any(o > c for o in model.served[:i]))
    assert passed > 0, "the traffic must make the window reorder (else this tests nothing)"


def follows_rules(commands, served) -> str | None:
    """The first ordering rule ``served`` breaks: a request given before an older one it may not pass."""
    position = {index: n for n, index in enumerate(served)}
    for newer, command in enumerate(commands):
        for older in range(newer):
            if position[newer] < position[older] and not may_pass(commands[older], command):
                return f"request {newer} was given before request {older}, which it may not pass"
    return None


@pytest.mark.parametrize("window", [2, 4, 8, 16])
def test_twin_keeps_order_rules_and_wait_bound(window):
    """The twin (so the RTL, which equals it): same source, overlapping ranges, writes and LOADs never pass each
    other; a request is given within ``W * (W + 1)`` requests given after it entered."""
    cfg = override(CONFIGS["slow2bank"], {"dram.reorder_window": window})
    for seed in range(4):
        commands, offered = random_traffic(cfg, random.Random(100 + seed), 300)
        model = DramTiming(cfg)
        model.run(commands, write_offered=offered, reorder_window=window)
        assert sorted(model.served) == list(range(len(commands))), "every request served exactly once"
        assert follows_rules(commands, model.served) is None
        assert max_passed(model.served) <= MemoryControllerContract(cfg).reorder_wait_bound


def test_order_rules_check_catches_a_twin_that_passes_anything(monkeypatch):
    """Mutant: a twin whose window lets any request pass any other breaks the rules, and the check says so."""
    from mozart.model import dram_timing  # noqa: PLC0415
    cfg = override(CONFIGS["slow2bank"], {"dram.reorder_window": 4})
    commands, offered = random_traffic(cfg, random.Random(100), 300)
    monkeypatch.setattr(dram_timing, "may_pass", lambda older, newer: True)
    model = DramTiming(cfg)
    model.run(commands, write_offered=offered)
    assert follows_rules(commands, model.served) is not None


def max_passed(served) -> int:
    """The most requests given ahead of a request that is older than them (a lower bound of its wait, in
    requests given after it entered)."""
    return max(sum(1 for later in served[:n] if later > index) for n, index in enumerate(served))


def starving_traffic(cfg, count=60):
    """Source 1 streams 8-word row hits to row 0 of bank 0, faster than the DRAM serves them; source 0 asks once,
    behind the first three, for row 1 of bank 0 (never a row hit while the stream goes on)."""
    d = cfg.dram
    stream = [Command(8 * (n % 2), 8, False, 0, source=1) for n in range(count)]
    victim = Command(d.row_words * d.banks, 8, False, 0, source=0)
    return stream[:3] + [victim] + stream[3:]


@pytest.mark.parametrize("window", [2, 4])
def test_age_limit_bounds_the_wait(window):
    """A request that is never a row hit still leaves within ``W * (W + 1)`` requests; the mutant window with no
    age limit starves it until the stream of row hits ends."""
    cfg = override(CONFIGS["slow2bank"], {"dram.reorder_window": window})
    commands = starving_traffic(cfg)
    assert split_address(cfg.dram, commands[3].addr)[:2] != split_address(cfg.dram, commands[0].addr)[:2]
    given = check_against_twin(cfg, commands, [], window).served   # the RTL's order, checked equal
    bound = MemoryControllerContract(cfg).reorder_wait_bound   # W * (W + 1)
    assert max_passed(given) <= bound
    assert max_passed(given) == window, "the victim must be passed exactly W times, then forced"

    class NoAgeLimit(ReorderWindow):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.age_limit = 1 << 20   # never reached: the oldest is never forced
    _, _, starved = run_rtl(cfg, commands, [], window_class=NoAgeLimit)
    assert max_passed(starved) > bound, "the mutant must starve the victim (else this tests nothing)"


def test_window_of_one_is_the_old_order():
    """With the twin's W = 1 the DRAM takes commands in order, exactly as before the window existed."""
    cfg = CONFIGS["slow2bank"]
    commands, offered = random_traffic(cfg, random.Random(5), 80)
    model = DramTiming(cfg)
    model.run(commands, write_offered=offered, reorder_window=1)
    assert model.served == list(range(len(commands)))
    with pytest.raises(ValueError, match="reorder_window must be 1..16"):
        DramTiming(cfg).run(commands, reorder_window=0)
