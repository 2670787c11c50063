"""The chiplet's weight-update unit alone (amaranth.sim, seeded): every MEM_WRITE and UPDATED bit-exact against
golden_backward.update_weights, with random backpressure and ack delays over several configs; the SRAMs after;
the update's cycles against the contract; a mutant for each check; Verilog conversion."""

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth import Array, Elaboratable, Module, Signal
from amaranth.back import verilog
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from mozart.hw import chiplet_weight_update
from mozart.hw.chiplet_weight_update import ChipletWeightUpdate
from mozart.model import golden, golden_backward
from mozart.model.blocks import ChipletContract
from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol

TINY = load_config("tiny")
THREE_SLOTS = {"hardware.sram_slots": 3}
CONFIGS = {
    "tiny": (TINY, {}),
    "lanes8": (TINY, {"hardware.mac_lanes": 8}),
    "wafer4x4": (load_config("wafer4x4"), {}),
    # 16 image flits in packets of 3: six MEM_WRITEs, the last one short, two DRAM words a flit
    "flit128-burst3": (TINY, {"hardware.flit_bits": 128, "hardware.max_burst_flits": 3}),
    # 10 weights a flit: W1's last flit holds 8 (padding), a flit is 5 gradient words
    "weight6-lanes2": (TINY, {"numerics.weight_bits": 6, "hardware.mac_lanes": 2}),
    # W1's update shift 11, W2's 9
    "shifts-differ": (TINY, {"numerics.output_shift": 5}),
}


def config(name):
    base, changes = CONFIGS[name]
    return override(base, {**THREE_SLOTS, **changes})


def _rails_or(rng, shape, bits, rails):
    """Uniform signed ``bits``-bit values, a fraction ``rails`` of them at the two rails."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = rng.integers(lo, hi + 1, size=shape)
    at_rail = rng.random(shape) < rails
    return np.where(at_rail, rng.choice([lo, hi], size=shape), v)


def _gradients(rng, shape, bits, shift):
    """Gradients over the accumulators' full range (saturating updates), small ones (non-saturating) and exact
    halves of the update's step (the rounding's ties)."""
    full = _rails_or(rng, shape, bits, 0.05)
    small = rng.integers(-(1 << (shift + 4)), 1 << (shift + 4), size=shape)
    ties = rng.integers(-40, 40, size=shape) * (1 << shift) + np.where(rng.random(shape) < 0.5, 1, -1) * (
        1 << (shift - 1))
    pick = rng.integers(0, 3, size=shape)
    return np.choose(pick, [full, small, ties])


@dataclass
class Slots:
    """Random weights, gradients and expert ids of every weight slot, and the SRAM images they make."""

    cfg: object
    rng: np.random.Generator
    w1: list = field(default_factory=list)
    w2: list = field(default_factory=list)
    dw1: list = field(default_factory=list)
    dw2: list = field(default_factory=list)
    experts: list = field(default_factory=list)

    def __post_init__(self):
        moe, num, rng = self.cfg.moe, self.cfg.numerics, self.rng
        bits = golden_backward.step_grad_bits(self.cfg)
        shifts = [golden_backward.update_shift(self.cfg, w) for w in ("w1", "w2")]
        for _ in range(self.cfg.hardware.sram_slots):
            self.w1.append(_rails_or(rng, (moe.d_ff, moe.d_model), num.weight_bits, 0.1))
            self.w2.append(_rails_or(rng, (moe.d_model, moe.d_ff), num.weight_bits, 0.1))
            self.dw1.append(_gradients(rng, (moe.d_ff, moe.d_model), bits, shifts[0]))
            self.dw2.append(_gradients(rng, (moe.d_model, moe.d_ff), bits, shifts[1]))
            self.experts.append(int(rng.integers(self.cfg.experts_per_chiplet)))

    def weight_flits(self) -> list[int]:
        return [f for s in range(len(self.w1)) for f in golden.expert_image_flits(self.w1[s], self.w2[s], self.cfg)]

    def gradient_words(self) -> list[int]:
        lanes, bits = self.cfg.hardware.mac_lanes, golden_backward.step_grad_bits(self.cfg)
        words = []
        for s in range(len(self.w1)):
            elements = np.concatenate([self.dw1[s].ravel(), self.dw2[s].ravel()])
            for start in range(0, len(elements), lanes):
                words.append(sum((int(v) & ((1 << bits) - 1)) << (lane * bits)
                                 for lane, v in enumerate(elements[start:start + lanes])))
        return words

    def updated_flits(self, s) -> list[int]:
        cfg = self.cfg
        w1 = golden_backward.update_weights(self.w1[s], self.dw1[s], golden_backward.update_shift(cfg, "w1"), cfg)
        w2 = golden_backward.update_weights(self.w2[s], self.dw2[s], golden_backward.update_shift(cfg, "w2"), cfg)
        return golden.expert_image_flits(w1, w2, cfg)


class Harness(Elaboratable):
    """The unit with its two SRAMs (filled from ``slots``) and the slot table's answer."""

    def __init__(self, unit, slots: Slots):
        self.unit, self.slots = unit, slots
        cfg = slots.cfg
        self.weights = Memory(shape=cfg.hardware.flit_bits, depth=len(slots.weight_flits()),
                              init=slots.weight_flits())
        grad_words = slots.gradient_words()
        self.gradients = Memory(shape=len(unit.g_data), depth=len(grad_words), init=grad_words)
        self.ack_valid = Signal()   # the testbench's MEM_ACK

    def elaborate(self, platform):
        m = Module()
        unit = self.unit
        m.submodules.unit, m.submodules.weights, m.submodules.gradients = unit, self.weights, self.gradients
        ports = []
        for memory, name in ((self.weights, "w"), (self.gradients, "g")):
            read, write = memory.read_port(), memory.write_port()
            ports += [read.addr.eq(getattr(unit, f"{name}_addr")), getattr(unit, f"{name}_data").eq(read.data),
                      write.addr.eq(getattr(unit, f"{name}_wr_addr")), write.data.eq(getattr(unit, f"{name}_wr_data")),
                      write.en.eq(getattr(unit, f"{name}_wr_en"))]
        m.d.comb += ports
        m.d.comb += unit.ack.valid.eq(self.ack_valid)
        m.d.comb += unit.slot_expert.expert.eq(Array(self.slots.experts)[unit.slot_expert.slot])
        return m


