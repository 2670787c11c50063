"""The backward engine alone in amaranth.sim: bit-exact input-gradient partials, gate gradients and gradient SRAM
against the golden backward over several configs with random idle and backpressure; its cycle formulas; Verilog
conversion; mutants that the checks catch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.back import verilog
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mozart.hw.chiplet_layouts import gradient_word_layout
from mozart.hw.expert_backward_engine import ExpertBackwardEngine
from mozart.hw.expressions import clamp, named, rshift_round
from mozart.hw.pysim import chance, stream_get, stream_put
from mozart.model import golden, golden_backward
from mozart.model.blocks.chiplet import BackwardGeometry
from mozart.model.config import load_config, override
from mozart.model.protocol import Protocol

TINY = load_config("tiny")
CONFIGS = {
    "tiny": {},
    "tiny-silu-padded-entries": {"numerics.activation": "silu"},
    "tiny-gelu-saturating": {"numerics.activation": "gelu", "numerics.acc_bits": 16, "numerics.partial_bits": 8,
                             "numerics.hidden_shift": 3, "numerics.output_shift": 2},
    "lanes8-3slots": {"hardware.mac_lanes": 8, "hardware.sram_slots": 3},
    "4experts-5slots": {"moe.experts": 16, "hardware.sram_slots": 5},
    "16x64-lanes16": {"moe.d_model": 16, "moe.d_ff": 64, "hardware.mac_lanes": 16, "hardware.flit_bits": 128,
                      "dram.rows": 1024},
}


@dataclass
class Token:
    entry: int                 #: activation-buffer entry (dY, x)
    experts: list[int]         #: selected local experts, ascending (empty: none)
    gates: list[int]
    restores: list[int]        #: restore-buffer entry of each selected expert's z
    tag: int
    reduce: int


@dataclass
class Run:
    """One seeded backward run: the memories' contents, the tokens and the jobs in order."""

    cfg: object
    w1: np.ndarray             #: [slots, d_ff, d_model]
    w2: np.ndarray             #: [slots, d_model, d_ff]
    dY: np.ndarray             #: [entries, d_model]
    x: np.ndarray
    z: np.ndarray              #: [restores, d_ff]
    slot_of: dict              #: local expert -> weight slot
    tokens: list[Token]
    entry_flits: int

    @property
    def jobs(self) -> list[dict]:
        """The engine's jobs in order: one per selected expert of each token, one ``none`` job for a token
        without local experts."""
        jobs = []
        for t in self.tokens:
            for n, (e, g, r) in enumerate(zip(t.experts, t.gates, t.restores)):
                jobs.append(dict(tok=t.entry, restore=r, wslot=self.slot_of[e], expert=e, gate=g, first=n == 0,
                                 last=n == len(t.experts) - 1, none=0, tag=t.tag, reduce=t.reduce))
            if not t.experts:
                jobs.append(dict(tok=t.entry, restore=0, wslot=0, expert=0, gate=0, first=1, last=1, none=1,
                                 tag=t.tag, reduce=t.reduce))
        return jobs


