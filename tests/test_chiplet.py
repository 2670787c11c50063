"""The expert chiplet in amaranth.sim: bit-exact partials, saves and LOADEDs against the golden model over several
configs with idle and backpressure; the interlocks; the engine's cycle formulas; bad parameters."""

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mozart.hw.chiplet import ExpertChiplet
from mozart.hw.expert_engine import ExpertEngine
from mozart.model.blocks import ChipletContract, EngineGeometry
from mozart.model import golden
from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.protocol import Packet, PacketKind, Protocol
from mozart.hw.pysim import run_pysim
from mozart.model.chiplet_program import ChipletProgram, Expected
from mozart.tb.scoreboard import Scoreboard

TINY = load_config("tiny")
CONFIGS = {
    "tiny": {},
    "lanes8": {"hardware.mac_lanes": 8},
    "lanes2-silu": {"hardware.mac_lanes": 2, "numerics.activation": "silu"},
    "saturating-gelu": {"numerics.acc_bits": 16, "numerics.partial_bits": 12, "numerics.hidden_shift": 3,
                        "numerics.output_shift": 2, "numerics.activation": "gelu"},
    "word32-burst3": {"dram.word_bits": 32, "hardware.max_burst_flits": 3, "dram.rows": 128},
    "3slots-4experts": {"hardware.sram_slots": 3, "moe.experts": 16, "hardware.mac_lanes": 8, "dram.rows": 128},
    "flit128-lanes16": {"numerics.gate_bits": 3, "numerics.partial_bits": 9, "hardware.flit_bits": 128,
                        "hardware.mac_lanes": 16, "moe.d_model": 16, "moe.d_ff": 32, "dram.rows": 128},
}


def check(cfg, program, chiplet=None, **kw):
    """Run the program, check every output against the golden expectations, return the run."""
    chiplet = chiplet or ExpertChiplet(cfg, program.group, program.index)
    res = run_pysim(chiplet, program, **kw)
    assert not res.timed_out, f"chiplet stalled: {len(res.outputs)} of {len(program.expected)} packets out"
    sb = Scoreboard("chiplet")
    for e in program.expected:
        sb.expect("out", e.packet, e.flow)
    for p in res.outputs:
        sb.observe("out", p)
    sb.check_drained()
    return res


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bit_exact_with_idle_and_backpressure(name):
    cfg = override(TINY, CONFIGS[name])
    prog = ChipletProgram(cfg, np.random.default_rng(5), group=1, index=1).random_program(
        25, extreme=0.2, reload_every=6)
    check(cfg, prog, idle=0.3, backpressure=0.3, seed=5)
    kinds = prog.expected_by_kind()
    assert kinds[PacketKind.COMBINE] == 25 and kinds[PacketKind.LOADED] >= cfg.hardware.sram_slots


def _experts_0_and_1_loaded(seed: int) -> ChipletProgram:
    """A program on tiny that first loads expert 0 into slot 0 and expert 1 into slot 1."""
    prog = ChipletProgram(TINY, np.random.default_rng(seed))
    prog.load(0, 0)
    prog.load(1, 1)
    return prog


def test_reload_waits_for_the_tokens_inside():
    # Tokens using slot 0, then at once a reload of slot 0 with new weights: the WEIGHT header must wait
    # until they are done, or their partials would use the new weights.
    prog = _experts_0_and_1_loaded(6)
    for _ in range(3):
        prog.dispatch(experts=[0], save=True)
    prog.load(0, 0)
    prog.dispatch(experts=[0, 1])
    check(TINY, prog, backpressure=0.5, seed=1)


def test_token_waits_for_its_expert_to_be_resident():
    # Dispatches between the packets of their expert's load: the token waits inside and uses the new weights.
    prog = _experts_0_and_1_loaded(7)
    prog.load(1, 1, dispatches_inside=2, save=True)
    prog.dispatch(experts=[1])
    check(TINY, prog, idle=0.2, seed=2)


