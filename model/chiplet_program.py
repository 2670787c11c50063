"""Transaction-level reference of one expert chiplet: random programs of WEIGHT and DISPATCH packets that obey
the protocol, and the packets the chiplet must send for them (from :mod:`mozart.model.golden`).

Pure Python and numpy (no cocotb, no Amaranth): the cocotb testbench ``tb_chiplet``, the ``amaranth.sim``
tests and the benchmark all drive the chiplet with a :class:`ChipletProgram`.

The expected output packets are grouped into flows whose order the chiplet guarantees: ``"COMBINE"`` (token
order), ``"MEM_WRITE"`` (token order, experts ascending, packets in address order) and ``("LOADED", slot)``
(load order per slot; LOADEDs of different slots may overtake each other under backpressure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden
from .protocol import Packet, PacketKind, Protocol

__all__ = ["ChipletProgram", "Expected"]


@dataclass
class Expected:
    packet: Packet
    flow: object


@dataclass
class _Slot:
    expert: int = -1
    w1: np.ndarray | None = None
    w2: np.ndarray | None = None
    loading: bool = False


class ChipletProgram:
    """Builds an input packet sequence for chiplet ``(group, index)`` and the outputs it must produce.

    The sequence follows the chiplet's interlock rules, which a single input link can exercise directly:
    a reload of a slot may follow dispatches that still use it (the WEIGHT waits inside the chiplet until
    they are done), a dispatch may come in the middle of its expert's load (the token waits), and each local
    expert lives in at most one slot, so the expected weights are never ambiguous.

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
        self.inputs: list[Packet] = []
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
        return {s.expert: i for i, s in enumerate(self.slots) if s.expert >= 0 and not s.loading}

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
        """Load ``expert`` into ``slot`` (it must not be resident in another slot); optionally put up to
        ``dispatches_inside`` dispatches for it between the load's packets (they wait for the load)."""
        for i, s in enumerate(self.slots):
            if i != slot and s.expert == expert:
                raise ValueError(f"expert {expert} is already in slot {i}; a program keeps one copy per expert")
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
        slot_of = {s.expert: s for s in self.slots if s.expert >= 0}
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