def _values(rng, shape, bits, extreme):
    """Random signed ``bits``-bit values, each at a rail with probability ``extreme``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = rng.integers(lo, hi + 1, shape)
    return np.where(rng.random(shape) < extreme, rng.choice([lo, hi], shape), v)


def random_run(cfg, seed: int, tokens: int = 32, extreme: float = 0.15, entry_pad: int = 0) -> Run:
    """``tokens`` tokens selecting 0..all resident local experts (expert ``e`` in slot ``(e + 1) % slots``, so a
    config with more slots than local experts leaves a slot untouched)."""
    rng = np.random.default_rng(seed)
    moe, num, slots = cfg.moe, cfg.numerics, cfg.hardware.sram_slots
    resident = list(range(min(cfg.experts_per_chiplet, slots)))
    slot_of = {e: (e + 1) % slots for e in resident}
    toks, restore = [], 0
    for t in range(tokens):
        some = int(rng.integers(1, len(resident) + 1))
        count = [len(resident), 0, some, some, 0, 0, some, some][t % 8]   # all, none, none after none
        experts = sorted(rng.choice(resident, count, replace=False).tolist())
        gates = [int(v) for v in np.where(rng.random(count) < extreme, (1 << num.gate_bits) - 1,
                                          rng.integers(0, 1 << num.gate_bits, count))]
        toks.append(Token(t, experts, gates, list(range(restore, restore + count)), t % (1 << cfg.hardware.tag_bits),
                          int(rng.integers(0, 2))))
        restore += count
    return Run(cfg, w1=_values(rng, (slots, moe.d_ff, moe.d_model), num.weight_bits, extreme),
               w2=_values(rng, (slots, moe.d_model, moe.d_ff), num.weight_bits, extreme),
               dY=_values(rng, (tokens, moe.d_model), num.act_bits, extreme),
               x=_values(rng, (tokens, moe.d_model), num.act_bits, extreme),
               z=_values(rng, (max(restore, 1), moe.d_ff), num.act_bits, extreme),
               slot_of=slot_of, tokens=toks,
               entry_flits=2 * Protocol(cfg).token_flits + entry_pad)


@dataclass
class Expected:
    partials: list           #: (tag, reduce, [d_model]) per token, in order
    gate_grads: list         #: (tag, mask, [dg per local expert]) per token with a local expert
    gradients: list          #: the gradient SRAM's words, each a list of L ints


def golden_expectations(run: Run) -> Expected:
    """What the golden model says the engine must produce for ``run``."""
    cfg, geo = run.cfg, BackwardGeometry(run.cfg)
    partials, gate_grads, per_slot = [], [], {}
    for t in run.tokens:
        dxs, dg = [], [0] * cfg.experts_per_chiplet
        for e, g, r in zip(t.experts, t.gates, t.restores):
            s = run.slot_of[e]
            b = golden_backward.expert_backward(run.x[t.entry], run.z[r], run.dY[t.entry], g, run.w1[s], run.w2[s],
                                                cfg)
            dxs.append(b.dx)
            dg[e] = int(b.dg)
            per_slot.setdefault(s, []).append((t.entry, r, g))
        width = cfg.moe.d_model
        partial = golden.local_sum(np.array(dxs).reshape(-1, width), np.ones(len(dxs), bool),
                                   cfg.numerics.partial_bits) if dxs else np.zeros(width, np.int64)
        partials.append((t.tag, t.reduce, partial.tolist()))
        if t.experts:
            gate_grads.append((t.tag, sum(1 << e for e in t.experts), dg))
    words = np.zeros((geo.grad_depth, geo.lanes), dtype=np.int64)
    for s, uses in per_slot.items():
        entries, restores, gates = (np.array(v) for v in zip(*uses))
        b = golden_backward.expert_backward(run.x[entries], run.z[restores], run.dY[entries], gates, run.w1[s],
                                            run.w2[s], cfg)
        dw1, dw2 = golden_backward.weight_gradients(run.x[entries], b, cfg)
        flat = np.concatenate([dw1.ravel(), dw2.ravel()]).reshape(-1, geo.lanes)
        words[s * geo.grad_words_per_slot:(s + 1) * geo.grad_words_per_slot] = flat
    return Expected(partials, gate_grads, words.tolist())


class BackwardHarness(Elaboratable):
    """An engine (``engine_class``, for mutants) on preloaded weight SRAM, activation and restore buffers and a
    zeroed gradient SRAM."""

    def __init__(self, run: Run, engine_class=ExpertBackwardEngine):
        cfg, geo = run.cfg, BackwardGeometry(run.cfg)
        proto = Protocol(cfg)
        self.weights = [f for s in range(len(run.w1)) for f in golden.expert_image_flits(run.w1[s], run.w2[s], cfg)]
        pad = [0] * (run.entry_flits - 2 * geo.token_flits)
        self.activations = [f for dY, x in zip(run.dY, run.x) for f in proto.pack_token(dY) + proto.pack_token(x)
                            + pad]
        self.restores = [f for z in run.z for f in golden._hidden_packed(z, cfg)]
        self.cfg, self.geo = cfg, geo
        self.engine = engine_class(cfg, token_slots=len(run.dY), restore_slots=len(run.z),
                                   entry_flits=run.entry_flits, weight_depth=len(self.weights),
                                   act_depth=len(self.activations), restore_depth=len(self.restores))
        self.gradients = Memory(shape=gradient_word_layout(cfg), depth=geo.grad_depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.gradients = self.gradients
        flit_bits = self.cfg.hardware.flit_bits
        for name, contents, addr, data in (("w", self.weights, eng.w_addr, eng.w_data),
                                           ("a", self.activations, eng.x_addr, eng.x_data),
                                           ("z", self.restores, eng.z_addr, eng.z_data)):
            m.submodules[name] = mem = Memory(shape=flit_bits, depth=len(contents), init=contents)
            port = mem.read_port()
            m.d.comb += [port.addr.eq(addr), data.eq(port.data)]
        read, write = self.gradients.read_port(), self.gradients.write_port()
        m.d.comb += [read.addr.eq(eng.g_addr), eng.g_data.eq(read.data), write.addr.eq(eng.g_wr_addr),
                     write.data.eq(eng.g_wr_data), write.en.eq(eng.g_wr_en)]
        return m


@dataclass
class Observed:
    partials: list = field(default_factory=list)
    gate_grads: list = field(default_factory=list)
    gradients: list = field(default_factory=list)
    accepts: list = field(default_factory=list)         #: cycle of each job's accept
    partial_valid: list = field(default_factory=list)   #: cycle at which each partial first showed valid
    mac_cycles: list = field(default_factory=list)      #: cycles with mac_active
    done_experts: int = 0
    done_tokens: int = 0


def simulate(run: Run, *, idle=0.0, backpressure=0.0, seed=0, engine_class=ExpertBackwardEngine,
             max_cycles=200_000) -> Observed:
    """Drive ``run``'s jobs (seeded random idle), take both outputs (seeded random backpressure), read the
    gradient SRAM back at the end."""
    dut = BackwardHarness(run, engine_class)
    eng, obs = dut.engine, Observed()
    rng = np.random.default_rng(seed)
    want_partials, want_gates = len(run.tokens), sum(1 for t in run.tokens if t.experts)
    stall = chance(rng, backpressure)

    async def jobs(ctx):
        for job in run.jobs:
            await stream_put(ctx, eng.job, job, idle=chance(rng, idle), limit=max_cycles)
        for _ in range(max_cycles):
            if len(obs.partials) == want_partials and len(obs.gate_grads) == want_gates:
                break
            await ctx.tick()
        else:
            raise AssertionError(f"engine stalled: {len(obs.partials)} partials, {len(obs.gate_grads)} gate grads")
        await ctx.tick().repeat(4)
        obs.gradients = [[int(v) for v in ctx.get(dut.gradients.data[i])] for i in range(dut.geo.grad_depth)]

    async def partials(ctx):
        while True:
            p = await stream_get(ctx, eng.partial, stall=stall)
            obs.partials.append((int(p.tag), int(p.reduce), [int(v) for v in p.data]))

    async def gate_grads(ctx):
        while True:
            g = await stream_get(ctx, eng.gate_grads, stall=stall)
            obs.gate_grads.append((int(g.tag), int(g.experts), [int(v) for v in g.dg]))

    async def monitor(ctx):
        cycle, was_valid = 0, False
        async for _, _, jv, jr, pv, mac, de, dt in ctx.tick().sample(
                eng.job.valid, eng.job.ready, eng.partial.valid, eng.mac_active, eng.done_expert, eng.done_token):
            if jv and jr:
                obs.accepts.append(cycle)
            if pv and not was_valid:
                obs.partial_valid.append(cycle)
            if mac:
                obs.mac_cycles.append(cycle)
            obs.done_experts += de
            obs.done_tokens += dt
            was_valid = pv
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(jobs)
    for bench in (partials, gate_grads, monitor):
        sim.add_testbench(bench, background=True)
    sim.run()
    return obs


def mismatches(run: Run, obs: Observed) -> list[str]:
    """What differs from the golden model (empty: bit-exact)."""
    want = golden_expectations(run)
    out = []
    for name in ("partials", "gate_grads", "gradients"):
        got, exp = getattr(obs, name), getattr(want, name)
        if got != exp:
            bad = next((i for i, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
            out.append(f"{name}[{bad}] of {len(exp)}: got {got[bad] if bad < len(got) else None}, "
                       f"want {exp[bad] if bad < len(exp) else None}")
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bit_exact_with_idle_and_backpressure(name):
    cfg = override(TINY, CONFIGS[name])
    run = random_run(cfg, seed=len(name), entry_pad=1 if "padded" in name else 0)
    assert sum(len(t.experts) for t in run.tokens) >= 30 and any(not t.experts for t in run.tokens)
    assert any(len(t.experts) == len(run.slot_of) for t in run.tokens) and len(set(run.slot_of.values())) >= 2
    obs = simulate(run, idle=0.3, backpressure=0.4, seed=3)
    assert mismatches(run, obs) == []
    jobs = sum(len(t.experts) for t in run.tokens)
    assert obs.done_experts == jobs and obs.done_tokens == len(run.tokens)
    assert len(obs.mac_cycles) == jobs * BackwardGeometry(cfg).issue_cycles
    untouched = set(range(cfg.hardware.sram_slots)) - set(run.slot_of.values())
    per_slot = BackwardGeometry(cfg).grad_words_per_slot
    for s in untouched:   # the golden expectation has them zero; the check above compared them
        assert not any(any(w) for w in obs.gradients[s * per_slot:(s + 1) * per_slot])


def test_saturation_is_exercised():
    """The saturating config's run reaches the rails the checks above compare (else they prove less)."""
    cfg = override(TINY, CONFIGS["tiny-gelu-saturating"])
    run = random_run(cfg, seed=len("tiny-gelu-saturating"))
    want = golden_expectations(run)
    pb, acc = cfg.numerics.partial_bits, cfg.numerics.acc_bits
    assert any(abs(v) == (1 << (pb - 1)) - (v > 0) for _, _, p in want.partials for v in p)
    assert any(abs(v) == (1 << (acc - 1)) - (v > 0) for _, _, dg in want.gate_grads for v in dg)