def test_a_load_empties_the_older_copy_of_its_expert():
    # Expert 0 loaded again, into slot 1 (a local index names another expert in the next layer): the next token
    # must use the new copy, not the older one left in the lower slot 0.
    prog = _experts_0_and_1_loaded(15)
    prog.dispatch(experts=[0, 1])
    prog.load(1, 0)
    assert prog.resident() == {0: 1}
    prog.dispatch(experts=[0])
    check(TINY, prog, idle=0.2, seed=4)


def test_a_load_into_a_slot_left_from_an_earlier_layer_does_not_wait_for_the_new_copys_tokens():
    # Slot 0 keeps an older copy of expert 0 while a backward token inside needs the new copy in slot 1 and waits
    # for its restore, whose answer comes after the load of slot 0 on the one input link: the load must go (the
    # older copy is no longer expert 0's), or the input stalls for good (the wafer deadlock this rule removed).
    prog = _experts_0_and_1_loaded(16)
    prog.dispatch(experts=[0], save=True)
    prog.barrier()
    prog.load(1, 0)
    prog.backward()
    prog.load(0, 1)
    prog.dispatch(experts=[0, 1])
    check(TINY, prog, max_cycles=20_000)


def test_output_backed_up_loses_nothing():
    prog = ChipletProgram(TINY, np.random.default_rng(8)).random_program(12, reload_every=4)
    check(TINY, prog, backpressure=0.95, seed=3, max_cycles=100_000)


def test_foreign_packets_are_dropped():
    cfg = override(TINY, {"hardware.sram_slots": 3})    # slot field has 2 bits: slot 3 does not exist
    proto = Protocol(cfg)
    prog = ChipletProgram(cfg, np.random.default_rng(9))
    prog.load(0, 0)
    prog.inputs.append(Packet(PacketKind.MEM_DATA, prog.node, 9, 1, {"addr": 4, "words": 2}, (1, 2)))
    prog.inputs.append(Packet(PacketKind.WEIGHT, prog.node, 9, 1, {"slot": 3, "expert": 1, "offset": 0, "final": 1},
                              (7,) * 3))
    prog.inputs.append(Packet(PacketKind.LOAD, prog.node, 0, 1, {}, ()))
    prog.dispatch(experts=[0])
    assert proto.parse_header(proto.encode(prog.inputs[-2])[0].data)[0] is PacketKind.LOAD
    # a WEIGHT packet running past the end of slot 0 must not touch slot 1: reload slot 0, then use slot 1
    prog.load(1, 1)
    prog.inputs.append(Packet(PacketKind.WEIGHT, prog.node, 9, 3, {"slot": 0, "expert": 0,
                                                                  "offset": proto.image_words - 1, "final": 1},
                              (2**64 - 1,) * 4))
    prog.expected.append(Expected(Packet(PacketKind.LOADED, 0, prog.node, 3, {"slot": 0, "expert": 0}),
                                  ("LOADED", 0)))
    prog.load(0, 0)
    prog.dispatch(experts=[0, 1])
    check(cfg, prog)


@pytest.mark.parametrize("d_model,d_ff,lanes", [(8, 16, 4), (8, 16, 8), (16, 64, 8), (8, 8, 8)])
def test_steady_state_cycles_match_the_formula(d_model, d_ff, lanes):
    cfg = override(TINY, {"moe.d_model": d_model, "moe.d_ff": d_ff, "hardware.mac_lanes": lanes, "dram.rows": 256})
    chiplet = ChipletContract(cfg)
    geo = EngineGeometry(cfg)
    assert chiplet.cycles_per_expert == 2 * d_model * d_ff // lanes + max(0, 4 - d_ff // lanes)
    for n in (1, 2):
        prog = ChipletProgram(cfg, np.random.default_rng(n))
        prog.load(0, 0)
        prog.load(1, 1)
        for _ in range(8):
            prog.dispatch(experts=list(range(n)), save=False)
        res = check(cfg, prog, chiplet=ExpertChiplet(cfg))
        span = res.last_mac - res.first_mac + 1
        # cycle counts of the simulation, not wall time: the documented formula is exact
        assert span == 8 * chiplet.cycles_per_token(n)   # the W1->W2 stall lies inside each job
        assert res.mac_cycles == 8 * n * geo.issue_cycles
    if d_ff >= 2 * lanes:
        assert chiplet.mac_utilisation >= 0.9


