"""DRAM timing model: the RTL (``mozart.hw.dram``) against the Python model (``mozart.model.dram_timing``),
cycle for cycle, on hits, misses, conflicts, refresh and random bursts, plus data through the storage."""

import random

import pytest
from amaranth.sim import Simulator

from mozart.hw.dram import DramModel
from mozart.model.config import load_config, override
from mozart.model.dram_timing import Command, DramTiming, split_address

TINY = load_config("tiny")
#: few banks, slow rows, refresh on; many banks; a t_cl of 2 (no delay stages) with free activation
CONFIGS = {
    "slow2bank": override(TINY, {"dram.banks": 2, "dram.rows": 40, "dram.row_words": 16, "dram.t_rcd": 7,
                                 "dram.t_cl": 5, "dram.t_rp": 6, "dram.refresh_interval": 97,
                                 "dram.refresh_cycles": 9}),
    "many_banks": override(TINY, {"dram.banks": 16, "dram.rows": 4, "dram.row_words": 8, "dram.t_rcd": 3,
                                  "dram.t_cl": 3, "dram.t_rp": 2}),
    "fast": override(TINY, {"dram.rows": 2, "dram.t_rcd": 0, "dram.t_cl": 2, "dram.t_rp": 0}),
}


def run_rtl(cfg, commands, *, preload=None, wdata=None, write_offered=None):
    """Drive ``commands`` into the RTL with the Python model's assumptions (read data always taken; write word
    ``i`` offered from cycle ``write_offered[i]``, or at once); returns (accesses as (addr, write, cycle), read words
    with their cycles, memory)."""
    dut = DramModel(cfg)
    accesses, reads = [], []
    wdata = list(wdata or [])
    write_offered = list(write_offered or [])
    memory = {}
    limit = 200 + sum(c.words for c in commands) * (cfg.dram.t_rp + cfg.dram.t_rcd + 4) + max(
        (c.at for c in commands), default=0)

    async def bench(ctx):
        for addr, word in (preload or {}).items():
            ctx.set(dut.backdoor.addr, addr)
            ctx.set(dut.backdoor.wdata, word)
            ctx.set(dut.backdoor.we, 1)
            await ctx.tick()
        ctx.set(dut.backdoor.we, 0)
        # cycle 0 of the Python model is the first cycle after reset: preload happens before, in reset
        head, cycle = 0, 0
        ctx.set(dut.rdata.ready, 1)
        while cycle < limit:
            offer = head < len(commands) and commands[head].at <= cycle
            ctx.set(dut.cmd.valid, offer)
            if offer:
                c = commands[head]
                ctx.set(dut.cmd.payload, {"addr": c.addr, "words": c.words, "write": c.write})
            ctx.set(dut.wdata.valid, bool(wdata) and (not write_offered or write_offered[0] <= cycle))
            if wdata:
                ctx.set(dut.wdata.payload, wdata[0])
            if ctx.get(dut.access_valid):
                accesses.append((ctx.get(dut.access_addr), bool(ctx.get(dut.access_write)), cycle))
                if ctx.get(dut.access_write):
                    wdata.pop(0)
                    if write_offered:
                        write_offered.pop(0)
            if ctx.get(dut.rdata.valid):
                reads.append((ctx.get(dut.rdata.payload), cycle))
            if offer and ctx.get(dut.cmd.ready):
                head += 1
            await ctx.tick()
            cycle += 1
            if head == len(commands) and len(accesses) == sum(c.words for c in commands) and \
                    len(reads) == sum(c.words for c in commands if not c.write):
                break
        for addr in range(cfg.dram.words if preload is not None else 0):
            ctx.set(dut.backdoor.addr, addr)
            await ctx.tick()
            memory[addr] = ctx.get(dut.backdoor.rdata)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)

    # The preload runs while the DRAM's refresh counter already counts: shift the model's cycle 0 instead.
    sim.run()
    return accesses, reads, memory


def check_timing(cfg, commands, **kwargs):
    model = DramTiming(cfg)
    offset = len(kwargs.get("preload") or {})
    shifted = [Command(c.addr, c.words, c.write, c.at + offset) for c in commands]
    offered = kwargs.get("write_offered")
    expected = [(a.addr, a.write, a.cycle) for a in
                model.run(shifted, write_offered=None if offered is None else [c + offset for c in offered])]
    got, reads, memory = run_rtl(cfg, commands, **kwargs)
    got = [(a, w, c + offset) for a, w, c in got]
    first = next((i for i, (x, y) in enumerate(zip(got + [None] * len(expected), expected)) if x != y), None)
    assert got == expected, (f"RTL access cycles must equal the timing model's; first difference at access {first}"
                             f": RTL {got[:8]}..., model {expected[:8]}...")
    read_cycles = [c + offset for _, c in reads]
    assert read_cycles == [c + cfg.dram.t_cl for a, w, c in expected if not w], \
        "read data must appear t_cl cycles after its column command"
    return model, reads, memory


def addr_of(cfg, bank, row, col=0):
    d = cfg.dram
    return (row * d.banks + bank) * d.row_words + col