@pytest.mark.parametrize("d_model,d_ff,lanes", [(8, 16, 4), (8, 16, 8), (8, 8, 8), (16, 64, 8)])
def test_steady_state_cycles_match_the_formula(d_model, d_ff, lanes):
    cfg = override(TINY, {"moe.d_model": d_model, "moe.d_ff": d_ff, "hardware.mac_lanes": lanes})
    geo = BackwardGeometry(cfg)
    assert geo.cycles_per_job == 4 * d_model * d_ff // lanes and geo.utilisation == 1.0
    run = random_run(cfg, seed=1, tokens=8)
    obs = simulate(run)
    assert mismatches(run, obs) == []
    jobs = sum(len(t.experts) for t in run.tokens)
    # cycle counts of the simulation, not wall time: back to back, every job costs the formula exactly
    assert len(obs.mac_cycles) == jobs * geo.issue_cycles
    # the span runs from the first MAC of the first token to the last of the last (both have local experts)
    counts = [len(t.experts) for t in run.tokens]
    assert counts[0] and counts[-1]
    span = obs.mac_cycles[-1] - obs.mac_cycles[0] + 1
    assert span == sum(geo.cycles_per_token(n, after_none=i > 0 and not counts[i - 1]) for i, n in enumerate(counts))


def test_back_to_back_jobs_have_no_bubble():
    for overrides in ({}, {"hardware.mac_lanes": 8}, {"moe.d_ff": 8, "hardware.mac_lanes": 8}):
        cfg = override(TINY, overrides)
        geo = BackwardGeometry(cfg)
        run = random_run(cfg, seed=2, tokens=6)
        run.tokens = [t for t in run.tokens if t.experts]
        obs = simulate(run)
        assert mismatches(run, obs) == []
        span = obs.mac_cycles[-1] - obs.mac_cycles[0] + 1
        assert span == len(obs.mac_cycles) == len(run.jobs) * geo.cycles_per_job