def test_loading_the_other_slot_does_not_stall_compute():
    prog = ChipletProgram(TINY, np.random.default_rng(10))
    prog.load(0, 0)
    for i in range(16):
        if i == 4:
            prog.load(1, 1)   # streams into slot 1 while the buffered tokens compute on slot 0
        prog.dispatch(experts=[0], save=False)
    res = check(TINY, prog)
    assert res.mac_cycles == res.last_mac - res.first_mac + 1 == 16 * EngineGeometry(TINY).issue_cycles


def test_latency_of_one_token_on_an_idle_chiplet():
    chiplet = ChipletContract(TINY)
    for n in (0, 1, 2):
        prog = ChipletProgram(TINY, np.random.default_rng(n))
        prog.load(0, 0)
        prog.load(1, 1)
        start = sum(len(Protocol(TINY).encode(p)) for p in prog.inputs)   # weight packets never wait here
        prog.dispatch(experts=list(range(n)), save=False)
        res = check(TINY, prog, chiplet=ExpertChiplet(TINY))
        assert res.cycles - start == chiplet.latency(n)


def test_bad_parameters_are_rejected():
    with pytest.raises(ConfigError, match=r"hardware.mac_lanes must divide moe.d_model \(8\) .* not 3"):
        ExpertChiplet(override(TINY, {"hardware.mac_lanes": 3}))
    with pytest.raises(ConfigError, match=r"hardware.mac_lanes must divide hardware.flit_bits // numerics.weight_bits "
                                          r"\(8\) .* not 16"):
        ExpertChiplet(override(TINY, {"hardware.mac_lanes": 16, "moe.d_model": 16}))
    with pytest.raises(ConfigError, match="hardware.token_slots must be between 1 and 4096, not 0"):
        ExpertChiplet(override(TINY, {"hardware.token_slots": 0}))
    with pytest.raises(ConfigError, match=r"ExpertChiplet group must be in 0..1, not 2"):
        ExpertChiplet(TINY, group=2)
    with pytest.raises(ConfigError, match=r"ExpertChiplet index must be in 0..1, not -1"):
        ExpertChiplet(TINY, index=-1)
    with pytest.raises(ConfigError, match="dram.words must hold the weight images and saved activations"):
        ExpertChiplet(override(TINY, {"moe.d_ff": 64}))


# -- the engine alone ---------------------------------------------------------------------------------------
class EngineHarness(Elaboratable):
    """ExpertEngine reading two weight slots and two tokens from preloaded memories (a token at the start of its
    activation-buffer entry of ``EngineGeometry.entry_flits``)."""

    def __init__(self, cfg, images, tokens, engine_class=None):
        entry = EngineGeometry(cfg).entry_flits
        self.cfg, self.images = cfg, images
        self.tokens = [list(t) + [0] * (entry - len(t)) for t in tokens]
        proto = Protocol(cfg)
        self.engine = (engine_class or ExpertEngine)(cfg, token_slots=len(tokens),
                                                     weight_depth=len(images) * proto.image_flits,
                                                     act_depth=len(tokens) * entry)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.w = w = Memory(shape=self.cfg.hardware.flit_bits, depth=sum(len(i) for i in self.images),
                                    init=[f for i in self.images for f in i])
        m.submodules.a = a = Memory(shape=self.cfg.hardware.flit_bits, depth=sum(len(t) for t in self.tokens),
                                    init=[f for t in self.tokens for f in t])
        wr, ar = w.read_port(), a.read_port()
        m.d.comb += [wr.addr.eq(eng.w_addr), eng.w_data.eq(wr.data), ar.addr.eq(eng.x_addr), eng.x_data.eq(ar.data)]
        return m


