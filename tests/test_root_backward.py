"""The root's training commands in amaranth.sim, with stub switches (``test_root.Harness``): backward TOKENs and
their DISPATCHes (against :meth:`Protocol.backward_dispatch_to_group`), the backward credit, GATE_GRADs forwarded
on ``grads_out``, and UPDATE/UPDATED. Each rule comes with a mutant it catches."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Const, Mux, Signal
from test_root import Harness, _table
from test_root_issue_window import _AnySlotSetsResident

from mozart.hw import root as root_module
from mozart.hw.pysim import chance, flit_of, stream_get
from mozart.hw.root_interfaces import loaded_layout
from mozart.hw.root_issue_window import RootIssueWindow
from mozart.model import golden
from mozart.model.config import load_config
from mozart.model.host import HostCommand, HostOp
from mozart.model.protocol import Packet, PacketKind, Protocol


class TrainingHarness(Harness):
    """:class:`test_root.Harness` that also records ``grads_out`` (with a stall coin when ``grads_stall``)."""

    def __init__(self, cfg, grads_stall: float = 0.0, seed: int = 0):
        super().__init__(cfg)
        self.grads = []
        stall = chance(np.random.default_rng(seed), grads_stall)

        async def collect(ctx):
            while True:
                self.grads.append(flit_of(await stream_get(ctx, self.dut.grads_out, stall=stall)))
        self.sim.add_testbench(collect, background=True)

    async def write_table(self, ctx, table):
        for e, (g, c, local) in table.items():
            await self.send(ctx, self.dut.host_in, self.host.encode(
                HostCommand(HostOp.TABLE, {"expert": e, "group": g, "chiplet": c, "local": local})))

    async def idle(self, ctx, cycles):
        for _ in range(cycles):
            await ctx.tick()

    def gate_grad(self, table, expert, tag, value):
        """The GATE_GRAD the chiplet of ``expert`` sends for a backward replica selecting it."""
        g, c, local = table[expert]
        per_chiplet = self.cfg.experts_per_chiplet
        grads = [value if i == local else 0 for i in range(per_chiplet)]
        return g, Packet(PacketKind.GATE_GRAD, self.proto.topology.root, self.proto.topology.chiplet(g, c), tag,
                         {"experts": [int(i == local) for i in range(per_chiplet)]},
                         tuple(self.proto.pack_gate_grads(grads)))


def backward_token(cfg, proto, tag, experts, gates, dy, x, dedup, record):
    k = cfg.moe.top_k
    return HostCommand(HostOp.TOKEN, {"token": tag, "first": 1, "final": 1, "dedup": dedup, "save": 0,
                                      "save_index": record, "backward": 1, "valid": [1] * k,
                                      "experts": [int(e) for e in experts], "gates": [int(g) for g in gates]},
                       tuple(proto.pack_token(dy)) + tuple(proto.pack_token(x)))


def forward_token(cfg, proto, tag, experts):
    k = cfg.moe.top_k
    return HostCommand(HostOp.TOKEN, {"token": tag, "first": 1, "final": 1, "dedup": 1, "save": 0,
                                      "valid": [1] * k, "experts": list(experts), "gates": [1] * k},
                       tuple(proto.pack_token([tag] * cfg.moe.d_model)))


def expected_backward_dispatches(cfg, proto, table, tag, experts, gates, dy, x, dedup, record):
    """The DISPATCHes the root must send for a backward token: per group (dedup) or per expert."""
    per_chiplet = cfg.experts_per_chiplet
    if not dedup:
        packets = []
        for e, gate in zip(experts, gates):
            g, c, local = table[int(e)]
            mask = [int(i == local) for i in range(per_chiplet)]
            gate_list = [int(gate) if i == local else 0 for i in range(per_chiplet)]
            packets.append(proto.backward_dispatch_to_group(tag, g, {c: (mask, gate_list)}, dy, x, record,
                                                            reduce=False))
        return packets
    routes_per_group = {}
    for e, gate in zip(experts, gates):
        g, c, local = table[int(e)]
        mask, gate_list = routes_per_group.setdefault(g, {}).setdefault(c, ([0] * per_chiplet, [0] * per_chiplet))
        mask[local], gate_list[local] = 1, int(gate)
    return [proto.backward_dispatch_to_group(tag, g, routes, dy, x, record, reduce=True)
            for g, routes in sorted(routes_per_group.items())]


def packet_words(proto, packets):
    return sorted(tuple(f.data for f in proto.encode(p)) for p in packets)


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_backward_tokens_dispatch_exactly_and_return_their_input_gradients_in_order(preset):
    cfg = load_config(preset)
    h = TrainingHarness(cfg)
    proto, host, topo = h.proto, h.host, h.proto.topology
    table, rng, k = _table(cfg), np.random.default_rng(3), cfg.moe.top_k
    experts = [rng.choice(cfg.moe.experts, k, replace=False) for _ in range(2)]
    gates = [rng.integers(0, 1 << cfg.numerics.gate_bits, k) for _ in range(2)]
    dy = [rng.integers(-128, 128, cfg.moe.d_model) for _ in range(2)]
    x = [rng.integers(-128, 128, cfg.moe.d_model) for _ in range(2)]
    records = [proto.saved_tokens - 1, 5]
    dedups = [1, 0]   # token 0 de-duplicated, token 1 one DISPATCH per expert
    results = {}

    async def bench(ctx):
        await h.write_table(ctx, table)
        await h.make_resident(ctx, table, [e for t in experts for e in t])
        for t in range(2):
            await h.send(ctx, h.dut.host_in, host.encode(
                backward_token(cfg, proto, t, experts[t], gates[t], dy[t], x[t], dedups[t], records[t])))
        await h.idle(ctx, 60)
        for t in (1, 0):   # token 1's results first: the outputs still leave in token order
            sources = (sorted({topo.switch(table[int(e)][0]) for e in experts[t]}) if dedups[t] else
                       [topo.chiplet(*table[int(e)][:2]) for e in experts[t]])
            parts = [rng.integers(-1000, 1000, cfg.moe.d_model) for _ in sources]
            results[t] = golden.reduce_partials(parts, cfg.numerics.partial_bits)
            for src, part in zip(sources, parts):
                pkt = Packet(PacketKind.COMBINE, topo.root, src, t, {"reduce": dedups[t]},
                             tuple(proto.pack_partial(part)))
                await h.send(ctx, h.dut.up[topo.node(src).group], proto.encode(pkt))
        await h.idle(ctx, 40)
        assert ctx.get(h.dut.errors) == 0

    h.run(bench)
    got = [p for d in h.down for p in h.packets(d) if p.kind is PacketKind.DISPATCH]
    expected = [p for t in range(2) for p in expected_backward_dispatches(
        cfg, proto, table, t, experts[t], gates[t], dy[t], x[t], dedups[t], records[t])]
    assert packet_words(proto, got) == packet_words(proto, expected)
    frames = [h.outputs[i:i + proto.partial_flits] for i in range(0, len(h.outputs), proto.partial_flits)]
    assert len(frames) == 2
    for t in range(2):
        np.testing.assert_array_equal(proto.unpack_partial([f.data for f in frames[t]]), results[t])


def _credit_run(cfg):
    """Fills chiplet (0, 0) with ``token_slots`` de-duplicated backward replicas, then offers a backward token for
    it (must wait), a forward token for it and a backward token for another chiplet (must both go), then sends
    one GATE_GRAD from chiplet (0, 0) (the waiting token must go). Returns the tags dispatched, in order, before
    and after the GATE_GRAD."""
    h = TrainingHarness(cfg)
    proto, host = h.proto, h.host
    table, limit, k = _table(cfg), cfg.hardware.token_slots, cfg.moe.top_k
    # k experts of chiplet (0, 0) (de-duplicated: one replica each token) and k of the last group
    on_chiplet = [e for e, place in table.items() if place[:2] == (0, 0)][:k]
    other = [e for e, place in table.items() if place[0] == cfg.groups - 1][:k]
    assert len(on_chiplet) == k, "the config must hold top_k experts on one chiplet"
    zeros = [0] * cfg.moe.d_model
    dispatched = {}

    async def bench(ctx):
        await h.write_table(ctx, table)
        await h.make_resident(ctx, table, list(table))
        for tag in range(limit):
            await h.send(ctx, h.dut.host_in, host.encode(
                backward_token(cfg, proto, tag, on_chiplet, [1] * k, zeros, zeros, 1, tag)))
        waiting, forward, another = limit, limit + 1, limit + 2
        await h.send(ctx, h.dut.host_in, host.encode(
            backward_token(cfg, proto, waiting, on_chiplet, [1] * k, zeros, zeros, 1, waiting)))
        await h.send(ctx, h.dut.host_in, host.encode(forward_token(cfg, proto, forward, on_chiplet)))
        await h.send(ctx, h.dut.host_in, host.encode(
            backward_token(cfg, proto, another, other, [1] * k, zeros, zeros, 1, another)))
        await h.idle(ctx, 80)
        dispatched["before"] = [p.tag for p in h.packets(h.down[0])]
        g, gate_grad = h.gate_grad(table, on_chiplet[0], 0, 1)
        await h.send(ctx, h.dut.up[g], proto.encode(gate_grad))
        await h.idle(ctx, 40)
        dispatched["after"] = [p.tag for p in h.packets(h.down[0])]
        dispatched["other"] = [p.tag for p in h.packets(h.down[cfg.groups - 1])]

    h.run(bench)
    return dispatched


def _check_credit(cfg, dispatched):
    limit = cfg.hardware.token_slots
    waiting, forward, another = limit, limit + 1, limit + 2
    assert dispatched["before"] == list(range(limit)) + [forward], "the backward token over the credit must wait"
    assert another in dispatched["other"], "a backward token for another chiplet must not wait"
    assert dispatched["after"] == dispatched["before"] + [waiting], "a GATE_GRAD must give the credit back"


def test_a_backward_token_waits_for_credit_and_goes_on_a_gate_grad():
    cfg = load_config("tiny")
    _check_credit(cfg, _credit_run(cfg))


class _NoCredit(RootIssueWindow):
    def _has_credit(self, header, replicas):
        return 1


def test_a_root_without_the_credit_is_caught(monkeypatch):
    cfg = load_config("tiny")
    monkeypatch.setattr(root_module, "RootIssueWindow", _NoCredit)
    with pytest.raises(AssertionError, match="must wait"):
        _check_credit(cfg, _credit_run(cfg))


def _gate_grads_run(cfg, seed):
    """Several groups send GATE_GRADs at once while ``grads_out`` stalls at random: returns what each group sent
    (in order) and what came out on ``grads_out``."""
    h = TrainingHarness(cfg, grads_stall=0.4, seed=seed)
    table, rng = _table(cfg), np.random.default_rng(seed)
    sent = {g: [] for g in range(cfg.groups)}
    for tag in range(6):
        for g in range(cfg.groups):
            expert = int(rng.choice([e for e, place in table.items() if place[0] == g]))
            sent[g].append(h.gate_grad(table, expert, tag, int(rng.integers(-1 << 20, 1 << 20)))[1])

    def sender(g):
        async def process(ctx):
            for pkt in sent[g]:
                await h.send(ctx, h.dut.up[g], h.proto.encode(pkt), limit=2000)
        return process

    for g in range(cfg.groups):
        h.sim.add_testbench(sender(g))

    async def drain(ctx):
        await h.idle(ctx, 800)
        assert ctx.get(h.dut.errors) == 0
    h.run(drain)
    return sent, h.grads


def _check_forwarded(proto, sent, grads_flits):
    """Every packet verbatim and whole (no interleaving), each group's in its order, none lost or added."""
    got, current = [], []
    for flit in grads_flits:
        assert bool(flit.first) == (not current), "grads_out must carry whole packets, one after the other"
        current.append(flit)
        if flit.last:
            got.append(proto.decode(current))
            current = []
    assert not current
    for g, packets in sent.items():
        sources = {p.src for p in packets}
        assert ([proto.encode(p) for p in got if p.src in sources] == [proto.encode(p) for p in packets]), \
            f"group {g}'s GATE_GRADs must come out verbatim and in order"
    assert len(got) == sum(len(p) for p in sent.values())


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_gate_grads_are_forwarded_verbatim_in_arrival_order(preset):
    cfg = load_config(preset)
    proto = Protocol(cfg)
    sent, grads = _gate_grads_run(cfg, seed=5)
    assert len(sent) > 1 and all(sent.values())
    _check_forwarded(proto, sent, grads)


