"""The chiplet's restore unit alone (amaranth.sim): a backward token's saved pre-activations come back from a DRAM
(a responder answering MEM_READs in order, with random delays, idle and backpressure) into the restore buffer, and
each (entry, expert) is reported restored only once its whole vector is in."""

import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mozart.hw.chiplet_restore import ChipletRestore
from mozart.model import golden
from mozart.model.config import load_config, override
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol

TINY = load_config("tiny")
CONFIGS = {
    "tiny": TINY,
    "tiny-burst1": override(TINY, {"hardware.max_burst_flits": 1}),   # two reads per expert
    "wafer4x4": load_config("wafer4x4"),
    "flit128-word32": override(TINY, {"hardware.flit_bits": 128, "dram.word_bits": 32, "moe.d_ff": 48,
                                      "hardware.mac_lanes": 8, "hardware.max_burst_flits": 1, "dram.rows": 256}),
}
SLOTS = 3


class Harness(wiring.Component):
    """The restore unit and its restore buffer."""

    def __init__(self, cfg, unit=ChipletRestore, index=1):
        proto = Protocol(cfg)
        self.unit = unit(cfg, group=1, index=index, node=proto.topology.chiplet(1, index), token_slots=SLOTS)
        self.buffer = Memory(shape=cfg.hardware.flit_bits, depth=self.unit.depth, init=[])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit, m.submodules.buffer = self.unit, self.buffer
        wiring.connect(m, self.unit.write, self.buffer.write_port())
        return m


def dram_of(cfg, rng) -> dict[int, int]:
    """Random words over the whole activation region: a read at a wrong address reads wrong data."""
    proto = Protocol(cfg)
    size = golden.activation_region_words(cfg)
    bits = random.Random(int(rng.integers(1 << 30)))
    return {a: bits.getrandbits(cfg.dram.word_bits) for a in range(proto.activation_base, proto.activation_base + size)}


def entry_flits(cfg, dram, index, record, expert) -> list[int]:
    """The flits of one saved vector as the DRAM holds them (words packed word 0 lowest)."""
    proto = Protocol(cfg)
    start = golden.activation_addr(cfg, index, record, expert)
    words = [dram[a] for a in range(start, start + golden.activation_entry_words(cfg))]
    per = proto.words_per_flit
    return [sum(w << (i * cfg.dram.word_bits) for i, w in enumerate(words[f:f + per]))
            for f in range(0, len(words), per)]