@dataclass
class Run:
    packets: list      # (cycle of the header, cycle of the last flit, Packet)
    accepted: list     # cycle each command was taken
    acks: list         # cycle each ack was taken
    bubbles: int       # cycles with o idle inside a packet
    weights: list
    gradients: list


def run(unit, slots, commands, *, seed, backpressure=0.0, max_ack_delay=0, max_cycles=20_000, harness_class=Harness):
    """Drive ``commands`` ((slot, addr, tag) each) with random backpressure on ``o`` and a random delay before
    each ack (the MEM_ACK of a MEM_WRITE with ack=1); return what happened and both SRAMs afterwards."""
    harness, rng, proto = harness_class(unit, slots), np.random.default_rng(seed), Protocol(slots.cfg)
    out = Run([], [], [], 0, [], [])

    async def bench(ctx):
        flits, head_cycle, ack_at = [], 0, None
        for cycle in range(max_cycles):
            pending = len(out.accepted) < len(commands)
            if pending:
                slot, addr, tag = commands[len(out.accepted)]
                ctx.set(unit.command.payload, {"slot": slot, "addr": addr, "tag": tag})
            ctx.set(unit.command.valid, pending)
            ready = bool(rng.random() >= backpressure)
            ctx.set(unit.o.ready, ready)
            ctx.set(harness.ack_valid, ack_at is not None and cycle >= ack_at)
            *_, command_ready, valid, payload, ack_ready = await ctx.tick().sample(
                unit.command.ready, unit.o.valid, unit.o.payload, unit.ack.ready)
            if pending and command_ready:
                out.accepted.append(cycle)
            if ack_at is not None and cycle >= ack_at and ack_ready:
                out.acks.append(cycle)
                ack_at = None
            out.bubbles += bool(flits) and not valid
            if not (valid and ready):
                continue
            flits.append(Flit(int(payload.data), bool(payload.first), bool(payload.last)))
            head_cycle = cycle if payload.first else head_cycle
            if payload.last:
                packet = proto.decode(flits)
                out.packets.append((head_cycle, cycle, packet))
                flits = []
                if packet.kind == PacketKind.MEM_WRITE and packet.meta["ack"]:
                    ack_at = cycle + 1 + int(rng.integers(0, max_ack_delay + 1))
                if sum(p.kind == PacketKind.UPDATED for _, _, p in out.packets) == len(commands):
                    break
        out.weights = [ctx.get(harness.weights.data[i]) for i in range(harness.weights.depth)]
        out.gradients = [ctx.get(harness.gradients.data[i]) for i in range(harness.gradients.depth)]

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def expected_packets(unit_node, slots, commands) -> list[Packet]:
    """Each command's MEM_WRITEs (the golden updated image in bursts) and its UPDATED, in order."""
    cfg, proto = slots.cfg, Protocol(slots.cfg)
    burst, topology = cfg.hardware.max_burst_flits, proto.topology
    packets = []
    for slot, addr, tag in commands:
        image = slots.updated_flits(slot)
        for start in range(0, len(image), burst):
            payload = image[start:start + burst]
            meta = {"addr": addr + start * proto.words_per_flit, "words": len(payload) * proto.words_per_flit,
                    "ack": int(start + burst >= len(image))}
            packets.append(Packet(PacketKind.MEM_WRITE, topology.memctrl(1), unit_node, tag, meta, payload))
        packets.append(Packet(PacketKind.UPDATED, topology.root, unit_node, tag,
                              {"slot": slot, "expert": slots.experts[slot]}))
    return packets