@pytest.mark.parametrize("mutate", ["drop", "reorder", "interleave"])
def test_the_forwarding_check_catches_a_dropped_reordered_or_interleaved_packet(mutate):
    cfg = load_config("tiny")
    proto = Protocol(cfg)
    sent, grads = _gate_grads_run(cfg, seed=6)
    length = 1 + proto.gate_grad_flits
    if mutate == "drop":
        grads = grads[length:]
    elif mutate == "reorder":   # two packets of one group swapped
        first_src = proto.decode(grads[:length]).src
        later = next(i for i in range(length, len(grads), length) if proto.decode(grads[i:i + length]).src == first_src)
        grads = grads[later:later + length] + grads[length:later] + grads[:length] + grads[later + length:]
    else:
        grads = [grads[0], grads[length]] + grads[1:length] + grads[length + 1:]
    with pytest.raises(AssertionError):
        _check_forwarded(proto, sent, grads)


def _update_run(cfg):
    """UPDATE of (last group, chiplet 0, slot 0, local 0) once every slot 0 is LOADED; then a WAIT_LOADED of the
    slot and a TOKEN selecting the expert, both of which must wait until the chiplet's UPDATED. Returns the
    packets sent and the stages seen."""
    h = TrainingHarness(cfg)
    proto, host, topo, table = h.proto, h.host, h.proto.topology, _table(cfg)
    group = cfg.groups - 1
    expert = next(e for e, place in table.items() if place == (group, 0, 0))
    others = [e for e in table if e != expert and table[e][0] == group][:cfg.moe.top_k - 1]
    update = {"group": group, "chiplet": 0, "slot": 0, "local": 0, "addr": proto.expert_image_base(1)}
    seen = {}

    async def bench(ctx):
        await h.write_table(ctx, table)
        await h.make_resident(ctx, table, list(table))
        await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.UPDATE, update)))
        await h.send(ctx, h.dut.host_in, host.encode(forward_token(cfg, proto, 0, [expert] + others)))
        await h.idle(ctx, 30)
        seen["token_before"] = [p.kind for p in h.packets(h.down[group])]
        wait = host.encode(HostCommand(HostOp.WAIT_LOADED, {"group": group, "chiplet": 0, "slot": 0}))
        ctx.set(h.dut.host_in.valid, 1)
        ctx.set(h.dut.host_in.payload, {"data": wait[0].data, "first": 1, "last": 1})
        seen["wait_taken_before"] = False
        for _ in range(10):
            _, _, taken = await ctx.tick().sample(h.dut.host_in.ready)
            seen["wait_taken_before"] |= bool(taken)
        ctx.set(h.dut.host_in.valid, 0)
        updated = Packet(PacketKind.UPDATED, topo.root, topo.chiplet(group, 0), 0, {"slot": 0, "expert": 0})
        await h.send(ctx, h.dut.up[group], proto.encode(updated))
        await h.send(ctx, h.dut.host_in, wait, limit=10)
        await h.idle(ctx, 30)
        seen["after"] = [p.kind for p in h.packets(h.down[group])]

    h.run(bench)
    seen["update"] = h.packets(h.down[group])[0]
    seen["expected"] = Packet(PacketKind.UPDATE, topo.chiplet(group, 0), topo.root, 0,
                              {"slot": 0, "addr": update["addr"]}, ())
    return seen