def test_engine_jobs_partials_and_hidden_vectors():
    cfg = override(TINY, {"numerics.activation": "silu"})
    proto = Protocol(cfg)
    rng = np.random.default_rng(11)
    w1s = rng.integers(-128, 128, (2, 16, 8))
    w2s = rng.integers(-128, 128, (2, 8, 16))
    xs = rng.integers(-128, 128, (2, 8))
    gates = [[200, 31], [7, 255]]
    dut = EngineHarness(cfg, [golden.expert_image_flits(w1s[e], w2s[e], cfg) for e in range(2)],
                        [proto.pack_token(x) for x in xs])
    eng = dut.engine
    # token 0: experts 1 then 0 are *slots* 1 and 0 (expert e lives in slot e); token 1: no expert; token 0 again,
    # expert 1 only, saved. Jobs: (tok, slot/expert, first, last, none, save, tag)
    jobs = [(0, 0, 1, 0, 0, 1, 5), (0, 1, 0, 1, 0, 0, 5), (1, 0, 1, 1, 1, 0, 6), (0, 1, 1, 1, 0, 1, 7)]
    want_partials = [
        (5, golden.chiplet_partial(xs[0], (w1s, w2s), [1, 1], gates[0], cfg).tolist()),
        (6, [0] * 8),
        (7, golden.chiplet_partial(xs[0], (w1s, w2s), [0, 1], gates[1], cfg).tolist()),
    ]
    # saved: z (before the activation) with the token's record (save_index = 10 * tag here)
    want_hidden = [(5, 50, 0, golden.pre_activation(xs[0], w1s[0], cfg).tolist()),
                   (7, 70, 1, golden.pre_activation(xs[0], w1s[1], cfg).tolist())]
    got_partials, got_hidden = [], []
    stalls = np.random.default_rng(1).random(5000) < 0.5

    async def bench(ctx):
        queue = list(jobs)
        for cyc in range(5000):
            if queue:
                tok, e, first, last, none, save, tag = queue[0]
                gate = gates[0][e] if tag == 5 else gates[1][e]
                ctx.set(eng.job.payload, {"tok": tok, "wslot": e, "expert": e, "gate": gate, "first": first,
                                          "last": last, "none": none, "save": save, "tag": tag, "reduce": 1,
                                          "save_index": 10 * tag})
            ctx.set(eng.job.valid, bool(queue))
            ctx.set(eng.partial.ready, not stalls[cyc])
            ctx.set(eng.hidden.ready, not stalls[-cyc])
            _, _, jr, pv, pp, hv, hp = await ctx.tick().sample(eng.job.ready, eng.partial.valid, eng.partial.payload,
                                                               eng.hidden.valid, eng.hidden.payload)
            if queue and jr:
                queue.pop(0)
            if pv and not stalls[cyc]:
                got_partials.append((pp.tag, [int(v) for v in pp.data]))
            if hv and not stalls[-cyc]:
                got_hidden.append((hp.tag, hp.save_index, hp.expert, [int(v) for v in hp.data]))
            if not queue and len(got_partials) == 3 and len(got_hidden) == 2:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got_partials == want_partials
    assert got_hidden == want_hidden


@pytest.mark.parametrize("name", ["tiny", "word32-burst3"])
def test_update_without_gradients_writes_the_weights_back(name):
    """An UPDATE of a slot whose gradient is zero: the image goes back to the DRAM unchanged (MEM_WRITEs, the
    last acknowledged by the memory behind the chiplet), then UPDATED; tokens after it compute with the slot."""
    cfg = override(TINY, CONFIGS[name])
    prog = ChipletProgram(cfg, np.random.default_rng(8), group=1, index=1)
    for slot in range(cfg.hardware.sram_slots):
        prog.load(slot, slot)
    for _ in range(3):
        prog.dispatch(save=True)
    prog.barrier()
    for slot in range(cfg.hardware.sram_slots):
        prog.update(slot)
        prog.barrier()
    for _ in range(3):
        prog.dispatch()
    check(cfg, prog, idle=0.2, backpressure=0.3, seed=8)
    kinds = prog.expected_by_kind()
    assert kinds[PacketKind.UPDATED] == cfg.hardware.sram_slots and kinds[PacketKind.MEM_WRITE] > 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_step_is_bit_exact(name):
    """One training step on the chiplet: saving forward tokens, their backward (restores from the memory behind
    the chiplet, input-gradient partials, gate gradients), then an UPDATE of every slot (the updated images written
    back, UPDATED): every packet exactly as golden_backward says, with idle and backpressure."""
    cfg = override(TINY, CONFIGS[name])
    prog = ChipletProgram(cfg, np.random.default_rng(12), group=1, index=1).training_program(12, extreme=0.2)
    check(cfg, prog, idle=0.3, backpressure=0.3, seed=12)
    kinds = prog.expected_by_kind()
    assert kinds[PacketKind.GATE_GRAD] >= 6 and kinds[PacketKind.UPDATED] == min(cfg.hardware.sram_slots,
                                                                                   cfg.experts_per_chiplet)


