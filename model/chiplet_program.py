"""Transaction-level reference of one expert chiplet: random programs of WEIGHT and DISPATCH packets that obey
the protocol, and the packets the chiplet must send for them (from :mod:`mozart.model.golden`).

Pure Python and numpy (no cocotb, no Amaranth): the cocotb testbench ``tb_chiplet``, the ``amaranth.sim``
tests and the benchmark all drive the chiplet with a :class:`ChipletProgram`.

The expected output packets are grouped into flows whose order the chiplet guarantees: ``"COMBINE"`` (token
order), ``"MEM_WRITE"`` (token order, experts ascending, packets in address order) and ``("LOADED", slot)``
(load order per slot; LOADEDs of different slots may overtake each other under backpressure).

Training (:meth:`ChipletProgram.backward`, :meth:`ChipletProgram.update`): a backward dispatch of a token the
chiplet saved earlier expects its restore reads (``"MEM_READ"``), its input-gradient partial (``"GRAD_COMBINE"``)
and its gate gradients (``"GATE_GRAD"``), from :mod:`mozart.model.golden_backward` on the saved token and the
weights resident at the time; the gradients add up per slot, and an UPDATE expects the updated image's
write-back and the UPDATED report (``"WRITEBACK"``). Such a program needs a memory behind the chiplet (the
restore reads what the saves wrote) and the root's promises (``docs/protocol.md``, "The backward pass"), which
the program marks: :class:`Barrier` (wait until every output expected so far is out) and the backward credit
(at most ``token_slots`` backward tokens in flight). :class:`~mozart.model.chiplet_input_scheduler.InputScheduler`
keeps both, with a :class:`~mozart.model.chiplet_memory.ChipletMemory` behind the chiplet; the amaranth.sim driver
(:func:`mozart.hw.pysim.run_pysim`) and the cocotb testbench (``mozart.tb.tb_chiplet``) share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden, golden_backward
from .protocol import Packet, PacketKind, Protocol

__all__ = ["ChipletProgram", "Expected", "Barrier"]


@dataclass
class Expected:
    packet: Packet
    flow: object


@dataclass(frozen=True)
class Barrier:
    """An input-sequence marker: send nothing more until ``outputs`` packets (of ``kind`` only, if given) are
    out."""

    outputs: int
    kind: PacketKind | None = None


@dataclass
class _Saved:
    """A forward token whose pre-activations the chiplet saved (in record ``save_index``)."""

    x: np.ndarray
    experts: list[int]
    gates: np.ndarray
    z: dict[int, np.ndarray]


@dataclass
class _Slot:
    expert: int = -1
    w1: np.ndarray | None = None
    w2: np.ndarray | None = None
    loading: bool = False
    emptied: bool = False   #: a later load put the expert in another slot (the weights stay, for an UPDATE)


class ChipletProgram:
    """Builds an input packet sequence for chiplet ``(group, index)`` and the outputs it must produce.

    The sequence follows the chiplet's interlock rules, which a single input link can exercise directly:
    a reload of a slot may follow dispatches that still use it (the WEIGHT waits inside the chiplet until
    they are done), a dispatch may come in the middle of its expert's load (the token waits), and a load of an
    expert that another slot holds empties that slot (the chiplet keeps the newest copy of a local expert), so
    the expected weights are never ambiguous.

    Parameters
    ----------
    cfg : WaferConfig
    rng : numpy Generator
    group, index : the chiplet's place
    token_slots : the chiplet's activation-buffer entries (bounds the dispatches placed inside a load)
    """

    def __init__(self, cfg, rng: np.random.Generator, group: int = 0, index: int = 0, token_slots: int = 4):
        self.cfg = cfg
        self.rng = rng
        self.proto = Protocol(cfg)
        self.group, self.index = group, index
        self.node = self.proto.topology.chiplet(group, index)
        self.token_slots = token_slots
        self.slots = [_Slot() for _ in range(cfg.hardware.sram_slots)]
        self.inputs: list[Packet | Barrier] = []
        self.saved: dict[int, _Saved] = {}
        self.grads: list[tuple[np.ndarray, np.ndarray] | None] = [None] * cfg.hardware.sram_slots
        self.expected: list[Expected] = []
        self.tokens = 0
        self.selected = 0
        self._tag = 0
        self._load_tag = 0
        num = cfg.numerics
        self.a_lo, self.a_hi = -(1 << (num.act_bits - 1)), (1 << (num.act_bits - 1)) - 1
        self.w_lo, self.w_hi = -(1 << (num.weight_bits - 1)), (1 << (num.weight_bits - 1)) - 1

    # -- random values -----------------------------------------------------------------------------------
    def _values(self, shape, lo: int, hi: int, extreme: bool) -> np.ndarray:
        if extreme:   # all at the rails, in one of three patterns: min, max or a random mix of both
            pick = self.rng.integers(3)
            if pick == 0:
                return np.full(shape, lo, dtype=np.int64)
            if pick == 1:
                return np.full(shape, hi, dtype=np.int64)
            return np.where(self.rng.random(shape) < 0.5, lo, hi).astype(np.int64)
        return self.rng.integers(lo, hi + 1, size=shape, dtype=np.int64)

    def random_weights(self, extreme: bool = False) -> tuple[np.ndarray, np.ndarray]:
        moe = self.cfg.moe
        return (self._values((moe.d_ff, moe.d_model), self.w_lo, self.w_hi, extreme),
                self._values((moe.d_model, moe.d_ff), self.w_lo, self.w_hi, extreme))

    # -- resident state ------------------------------------------------------------------------------------
    def resident(self) -> dict[int, int]:
        """Local expert -> slot, for complete slots."""
        return {s.expert: i for i, s in enumerate(self.slots) if s.expert >= 0 and not s.loading and not s.emptied}

    # -- packets -----------------------------------------------------------------------------------------
    def weight_packets(self, slot: int, expert: int, w1, w2, tag: int) -> list[Packet]:
        """The WEIGHT packets of one load as a memory controller sends them (random burst lengths)."""
        flits = golden.expert_image_flits(w1, w2, self.cfg)
        burst = self.cfg.hardware.max_burst_flits
        topo = self.proto.topology
        packets, start = [], 0
        while start < len(flits):
            n = int(self.rng.integers(1, burst + 1))
            chunk = flits[start:start + n]
            final = start + len(chunk) == len(flits)
            packets.append(Packet(PacketKind.WEIGHT, self.node, topo.memctrl(self.group), tag,
                                  {"slot": slot, "expert": expert, "offset": start * self.proto.words_per_flit,
                                   "final": int(final)}, tuple(chunk)))
            start += len(chunk)
        return packets

    def load(self, slot: int, expert: int, *, extreme: bool = False, dispatches_inside: int = 0,
             **dispatch_kw) -> None:
        """Load ``expert`` into ``slot`` (a slot holding it already is emptied, as the chiplet does); optionally put
        up to ``dispatches_inside`` dispatches for it between the load's packets (they wait for the load)."""
        for i, s in enumerate(self.slots):
            if i != slot and s.expert == expert:
                s.emptied = True
        w1, w2 = self.random_weights(extreme)
        tag = self._load_tag
        self._load_tag = (self._load_tag + 1) % (1 << self.cfg.hardware.tag_bits)
        packets = self.weight_packets(slot, expert, w1, w2, tag)
        dispatches_inside = min(dispatches_inside, self.token_slots - 1, len(packets) - 1)
        where = sorted(self.rng.choice(np.arange(1, len(packets)), size=dispatches_inside, replace=False)) \
            if dispatches_inside else []
        self.slots[slot] = _Slot(expert, w1, w2, loading=True)
        pending = []
        for i, p in enumerate(packets):
            if i in where:
                pending.append(len(self.inputs))
                self.inputs.append(None)   # placeholder for a dispatch, filled when the weights are final
            self.inputs.append(p)
        self.slots[slot].loading = False
        self.expected.append(Expected(Packet(PacketKind.LOADED, self.proto.topology.root, self.node, tag,
                                             {"slot": slot, "expert": expert}), ("LOADED", slot)))
        for position in pending:
            self.inputs[position] = self._dispatch_packet(experts=[expert], **dispatch_kw)

    def dispatch(self, experts=None, **kw) -> None:
        """One DISPATCH replica; ``experts`` = local experts to select (default: a random resident subset)."""
        self.inputs.append(self._dispatch_packet(experts, **kw))

    def _dispatch_packet(self, experts=None, *, save: bool | None = None, extreme: bool = False,
                         reduce: bool | None = None) -> Packet:
        cfg, proto = self.cfg, self.proto
        E = cfg.experts_per_chiplet
        resident = self.resident()
        if experts is None:
            candidates = sorted(resident)
            k = int(self.rng.integers(0, len(candidates) + 1)) if candidates else 0
            experts = sorted(self.rng.choice(candidates, size=k, replace=False).tolist()) if k else []
        mask = np.zeros(E, dtype=np.int64)
        mask[list(experts)] = 1
        gmax = (1 << cfg.numerics.gate_bits) - 1
        gates = np.full(E, gmax, dtype=np.int64) if extreme else self.rng.integers(0, gmax + 1, E)
        x = self._values(cfg.moe.d_model, self.a_lo, self.a_hi, extreme)
        save = bool(self.rng.random() < 0.3) if save is None else save
        reduce = bool(self.rng.integers(2)) if reduce is None else reduce
        tag = self._tag
        self._tag = (self._tag + 1) % (1 << cfg.hardware.tag_bits)
        # Expected outputs, from the weights each selected expert has right now.
        zeros = np.zeros((cfg.moe.d_ff, cfg.moe.d_model), dtype=np.int64)
        slot_of = {self.slots[i].expert: self.slots[i] for i in self.resident().values()}
        w1s = np.stack([slot_of[e].w1 if e in slot_of else zeros for e in range(E)])
        w2s = np.stack([slot_of[e].w2 if e in slot_of else zeros.T for e in range(E)])
        partial, z = golden.chiplet_partial(x, (w1s, w2s), mask, gates, cfg, return_saved=True)
        save_index = int(self.rng.integers(proto.saved_tokens)) if save else 0
        root = proto.topology.root
        self.expected.append(Expected(Packet(PacketKind.COMBINE, root, self.node, tag, {"reduce": int(reduce)},
                                             tuple(proto.pack_partial(partial))), "COMBINE"))
        if save:
            for e in experts:
                for p in golden.save_packets(cfg, self.group, self.index, tag, save_index, e, z[e]):
                    self.expected.append(Expected(p, "MEM_WRITE"))
            self.saved[save_index] = _Saved(x, list(experts), gates, {e: z[e] for e in experts})
        self.tokens += 1
        self.selected += len(experts)
        chiplets = [int(c == self.index) for c in range(cfg.chiplets_per_group)]
        return Packet(PacketKind.DISPATCH, self.node, proto.topology.switch(self.group), tag,
                      {"chiplets": chiplets, "reduce": int(reduce), "save": int(save), "save_index": save_index},
                      tuple(proto.pack_route(mask.tolist(), gates.tolist()) + proto.pack_token(x)))

    # -- whole programs ----------------------------------------------------------------------------------
    def random_program(self, tokens: int, *, reload_every: float = 12.0, extreme: float = 0.05,
                       inside: float = 0.2) -> "ChipletProgram":
        """Fill every slot, then ``tokens`` dispatches with a reload (new weights, maybe another expert)
        about every ``reload_every`` tokens; ``extreme`` = probability of rail values per load and token;
        ``inside`` = probability that a reload carries dispatches between its packets."""
        E, S = self.cfg.experts_per_chiplet, len(self.slots)
        for s in range(min(S, E)):
            self.load(s, s, extreme=self.rng.random() < extreme)
        while self.tokens < tokens:
            if self.rng.random() < 1.0 / reload_every:
                slot = int(self.rng.integers(S))
                elsewhere = {sl.expert for i, sl in enumerate(self.slots) if i != slot}
                choices = [e for e in range(E) if e not in elsewhere]
                if not choices:   # every expert lives in another slot (fewer experts than slots): reload one there
                    slot = int(self.rng.choice([i for i, sl in enumerate(self.slots) if sl.expert >= 0]))
                    choices = [self.slots[slot].expert]
                expert = int(self.rng.choice(choices))
                inside_n = int(self.rng.integers(1, 3)) if self.rng.random() < inside else 0
                self.load(slot, expert, extreme=self.rng.random() < extreme, dispatches_inside=inside_n)
            else:
                self.dispatch(extreme=self.rng.random() < extreme)
        return self

    def expected_by_kind(self) -> dict[PacketKind, int]:
        out: dict[PacketKind, int] = {}
        for e in self.expected:
            out[e.packet.kind] = out.get(e.packet.kind, 0) + 1
        return out

    # -- training ------------------------------------------------------------------------------------------
    def barrier(self, kind: PacketKind | None = None) -> None:
        """Send nothing more until every output expected so far (of ``kind`` only, if given) is out: the root's
        phase barrier, or with ``kind = COMBINE`` the root's "a token's backward after its forward result"."""
        self.inputs.append(Barrier(sum(kind is None or e.packet.kind is kind for e in self.expected), kind))

    def backward(self, record: int | None = None, *, extreme: bool = False, reduce: bool | None = None) -> None:
        """A backward dispatch of a saved token (``record``; default a random one whose experts are resident),
        with the forward's experts and gates and a random output gradient."""
        cfg, proto, topo = self.cfg, self.proto, self.proto.topology
        slot_of = self.resident()
        if record is None:
            candidates = sorted(r for r, s in self.saved.items() if s.experts and set(s.experts) <= set(slot_of))
            if not candidates:
                raise ValueError("backward needs a saved token whose experts are all resident")
            record = int(self.rng.choice(candidates))
        saved = self.saved[record]
        dY = self._values(cfg.moe.d_model, self.a_lo, self.a_hi, extreme)
        reduce = bool(self.rng.integers(2)) if reduce is None else reduce
        tag = self._tag
        self._tag = (self._tag + 1) % (1 << proto.tag_bits)
        E, hidden, burst = cfg.experts_per_chiplet, golden.hidden_flits(cfg), cfg.hardware.max_burst_flits
        mask = np.zeros(E, dtype=np.int64)
        mask[saved.experts] = 1
        dx = np.zeros((E, cfg.moe.d_model), dtype=np.int64)
        dg = np.zeros(E, dtype=np.int64)
        for e in saved.experts:
            start = golden.activation_addr(cfg, self.index, record, e)
            for r in range(0, hidden, burst):
                self.expected.append(Expected(Packet(
                    PacketKind.MEM_READ, topo.memctrl(self.group), self.node, tag,
                    {"addr": start + r * proto.words_per_flit,
                     "words": min(burst, hidden - r) * proto.words_per_flit}), "MEM_READ"))
            slot = slot_of[e]
            w1, w2 = self.slots[slot].w1, self.slots[slot].w2
            b = golden_backward.expert_backward(saved.x, saved.z[e], dY, int(saved.gates[e]), w1, w2, cfg)
            dx[e], dg[e] = b.dx, b.dg
            dw1, dw2 = golden_backward.weight_gradients(saved.x[None], _first(b), cfg)
            old = self.grads[slot] or (np.zeros_like(w1), np.zeros_like(w2))
            self.grads[slot] = (old[0] + dw1, old[1] + dw2)
        partial = golden.local_sum(dx, mask, cfg.numerics.partial_bits)
        self.expected.append(Expected(Packet(PacketKind.COMBINE, topo.root, self.node, tag, {"reduce": int(reduce)},
                                             tuple(proto.pack_partial(partial))), "GRAD_COMBINE"))
        grads = Packet(PacketKind.GATE_GRAD, topo.root, self.node, tag, {"experts": mask.tolist()},
                       tuple(proto.pack_gate_grads(dg)))
        # in the form decoding gives (a one-expert mask is a plain int), as the chiplet's packet will be read
        self.expected.append(Expected(proto.decode(proto.encode(grads)), "GATE_GRAD"))
        chiplets = [int(c == self.index) for c in range(cfg.chiplets_per_group)]
        self.inputs.append(Packet(
            PacketKind.DISPATCH, self.node, topo.switch(self.group), tag,
            {"chiplets": chiplets, "reduce": int(reduce), "save": 0, "save_index": record, "backward": 1},
            tuple(proto.pack_route(mask.tolist(), saved.gates.tolist()) + proto.pack_token(dY)
                  + proto.pack_token(saved.x))))
        self.tokens += 1

    def update(self, slot: int) -> None:
        """An UPDATE of ``slot``: its accumulated gradients applied (``golden_backward.update_weights``), the
        updated image written back over the expert's image in the group's DRAM, then UPDATED."""
        cfg, proto, topo = self.cfg, self.proto, self.proto.topology
        s = self.slots[slot]
        dw1, dw2 = self.grads[slot] or (np.zeros_like(s.w1), np.zeros_like(s.w2))
        s.w1 = golden_backward.update_weights(s.w1, dw1, golden_backward.update_shift(cfg, "w1"), cfg)
        s.w2 = golden_backward.update_weights(s.w2, dw2, golden_backward.update_shift(cfg, "w2"), cfg)
        self.grads[slot] = None
        tag = self._load_tag
        self._load_tag = (self._load_tag + 1) % (1 << proto.tag_bits)
        addr = proto.expert_image_base(self.index * cfg.experts_per_chiplet + s.expert)
        flits, burst = golden.expert_image_flits(s.w1, s.w2, cfg), cfg.hardware.max_burst_flits
        for start in range(0, len(flits), burst):
            chunk = flits[start:start + burst]
            self.expected.append(Expected(Packet(
                PacketKind.MEM_WRITE, topo.memctrl(self.group), self.node, tag,
                {"addr": addr + start * proto.words_per_flit, "words": len(chunk) * proto.words_per_flit,
                 "ack": int(start + burst >= len(flits))}, tuple(chunk)), "WRITEBACK"))
        self.expected.append(Expected(Packet(PacketKind.UPDATED, topo.root, self.node, tag,
                                             {"slot": slot, "expert": s.expert}), "WRITEBACK"))
        self.inputs.append(Packet(PacketKind.UPDATE, self.node, topo.root, tag, {"slot": slot, "addr": addr}))

    def training_program(self, tokens: int, *, extreme: float = 0.05) -> "ChipletProgram":
        """One training step on the resident experts: every slot loaded, ``tokens`` saving forward dispatches,
        a barrier, a backward dispatch of each saved token (the backward credit keeps at most ``token_slots`` in
        flight), a barrier, then an UPDATE of every slot (one at a time: a barrier after each)."""
        E, S = self.cfg.experts_per_chiplet, len(self.slots)
        for s in range(min(S, E)):
            self.load(s, s, extreme=self.rng.random() < extreme)
        for _ in range(tokens):
            self.dispatch(save=True, extreme=self.rng.random() < extreme)
        self.barrier()
        for record in sorted(r for r, s in self.saved.items() if s.experts):
            self.backward(record, extreme=self.rng.random() < extreme)
        self.barrier()
        for s in range(min(S, E)):
            self.update(s)
            self.barrier()
        return self


def _first(b: golden_backward.ExpertBackward) -> golden_backward.ExpertBackward:
    """One token's backward as a batch of one (``weight_gradients`` sums over a leading token axis)."""
    return golden_backward.ExpertBackward(*(np.asarray(v)[None] for v in (b.dy, b.dh, b.dz, b.dx, b.dg, b.h)))