def test_an_older_updated_does_not_make_a_reloaded_local_index_resident():
    _check_reloaded_local_index()


def test_a_root_whose_answers_from_any_slot_set_resident_is_caught(monkeypatch):
    monkeypatch.setattr(root_module, "RootIssueWindow", _AnySlotSetsResident)
    with pytest.raises(AssertionError, match="must wait for the LOADED of the new copy"):
        _check_reloaded_local_index()


def _check_reloaded_local_index():
    """The layer boundary of a backward pass: slot 0's UPDATE (local 0 of one layer) is unanswered when a LOAD puts
    local 0 of the next layer into slot 1. The UPDATED of slot 0 that arrives then must not make the token selecting
    the new expert go: only slot 1's LOADED may (the wafer deadlocked on this: docs/wafer.md §11)."""
    cfg = load_config("tiny")
    h = TrainingHarness(cfg)
    proto, host, topo, table = h.proto, h.host, h.proto.topology, _table(cfg)
    group = cfg.groups - 1
    expert = next(e for e, place in table.items() if place == (group, 0, 0))
    others = [e for e in table if e != expert and table[e][0] == group][:cfg.moe.top_k - 1]
    slot = {"group": group, "chiplet": 0, "local": 0, "addr": proto.expert_image_base(1)}
    seen = {}

    async def bench(ctx):
        await h.write_table(ctx, table)
        await h.make_resident(ctx, table, list(table))
        await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.UPDATE, {**slot, "slot": 0})))
        await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.LOAD, {**slot, "slot": 1})))
        await h.send(ctx, h.dut.host_in, host.encode(forward_token(cfg, proto, 0, [expert] + others)))
        for kind, answered in ((PacketKind.UPDATED, 0), (PacketKind.LOADED, 1)):
            await h.idle(ctx, 30)
            seen[kind] = [p.kind for p in h.packets(h.down[group])]
            answer = Packet(kind, topo.root, topo.chiplet(group, 0), 0, {"slot": answered, "expert": 0})
            await h.send(ctx, h.dut.up[group], proto.encode(answer))
        await h.idle(ctx, 30)
        seen["after"] = [p.kind for p in h.packets(h.down[group])]

    h.run(bench)
    assert seen[PacketKind.UPDATED] == seen[PacketKind.LOADED] == [PacketKind.UPDATE, PacketKind.LOAD], \
        "the token must wait for the LOADED of the new copy, not take the older copy's UPDATED"
    assert seen["after"] == [PacketKind.UPDATE, PacketKind.LOAD, PacketKind.DISPATCH]