def check(result, slots, commands, node):
    """Every check of the unit's contract on one run."""
    got = [p for _, _, p in result.packets]
    want = expected_packets(node, slots, commands)
    assert len(got) == len(want), f"{len(got)} packets out, {len(want)} expected"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"packet {i}: {g.kind.name} {g.meta} differs from the expected {w.kind.name} {w.meta}"
    updated = [(head, p) for head, _, p in result.packets if p.kind == PacketKind.UPDATED]
    for i, (head, _) in enumerate(updated):
        ack = result.acks[i] if i < len(result.acks) else None
        assert ack is not None and head > ack, f"UPDATED {i} sent in cycle {head}, before its ack (taken: {ack})"
    assert result.bubbles == 0, "o went idle inside a packet"
    image, words = Protocol(slots.cfg).image_flits, len(result.gradients) // slots.cfg.hardware.sram_slots
    before_w, before_g = slots.weight_flits(), slots.gradient_words()
    done = {slot for slot, _, _ in commands}
    for s in range(slots.cfg.hardware.sram_slots):
        w_range, g_range = slice(s * image, (s + 1) * image), slice(s * words, (s + 1) * words)
        want_w = slots.updated_flits(s) if s in done else before_w[w_range]
        want_g = [0] * words if s in done else before_g[g_range]
        assert result.weights[w_range] == want_w, f"weight SRAM slot {s} wrong after the updates"
        assert result.gradients[g_range] == want_g, f"gradient SRAM slot {s} wrong after the updates"


def scenario(cfg, seed, updates=2):
    """Random slots, and UPDATEs for ``updates`` distinct slots in random order (group 1, chiplet 1)."""
    rng = np.random.default_rng(seed)
    slots = Slots(cfg, rng)
    proto = Protocol(cfg)
    chosen = rng.permutation(cfg.hardware.sram_slots)[:updates]
    commands = [(int(s), proto.expert_image_base(int(rng.integers(cfg.experts_per_group)),
                                                 int(rng.integers(cfg.moe.layers))),
                 int(rng.integers(1 << cfg.hardware.tag_bits))) for s in chosen]
    unit_node = proto.topology.chiplet(1, 1)
    return slots, commands, unit_node


def run_and_check(cfg, seed, unit_class=ChipletWeightUpdate, **kw):
    slots, commands, node = scenario(cfg, seed)
    result = run(unit_class(cfg, 1, 1, node), slots, commands, seed=seed, **kw)
    check(result, slots, commands, node)
    return result


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bit_exact_with_backpressure_and_ack_delays(name):
    run_and_check(config(name), seed=3, backpressure=0.4, max_ack_delay=12)


def test_a_backed_up_link_only_stalls():
    run_and_check(config("lanes8"), seed=4, backpressure=0.9, max_ack_delay=3, max_cycles=60_000)


def measure_update_cycles(cfg):
    """Cycles from each command taken to its last MEM_WRITE flit (link always ready, ack at once), and the run."""
    slots, commands, node = scenario(cfg, 5)
    result = run(ChipletWeightUpdate(cfg, 1, 1, node), slots, commands, seed=5)
    last_write = [last for _, last, p in result.packets if p.kind == PacketKind.MEM_WRITE and p.meta["ack"]]
    return [last - accepted for accepted, last in zip(result.accepted, last_write)], result


@pytest.mark.parametrize("burst", [1, 64])
@pytest.mark.parametrize("changes", [{"hardware.mac_lanes": 8}, {"numerics.weight_bits": 6, "hardware.mac_lanes": 2}],
                         ids=["link-bound", "reading-bound"])