def test_training_step_on_a_one_expert_chiplet():
    """wafer4x4: one local expert and two slots (a one-bit expert mask, four-flit tokens and hidden vectors)."""
    cfg = load_config("wafer4x4")
    prog = ChipletProgram(cfg, np.random.default_rng(13), group=2, index=3).training_program(16, extreme=0.2)
    check(cfg, prog, idle=0.3, backpressure=0.3, seed=13)
    assert prog.expected_by_kind()[PacketKind.GATE_GRAD] >= 4


def test_a_backward_right_after_its_forward_result_restores_what_was_saved():
    """Each token's backward follows as soon as its forward COMBINE is out (the root's rule), while its saves may
    still wait in the chiplet (a COMBINE goes first): its restore reads come after them (the output holds them
    while the engine has a save pending: tests/test_chiplet_output.py checks that hold alone, with a mutant)."""
    cfg = override(TINY, {"moe.d_ff": 32, "dram.rows": 256})
    prog = ChipletProgram(cfg, np.random.default_rng(14), group=1, index=1)
    for slot in range(cfg.hardware.sram_slots):
        prog.load(slot, slot)
    for _ in range(12):
        prog.dispatch(experts=[0, 1], save=True)
        record = prog.inputs[-1].meta["save_index"]
        prog.barrier(PacketKind.COMBINE)
        prog.backward(record)
    check(cfg, prog, backpressure=0.9, seed=14)


class _SavePendingOnlyWhileOffered(ExpertEngine):
    """Mutant: ``save_pending`` misses the cycle in which a complete vector is copied into the output register."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.save_pending.eq(self.hidden.valid)
        return m


def _save_pending_gaps(engine_class) -> int:
    """Save jobs back to back with a slow ``hidden`` consumer: the cycles in which a saved vector is complete but
    ``save_pending`` is low (its hand-over cycle)."""
    cfg = TINY
    rng = np.random.default_rng(15)
    w1s, w2s = rng.integers(-128, 128, (2, 16, 8)), rng.integers(-128, 128, (2, 8, 16))
    dut = EngineHarness(cfg, [golden.expert_image_flits(w1s[e], w2s[e], cfg) for e in range(2)],
                        [Protocol(cfg).pack_token(rng.integers(-128, 128, 8)) for _ in range(2)], engine_class)
    eng, gaps = dut.engine, []

    async def bench(ctx):
        jobs = [(t % 2, e, e == 0, e == 1) for t in range(6) for e in range(2)]
        previous = (0, 0)
        for cyc in range(3000):
            if jobs:
                tok, e, first, last = jobs[0]
                ctx.set(eng.job.payload, {"tok": tok, "wslot": e, "expert": e, "gate": 100, "first": first,
                                          "last": last, "save": 1, "tag": cyc % 256, "reduce": 1})
            ctx.set(eng.job.valid, bool(jobs))
            ctx.set(eng.partial.ready, 1)
            ctx.set(eng.hidden.ready, cyc % 40 == 0)   # a slow output: a save waits while the next completes
            _, _, jr, hv, pending = await ctx.tick().sample(eng.job.ready, eng.hidden.valid, eng.save_pending)
            if jobs and jr:
                jobs.pop(0)
            if hv and not previous[0] and not previous[1] and cyc:
                gaps.append(cyc)   # a vector appeared in the output register after a cycle with nothing pending
            previous = (hv, pending)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return len(gaps)


def test_engine_reports_a_save_pending_until_it_is_handed_over():
    """The output holds restore reads while ``save_pending``: it must be high from the cycle a saved vector is
    complete until the output has taken it, the copy into the output register included."""
    assert _save_pending_gaps(ExpertEngine) == 0
    assert _save_pending_gaps(_SavePendingOnlyWhileOffered) > 0