def run(cfg, *, seed=0, rounds=4, unit=ChipletRestore, cycles=6000):
    """Rounds of requests for every ring entry (random masks and records); returns the problems found."""
    rng = np.random.default_rng(seed)
    proto = Protocol(cfg)
    E, index = cfg.experts_per_chiplet, 1
    dut = Harness(cfg, unit, index)
    restore, hidden = dut.unit, golden.hidden_flits(cfg)
    dram = dram_of(cfg, rng)
    plan = [[(entry, [int(b) for b in rng.integers(0, 2, E)], int(rng.integers(proto.saved_tokens)))
             for entry in range(SLOTS)] for _ in range(rounds)]
    tag_of = {record: record % (1 << proto.tag_bits) for round_ in plan for _, _, record in round_}
    problems, reads = [], []
    want_reads = [(golden.activation_addr(cfg, index, record, e) + r * cfg.hardware.max_burst_flits
                   * proto.words_per_flit)
                  for round_ in plan for _, mask, record in round_ for e in range(E) if mask[e]
                  for r in range(-(-hidden // cfg.hardware.max_burst_flits))]

    async def bench(ctx):
        answers, flits = [], []          # (cycle ready, packet) in request order; the answer being sent
        for round_ in plan:
            expected = {(entry, e): entry_flits(cfg, dram, index, record, e)
                        for entry, mask, record in round_ for e in range(E) if mask[e]}
            queue, seen, sent = list(round_), set(), set()   # sent: entries whose request was taken
            for cycle in range(cycles):
                if queue:
                    entry, mask, record = queue[0]
                    ctx.set(restore.request.payload, {"entry": entry, "experts": sum(b << e for e, b in
                                                                                      enumerate(mask)),
                                                      "save_index": record, "tag": tag_of[record]})
                ctx.set(restore.request.valid, bool(queue))
                o_ready = bool(rng.random() < 0.7)
                ctx.set(restore.o.ready, o_ready)
                if not flits and answers and answers[0][0] <= cycle:
                    flits = proto.encode(answers.pop(0)[1])
                drive = bool(flits) and rng.random() < 0.8
                if drive:
                    ctx.set(restore.data.payload, {"data": flits[0].data, "first": flits[0].first,
                                                   "last": flits[0].last})
                ctx.set(restore.data.valid, drive)
                _, _, req_ready, o_valid, o_payload, d_ready, restored = await ctx.tick().sample(
                    restore.request.ready, restore.o.valid, restore.o.payload, restore.data.ready, restore.restored)
                accepted = queue.pop(0)[0] if queue and req_ready else None
                if drive and d_ready:
                    flits.pop(0)
                if o_valid and o_ready:
                    read = proto.decode([Flit(int(o_payload.data), bool(o_payload.first), bool(o_payload.last))])
                    reads.append(read)
                    words = [dram[a] for a in range(read.meta["addr"], read.meta["addr"] + read.meta["words"])]
                    per = proto.words_per_flit
                    payload = [sum(w << (i * cfg.dram.word_bits) for i, w in enumerate(words[f:f + per]))
                               for f in range(0, len(words), per)]
                    answers.append((cycle + int(rng.integers(3, 12)), Packet(
                        PacketKind.MEM_DATA, read.src, read.dst, read.tag,
                        {"addr": read.meta["addr"], "words": read.meta["words"]}, tuple(payload))))
                for (entry, e), want in expected.items():
                    if entry in sent and (entry, e) not in seen and restored >> (entry * E + e) & 1:
                        seen.add((entry, e))
                        start = (entry * E + e) * hidden
                        got = [ctx.get(dut.buffer.data[start + f]) for f in range(hidden)]
                        if got != want:
                            problems.append(f"entry {entry} expert {e}: restored {got}, saved {want}")
                if accepted is not None:   # its entry's bits count from the next cycle (the request clears them)
                    sent.add(accepted)
                if not queue and seen == set(expected) and not answers and not flits:
                    extra = {(n // E, n % E) for n in range(SLOTS * E) if restored >> n & 1} - seen
                    if extra:
                        problems.append(f"restored without a request: {sorted(extra)}")
                    break
            else:
                problems.append(f"watchdog: {sorted(set(expected) - seen)} not restored in {cycles} cycles")
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    node, memctrl = proto.topology.chiplet(1, index), proto.topology.memctrl(1)
    if [r.meta["addr"] for r in reads] != want_reads:
        problems.append(f"reads at {[r.meta['addr'] for r in reads]}, expected {want_reads}")
    want_tags = [tag_of[record] for round_ in plan for _, mask, record in round_ for e in range(E) if mask[e]
                 for r in range(-(-hidden // cfg.hardware.max_burst_flits))]
    if any(r.kind is not PacketKind.MEM_READ or r.dst != memctrl or r.src != node for r in reads):
        problems.append("every read must be a MEM_READ from the chiplet to its group's memory controller")
    if [r.tag for r in reads] != want_tags:
        problems.append(f"reads with tags {[r.tag for r in reads]}, expected the tokens' {want_tags}")
    return problems


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_restores_every_saved_vector(name):
    assert run(CONFIGS[name], seed=3) == []


class _OtherChipletsRecords(ChipletRestore):
    """Mutant: reads the records of the chiplet next door (the address ignores its own index)."""

    def __init__(self, cfg, group, index, node, token_slots):
        super().__init__(cfg, group, index, node, token_slots)
        self._index = index - 1


class _OneReadPerExpert(ChipletRestore):
    """Mutant: one read per expert, however long the vector (its later flits are never asked for)."""

    def _reads(self):
        return 1, min(golden.hidden_flits(self._cfg), self._cfg.hardware.max_burst_flits)


@pytest.mark.parametrize("mutant, expected", [(_OtherChipletsRecords, "restored"), (_OneReadPerExpert, "reads at")])
def test_mutants_are_caught(mutant, expected):
    problems = run(CONFIGS["tiny-burst1"], seed=3, unit=mutant)
    assert problems and any(expected in p for p in problems)