def test_update_cycles_equal_the_contract_for_one_flit_and_whole_image_bursts(burst, changes):
    cfg = override(TINY, {**THREE_SLOTS, **changes, "hardware.max_burst_flits": burst})
    assert measure_update_cycles(cfg)[0] == [ChipletContract(cfg).update_cycles] * 2


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_update_cycles_equal_the_contract(name):
    cfg = config(name)
    cycles, result = measure_update_cycles(cfg)
    assert cycles == [ChipletContract(cfg, 1, 1).update_cycles] * 2
    updated = [head for head, _, p in result.packets if p.kind == PacketKind.UPDATED]
    assert [u - a for u, a in zip(updated, result.acks)] == [1, 1]   # ack taken, UPDATED in the next cycle
    assert result.accepted[1] == updated[0] + 1   # the next command in the cycle after UPDATED


def test_the_cycles_check_catches_a_pipeline_one_cycle_off(monkeypatch):
    monkeypatch.setattr(ChipletContract, "UPDATE_PIPELINE", ChipletContract.UPDATE_PIPELINE + 1)
    with pytest.raises(AssertionError):
        test_update_cycles_equal_the_contract("tiny")


def test_reading_bound_update_cycles_are_words_plus_pipeline_plus_last_packet():
    # tiny: 8 weights a flit, 4 lanes (2 words a flit): the link keeps up, reading is the bottleneck
    cfg = config("tiny")
    words = 2 * cfg.moe.d_model * cfg.moe.d_ff // cfg.hardware.mac_lanes
    last_packet = Protocol(cfg).image_flits % cfg.hardware.max_burst_flits or cfg.hardware.max_burst_flits
    assert ChipletContract(cfg).update_cycles == words + 2 + last_packet == 74


# -- each check catches its mutant --------------------------------------------------------------------------------

def test_the_payload_check_catches_truncation(monkeypatch):
    monkeypatch.setattr(chiplet_weight_update, "rshift_round", lambda m, v, shift, name: v >> shift)
    with pytest.raises(AssertionError, match="packet 0: MEM_WRITE .* differs"):
        run_and_check(config("tiny"), seed=3)


def test_the_payload_check_catches_the_w1_shift_used_for_w2():
    class SameShift(ChipletWeightUpdate):
        def __init__(self, *args):
            super().__init__(*args)
            self.shifts = (self.shifts[0], self.shifts[0])

    cfg = config("shifts-differ")
    run_and_check(cfg, seed=3)
    with pytest.raises(AssertionError, match="MEM_WRITE .* differs"):
        run_and_check(cfg, seed=3, unit_class=SameShift)


def test_the_order_check_catches_updated_before_the_ack():
    class NoWait(Harness):   # the unit's ack input tied high: it does not wait for the MEM_ACK
        def elaborate(self, platform):
            m = super().elaborate(platform)
            m.d.comb += self.unit.ack.valid.eq(1)
            return m

    cfg = config("tiny")
    slots, commands, node = scenario(cfg, 6)
    result = run(ChipletWeightUpdate(cfg, 1, 1, node), slots, commands, seed=6, max_ack_delay=5,
                 harness_class=NoWait)
    with pytest.raises(AssertionError, match="before its ack"):
        check(result, slots, commands, node)


def test_the_gradient_check_catches_a_word_not_zeroed():
    class KeepsOne(ChipletWeightUpdate):
        def _updater(self, m, stage, flits):
            super()._updater(m, stage, flits)
            m.d.comb += self.g_wr_en.eq(stage.valid & (stage.word % self.slot_words != 5))

    with pytest.raises(AssertionError, match="gradient SRAM slot .* wrong"):
        run_and_check(config("tiny"), seed=3, unit_class=KeepsOne)


def test_the_framing_check_catches_a_packet_started_before_its_flits_are_ready():
    class Hasty(ChipletWeightUpdate):   # starts a packet as soon as one flit is ready: idle cycles inside it
        def _packet_ready(self, flits, length):
            return flits.r_rdy

    with pytest.raises(AssertionError, match="o went idle inside a packet"):
        run_and_check(config("tiny"), seed=3, unit_class=Hasty)


def test_bad_parameters_are_rejected_before_a_component_exists():
    with pytest.raises(ConfigError, match=r"ExpertChiplet group must be in 0..1, not 2"):
        ChipletWeightUpdate(TINY, 2, 0, 1)
    with pytest.raises(ConfigError, match=r"hardware.mac_lanes must divide moe.d_model \(8\) .* not 3"):
        ChipletWeightUpdate(override(TINY, {"hardware.mac_lanes": 3}), 0, 0, 1)


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_converts_to_verilog(preset):
    cfg = load_config(preset)
    text = verilog.convert(ChipletWeightUpdate(cfg, 0, 0, 1), name="chiplet_weight_update")
    assert "module chiplet_weight_update" in text