def _check_update(proto, seen):
    assert proto.encode(seen["update"]) == proto.encode(seen["expected"])
    assert seen["token_before"] == [PacketKind.UPDATE], "a TOKEN selecting the updated expert must wait for UPDATED"
    assert not seen["wait_taken_before"], "WAIT_LOADED of the slot must wait for UPDATED"
    assert seen["after"] == [PacketKind.UPDATE, PacketKind.DISPATCH]


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_update_is_exact_and_its_expert_waits_for_updated(preset):
    cfg = load_config(preset)
    _check_update(Protocol(cfg), _update_run(cfg))


class _KeepsResidentOnUpdate(RootIssueWindow):
    def _resident_bits(self, m):   # the mutant: a LOAD or UPDATE never clears a RESIDENT bit
        resident = Signal(self.contract.residents)
        report = loaded_layout(self.contract)(self.loaded.payload)
        m.d.sync += resident.eq(resident | Mux(self.loaded.valid, Const(1, len(resident)) << report.resident, 0))
        return resident


def test_a_root_that_keeps_resident_on_update_is_caught(monkeypatch):
    cfg = load_config("tiny")
    monkeypatch.setattr(root_module, "RootIssueWindow", _KeepsResidentOnUpdate)
    with pytest.raises(AssertionError, match="must wait for UPDATED"):
        _check_update(Protocol(cfg), _update_run(cfg))