def test_latency_of_one_token_on_an_idle_engine():
    geo = BackwardGeometry(TINY)
    for count in (0, 1, 2):
        run = random_run(TINY, seed=3, tokens=4)
        run.tokens = [Token(0, list(range(count)), [255, 7][:count], list(range(count)), 9, 1)]
        obs = simulate(run)
        assert mismatches(run, obs) == []
        assert obs.partial_valid[0] - obs.accepts[0] == geo.latency(count)


def test_backed_up_outputs_lose_nothing():
    run = random_run(TINY, seed=4, tokens=12, extreme=0.0)
    obs = simulate(run, backpressure=0.97, seed=5, max_cycles=400_000)
    assert mismatches(run, obs) == []


def test_bad_entry_stride_is_rejected():
    with pytest.raises(ValueError, match=r"entry_flits must hold dY and x \(at least 2\), not 1"):
        ExpertBackwardEngine(TINY, token_slots=2, restore_slots=2, entry_flits=1, weight_depth=4, act_depth=2,
                             restore_depth=4)


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_converts_to_verilog(preset):
    cfg = load_config(preset)
    geo = BackwardGeometry(cfg)
    engine = ExpertBackwardEngine(cfg, token_slots=cfg.hardware.token_slots, restore_slots=8,
                                  entry_flits=2 * geo.token_flits,
                                  weight_depth=cfg.hardware.sram_slots * geo.image_flits,
                                  act_depth=cfg.hardware.token_slots * 2 * geo.token_flits,
                                  restore_depth=8 * geo.hidden_flits)
    text = verilog.convert(engine, name="expert_backward_engine")
    assert "module expert_backward_engine" in text and "g_wr_en" in text