@pytest.mark.parametrize("name", list(CONFIGS))
def test_latencies_hit_miss_conflict(name):
    cfg = CONFIGS[name]
    model = DramTiming(cfg)
    t0 = 3  # clear of the refresh window of slow2bank
    # miss (closed bank), then a hit on the same row, then a conflict (other row, same bank)
    cmds = [Command(addr_of(cfg, 0, 0, 0), 1, False, t0), Command(addr_of(cfg, 0, 0, 1), 1, False, t0 + 25),
            Command(addr_of(cfg, 0, 1, 0), 1, False, t0 + 50)]
    acc = model.run(cmds)
    assert acc[0].cycle + cfg.dram.t_cl - t0 == model.miss_latency
    assert acc[1].cycle + cfg.dram.t_cl - (t0 + 25) == model.hit_latency
    assert acc[2].cycle + cfg.dram.t_cl - (t0 + 50) == model.conflict_latency
    assert (model.misses, model.conflicts) == (1, 1)
    check_timing(cfg, cmds)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sequential_stream_full_rate(name):
    cfg = CONFIGS[name]
    burst = 8
    cmds = [Command(a, burst) for a in range(0, min(40 * burst, cfg.dram.words), burst)]
    model, _, _ = check_timing(cfg, cmds)
    acc = model.run(cmds)
    span = acc[-1].cycle - acc[0].cycle + 1
    if cfg.dram.refresh_interval == 0 and cfg.dram.banks > 1:
        assert span == len(acc), "a sequential stream over several banks must issue one word every cycle"


def test_refresh_stalls_and_closes_rows():
    cfg = CONFIGS["slow2bank"]
    d = cfg.dram
    model = DramTiming(cfg)
    # one word of row 0 every 10 cycles: refresh windows in between close the row (misses after them)
    cmds = [Command(addr_of(cfg, 0, 0, i % d.row_words), 1, False, 10 * i) for i in range(30)]
    acc = model.run(cmds)
    assert all(not model.refreshing(a.cycle) for a in acc), "no access may issue in a refresh cycle"
    assert model.misses > 1 and model.refresh_stall_cycles > 0
    check_timing(cfg, cmds)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_random_bursts_cycle_exact_with_data(name, seed):
    cfg = CONFIGS[name]
    d = cfg.dram
    rng = random.Random(seed)
    maxw = 8
    cmds, wdata, shadow = [], [], {}
    preload = {a: rng.getrandbits(d.word_bits) for a in range(d.words)}
    shadow.update(preload)
    expected_reads = []
    at = 0
    for _ in range(60):
        # local bursts with some far jumps: hits, misses and conflicts in one run
        base = rng.choice([rng.randrange(d.words), (cmds[-1].addr + cmds[-1].words) % d.words if cmds else 0])
        # mostly packet-sized bursts, some as long as a weight image (a LOAD is one burst)
        words = rng.randint(1, min(maxw if rng.random() < 0.8 else 40, d.words - base))
        write = rng.random() < 0.4
        at += rng.choice([0, 0, 0, 1, 5])
        cmds.append(Command(base, words, write, at))
        for a in range(base, base + words):
            if write:
                shadow[a] = rng.getrandbits(d.word_bits)
                wdata.append(shadow[a])
            else:
                expected_reads.append(shadow[a])
    _, reads, memory = check_timing(cfg, cmds, preload=preload, wdata=wdata)
    assert [w for w, _ in reads] == expected_reads, "read data must equal the last write (or preload) of each word"
    assert memory == shadow, "storage must hold exactly the writes"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_late_write_data_cycle_exact(name):
    """Write commands ahead of their data, as the memory controller issues them (the command with the header, the
    words as the payload arrives): each write word offered only from a random later cycle; reads in between."""
    cfg = CONFIGS[name]
    d = cfg.dram
    rng = random.Random(3)
    cmds, offered, at = [], [], 0
    for _ in range(50):
        words = rng.randint(1, 12)
        base = rng.choice([rng.randrange(d.words - words), min((cmds[-1].addr + cmds[-1].words) if cmds else 0,
                                                               d.words - words)])
        write = rng.random() < 0.7
        at += rng.choice([0, 0, 1, 4])
        cmds.append(Command(base, words, write, at))
        ready = max(offered[-1] if offered else 0, at)
        for _ in range(words if write else 0):
            ready += rng.choice([0, 1, 1, 2, 9])   # the payload trickles in, sometimes far behind
            offered.append(ready)
    late = DramTiming(cfg).run(cmds, write_offered=offered)
    at_once = DramTiming(cfg).run(cmds)
    assert sum(a.cycle for a in late) > sum(a.cycle for a in at_once), \
        "late write data must delay accesses (else this tests nothing)"
    check_timing(cfg, cmds, wdata=[rng.getrandbits(d.word_bits) for _ in offered], write_offered=offered)
    with pytest.raises(ValueError, match="write_offered must give a cycle for each"):
        DramTiming(cfg).run(cmds, write_offered=offered[:-1])


def test_split_address_row_bank_column():
    cfg = CONFIGS["many_banks"]
    d = cfg.dram
    assert split_address(d, 0) == (0, 0, 0)
    assert split_address(d, d.row_words) == (1, 0, 0)
    assert split_address(d, d.row_words * d.banks + 3) == (0, 1, 3)
    with pytest.raises(ValueError, match="must be in 0"):
        split_address(d, d.words)