# -- mutants: each breaks the engine in one way the checks above must see -------------------------------------
class TruncatingHiddenGradient(ExpertBackwardEngine):
    """``dh`` rounded by truncation instead of half away from zero."""

    def _hidden_gradient(self, m, gate, u_saturated):
        num = self._cfg.numerics
        return named(m, clamp(m, (gate * u_saturated) >> (num.gate_bits + num.output_shift), num.act_bits, "dh"),
                     "dh_truncated")


class GateBeforeW2(ExpertBackwardEngine):
    """The old golden: ``u = W2^T dy`` with the gated ``dy``, then ``dh = sat_a(rshift_round(u, output_shift))``."""

    def _w2_scalars(self, m, gate, dY):
        _, dy = super()._w2_scalars(m, gate, dY)
        return dy, dy

    def _hidden_gradient(self, m, gate, u_saturated):
        num = self._cfg.numerics
        return named(m, clamp(m, rshift_round(m, u_saturated, num.output_shift, "dh_old"), num.act_bits, "dh_old"),
                     "dh_old")


class SkippedGradientChunk(ExpertBackwardEngine):
    """The read-modify-write of every chunk 1 is skipped."""

    def _gradient_write(self, m, write, s2, products, old):
        super()._gradient_write(m, write & (s2.chunk != 1), s2, products, old)


class DroppedHold(ExpertBackwardEngine):
    """An output stream drops its payload after one cycle, taken or not."""

    @staticmethod
    def _release(m, output, taken):
        with m.If(output.valid):
            m.d.sync += output.valid.eq(0)
            m.d.comb += taken.eq(output.ready)


@pytest.mark.parametrize("mutant,broken", [(TruncatingHiddenGradient, "partials"), (GateBeforeW2, "partials"),
                                           (SkippedGradientChunk, "gradients"), (DroppedHold, "partials")])
def test_mutants_are_caught(mutant, broken):
    run = random_run(TINY, seed=6, tokens=10)
    assert mismatches(run, simulate(run, backpressure=0.5, seed=7)) == []
    if mutant is DroppedHold:   # the lost partials never arrive: the run stalls or comes up short
        with pytest.raises(AssertionError, match="stalled|did not take"):
            simulate(run, backpressure=0.5, seed=7, engine_class=mutant, max_cycles=20_000)
        return
    found = mismatches(run, simulate(run, backpressure=0.5, seed=7, engine_class=mutant))
    assert any(f.startswith(broken) for f in found), found
