"""The streaming schedule of one MoE layer, forward and backward, as a list of typed commands.

A :class:`Schedule` is what the root (attention) node executes for one layer of one training step. It is
built by :func:`build_schedule` from a config, a placement and a trace, checked by
:func:`mozart.model.schedule_validate.validate`, costed by :mod:`mozart.model.perf`, and later driven into the
RTL root node. Every command has an ``id``, explicit ``deps`` (ids that must complete first) and a
``phase`` (``"forward"`` or ``"backward"``); dependencies never cross phases.

Command kinds and their protocol mapping (:class:`mozart.model.protocol.PacketKind`)
------------------------------------------------------------------------------------
=================  =====================================================================================
``Load``           root -> memory controller of ``group``: one LOAD packet; the controller streams the
                   weight image of ``expert`` into ``(chiplet, slot)`` as WEIGHT packets.
``WaitLoaded``     the root blocks until the LOADED(slot, expert) packet of ``load`` arrived.
``Attention``      root-internal: attention + router of ``micro_batch`` (forward) or attention backward.
                   No packet; the RTL root takes routed tokens from its host stream instead.
``Dispatch``       root -> switch: one DISPATCH packet per token (and per expert when ``per_expert``) to
                   ``chiplets``, with ``reduce`` and ``save`` set in its header. Backward: the same packets
                   carry the output gradient (and the token); the chiplet reads its saved activations.
``WaitCombined``   the root blocks until the COMBINE of every token of ``dispatch`` arrived.
``SaveActivations``  no root packet: the ``save`` bit of ``dispatch``'s packets; the chiplet writes
                   ``act(W1 x)`` to its group's DRAM (MEM_WRITE, from ``Protocol.activation_base``) inline, as
                   it computes each token, so it depends on ``dispatch`` alone, in every variant.
``WriteBack``      backward only: the chiplet writes the updated weights of ``(chiplet, slot)`` back to
                   the expert's image in DRAM (MEM_WRITE). Not part of the forward-only RTL root.
``Barrier``        root-internal: waits for its ``deps`` (the Baseline's phases). No packet.
``Return``         root -> host: ``micro_batch``'s outputs (forward) or input gradients (backward) of this
                   layer are complete. No packet.
=================  =====================================================================================

Inputs from other layers
------------------------
A schedule covers one layer; the step chains layers (forward 0..L-1, then backward L-1..0). A command that
carries a ``micro_batch`` m waits, besides its ``deps``, for m's input to this layer and phase: the previous
layer's ``Return`` of m (forward) or the next layer's (backward); ``-1`` means every micro-batch. A
``Barrier`` without deps waits for every input. A ``Load`` without deps waits only for its slot, which the
previous layer frees: that is the prefetch across layers.

Slots and rounds
----------------
A chiplet has ``slots`` weight slots (``cfg.hardware.sram_slots``). Its experts, heaviest first (activation
count), take slots ``0, 1, ...``; expert number ``j`` of the chiplet goes to slot ``j % slots`` in *round*
``j // slots``. When a chiplet has more experts than slots, round ``r + 1`` reloads the slots of round ``r``
after every token of round ``r`` has been combined (forward) or written back (backward). A token that needs
experts of two rounds on one chiplet is dispatched once per round, because a partial must be combined
before its slot can be reloaded.

Per group, loads go out round by round, and inside a round cluster by cluster, heaviest cluster first
(docs/paper.md, "heavier clusters load first"); inside a cluster, heaviest expert first. "Heaviest" is by the
activation counts of a *profile*: the routing the placement was built from (the paper profiles once, then
trains), since a step's own routing is not known before its loads go out. Without a profile the step's own
trace is used (``wafer_run.build_run`` places on the same trace it runs, so there the two are equal).

Variants (docs/paper.md, Table 4)
----------------------------
``baseline``  the same hardware, no optimisation (the paper's reading: "no overlap" at the root's phases):
              all attention, then per round all loads, a barrier, one dispatch per (chiplet, round) of all
              tokens, a barrier on all their combines; the next round's loads only after it; one replica
              per selected expert, no in-network reduction; the backward the same with write-backs as a
              last phase. The chiplet is A's: it computes each token as it arrives (no store-and-forward)
              and saves its activations inline, so the Baseline differs from A only by the barriers.
``A``         streaming: loads depend only on free slots (they overlap attention and compute), each
              micro-batch is dispatched as soon as its attention and its experts' weights are ready;
              still one replica per selected expert and no reduction.
``B``         A + one replica per destination chiplet (and round), with the chiplet's local sum and the
              switches' in-network reduction.
``C``         B on a clustered placement: the caller passes it; the schedule is built exactly as for B.

Serialisation: :meth:`Schedule.to_json` / :meth:`Schedule.from_json` (token arrays become lists).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import numpy as np

from .errors import ScheduleError
from .stats import activation_counts

__all__ = [
    "Command", "Load", "WaitLoaded", "Attention", "Dispatch", "WaitCombined", "SaveActivations", "WriteBack",
    "Barrier", "Return", "Schedule", "Variant", "VARIANTS", "PHASES", "COMMAND_KINDS", "build_schedule",
    "chiplet_load_order",
]

class Variant(enum.StrEnum):
    """The paper's configurations (Table 4; the module doc says how each is scheduled). A member compares and
    hashes as its name, so ``Variant.C == "C"``; :meth:`parse` checks a name."""

    BASELINE = "baseline"
    A = "A"
    B = "B"
    C = "C"

    @property
    def streaming(self) -> bool:
        """Loads overlap compute and each micro-batch goes out on its own (every variant but the Baseline's
        barriered phases)."""
        return self is not Variant.BASELINE

    @property
    def dedup(self) -> bool:
        """One replica per destination chiplet, reduced in the network (B and C)."""
        return self in (Variant.B, Variant.C)

    @property
    def clustered(self) -> bool:
        """Runs on the clustered placement (C)."""
        return self is Variant.C

    @classmethod
    def parse(cls, value, what: str = "variant") -> "Variant":
        try:
            return cls(value)
        except ValueError:
            raise ScheduleError(f"{what} must be one of {', '.join(cls)}, not {value!r}") from None


VARIANTS = tuple(Variant)
PHASES = ("forward", "backward")
FORMAT = "mozart-schedule"
VERSION = 2  # 2: Dispatch has no 'bulk' field (one Baseline: its chiplets stream)


@dataclass(eq=False)
class Command:
    """Base of every command: a unique ``id``, the ``deps`` that must complete first, and the ``phase``.

    Commands are plain (mutable) dataclasses because schedules hold hundreds of thousands of them; treat them
    as values and build changed copies with :func:`dataclasses.replace`.
    """

    KIND: ClassVar[str] = ""
    id: int
    deps: tuple[int, ...]
    phase: str

    def __post_init__(self) -> None:
        self.deps = tuple(map(int, self.deps))
        if self.phase not in PHASES:
            raise ScheduleError(f"command {self.id} ({self.KIND}): phase must be one of {', '.join(PHASES)}, "
                                f"not {self.phase!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else \
                list(value) if isinstance(value, tuple) else value
        return out


@dataclass(eq=False)
class SlotCommand(Command):
    """Base of the commands that move ``expert``'s weights between ``group``'s DRAM and ``(chiplet, slot)``
    (global chiplet id)."""

    group: int = 0
    chiplet: int = 0
    slot: int = 0
    expert: int = 0


@dataclass(eq=False)
class Load(SlotCommand):
    """Stream ``expert``'s weights from ``group``'s DRAM into ``(chiplet, slot)`` (global chiplet id)."""

    KIND: ClassVar[str] = "Load"


@dataclass(eq=False)
class WaitLoaded(Command):
    """Wait for the LOADED answer of Load ``load``."""

    KIND: ClassVar[str] = "WaitLoaded"
    load: int = -1


@dataclass(eq=False)
class Attention(Command):
    """Attention and router of ``micro_batch`` on the root (``tokens`` tokens; -1 = all micro-batches)."""

    KIND: ClassVar[str] = "Attention"
    micro_batch: int = 0
    tokens: int = 0


@dataclass(eq=False)
class Dispatch(Command):
    """Send ``tokens`` of ``micro_batch`` (-1: all) to ``chiplets`` for the resident ``experts``.

    ``pairs`` is the number of (token, expert) computations it causes; ``per_expert`` sends one replica per
    pair (Baseline, A) instead of one per token and chiplet; ``reduce`` asks the switch to sum the partials
    of a token; ``save`` makes the chiplet save activations (inline, as it computes each token). In every
    variant the chiplet computes each token as it arrives and returns it when computed.
    """

    KIND: ClassVar[str] = "Dispatch"
    micro_batch: int = 0
    group: int = 0
    chiplets: tuple[int, ...] = ()
    round: int = 0
    experts: tuple[int, ...] = ()
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    pairs: int = 0
    per_expert: bool = False
    reduce: bool = True
    save: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chiplets = tuple(map(int, self.chiplets))
        self.experts = tuple(map(int, self.experts))
        self.tokens = np.asarray(self.tokens, dtype=np.int32).reshape(-1)

    @property
    def replicas(self) -> int:
        """DISPATCH packets leaving the root for this command."""
        return self.pairs if self.per_expert else len(self.tokens) * len(self.chiplets)


@dataclass(eq=False)
class WaitCombined(Command):
    """Wait until every result of Dispatch ``dispatch`` is back at the root."""

    KIND: ClassVar[str] = "WaitCombined"
    dispatch: int = -1


@dataclass(eq=False)
class SaveActivations(Command):
    """The chiplets of Dispatch ``dispatch`` write its activations to their group's DRAM."""

    KIND: ClassVar[str] = "SaveActivations"
    dispatch: int = -1


@dataclass(eq=False)
class WriteBack(SlotCommand):
    """Write the updated weights of ``expert`` in ``(chiplet, slot)`` back to ``group``'s DRAM."""

    KIND: ClassVar[str] = "WriteBack"


@dataclass(eq=False)
class Barrier(Command):
    """Wait for all ``deps``."""

    KIND: ClassVar[str] = "Barrier"


@dataclass(eq=False)
class Return(Command):
    """``micro_batch``'s results of this layer and phase are complete."""

    KIND: ClassVar[str] = "Return"
    micro_batch: int = 0


COMMAND_KINDS: dict[str, type[Command]] = {cls.KIND: cls for cls in (
    Load, WaitLoaded, Attention, Dispatch, WaitCombined, SaveActivations, WriteBack, Barrier, Return)}


@dataclass(frozen=True, eq=False)
class Schedule:
    """One layer's commands (forward then backward) and what they were built for.

    Members
    -------
    commands : tuple of Command
        In issue order; ``commands[i].id == i`` for built schedules (ids need only be unique).
    layer, variant, micro_batches, slots, chiplets_per_group, tokens
        The layer index, the variant name, micro-batches per step, weight slots per chiplet, the tree shape
        and the tokens per step the schedule covers.
    """

    commands: tuple[Command, ...]
    layer: int
    variant: Variant
    micro_batches: int
    slots: int
    chiplets_per_group: int
    tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "commands", tuple(self.commands))
        object.__setattr__(self, "variant", Variant.parse(self.variant))

    @property
    def streaming(self) -> bool:
        """True unless Baseline: loads overlap compute, micro-batches go out on their own (``Variant.streaming``)."""
        return self.variant.streaming

    def phase(self, phase: str) -> list[Command]:
        return [c for c in self.commands if c.phase == phase]

    def of_kind(self, kind: type[Command], phase: str | None = None) -> list[Command]:
        return [c for c in self.commands if isinstance(c, kind) and (phase is None or c.phase == phase)]

    def replicas_per_token(self) -> float:
        """Dispatch replicas per token in the forward pass (the schedule's C_T)."""
        sent = sum(c.replicas for c in self.of_kind(Dispatch, "forward"))
        return sent / self.tokens if self.tokens else 0.0

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, "layer": self.layer, "variant": self.variant,
                "micro_batches": self.micro_batches, "slots": self.slots,
                "chiplets_per_group": self.chiplets_per_group, "tokens": self.tokens,
                "commands": [c.to_dict() for c in self.commands]}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Schedule":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"schedule must be valid JSON, not: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ScheduleError(f"schedule JSON must have format {FORMAT!r}, not "
                                f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
        if data.get("version") != VERSION:
            raise ScheduleError(f"schedule JSON version must be {VERSION}, not {data.get('version')!r}")
        commands = [_command_from_dict(i, c) for i, c in enumerate(data.get("commands", []))]
        try:
            return cls(commands, int(data["layer"]), data["variant"], int(data["micro_batches"]),
                       int(data["slots"]), int(data["chiplets_per_group"]), int(data["tokens"]))
        except KeyError as exc:
            raise ScheduleError(f"schedule JSON must have the key {exc.args[0]!r}") from None


def _command_from_dict(index: int, raw: Any) -> Command:
    if not isinstance(raw, dict):
        raise ScheduleError(f"commands[{index}] must be an object, not {raw!r}")
    kind = raw.get("kind")
    if kind not in COMMAND_KINDS:
        raise ScheduleError(f"commands[{index}].kind must be one of {', '.join(COMMAND_KINDS)}, not {kind!r}")
    cls = COMMAND_KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in raw.items() if k != "kind"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ScheduleError(f"commands[{index}] ({kind}) has no field {unknown[0]!r}; its fields are "
                            + ", ".join(sorted(known)))
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ScheduleError(f"commands[{index}] ({kind}) must have the fields id, deps and phase: {exc}") from None


# -- building ---------------------------------------------------------------------------------------------


def chiplet_load_order(counts: np.ndarray, e2c: np.ndarray, chiplets: int) -> list[np.ndarray]:
    """Each chiplet's experts, heaviest first (``counts`` = activations per expert; ties: lower id first)."""
    order = np.lexsort((np.arange(len(e2c)), -counts, e2c))
    bounds = np.searchsorted(e2c[order], np.arange(chiplets + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(chiplets)]


class _Builder:
    """Appends commands with consecutive ids."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def add(self, cls: type[Command], deps: Iterable[int] = (), **fields: Any) -> int:
        cid = len(self.commands)
        self.commands.append(cls(id=cid, deps=tuple(sorted(set(deps))), **fields))
        return cid


@dataclass
class _Layout:
    """What the builder derives once per layer: expert order, slots, rounds and token groupings."""

    per_chiplet: list[np.ndarray]      # experts of each chiplet, heaviest first
    group_order: list[list[tuple[int, int]]]  # per group: (chiplet, j) in load order
    slot_of: np.ndarray                # expert -> slot
    round_of: np.ndarray               # expert -> round
    index_of: np.ndarray               # expert -> its position j on its chiplet (heaviest first)
    slots: int
    rounds: int
    mb_bounds: np.ndarray              # token boundaries of the micro-batches


def _layout(cfg, e2c: np.ndarray, counts: np.ndarray, slots: int, micro_batches: int, tokens: int) -> _Layout:
    chiplets, per_group = cfg.chiplets, cfg.chiplets_per_group
    per_chiplet = chiplet_load_order(counts, e2c, chiplets)
    slot_of = np.zeros(len(e2c), dtype=np.int64)
    round_of = np.zeros(len(e2c), dtype=np.int64)
    index_of = np.zeros(len(e2c), dtype=np.int64)
    for experts in per_chiplet:
        j = np.arange(len(experts))
        slot_of[experts], round_of[experts], index_of[experts] = j % slots, j // slots, j
    weight = np.array([counts[e].sum() for e in per_chiplet])
    group_order = []
    for g in range(cfg.groups):
        members = range(g * per_group, (g + 1) * per_group)
        ranked = sorted(members, key=lambda c: (-weight[c], c))  # heavier clusters first
        entries = [(c, j) for c in ranked for j in range(len(per_chiplet[c]))]
        entries.sort(key=lambda cj: cj[1] // slots)  # stable: round-major, cluster order inside a round
        group_order.append(entries)
    rounds = int(round_of.max()) + 1 if len(round_of) else 1
    mb_bounds = (np.arange(micro_batches + 1) * tokens) // micro_batches
    return _Layout(per_chiplet, group_order, slot_of, round_of, index_of, slots, rounds, mb_bounds)


@dataclass
class _Work:
    """Token groupings of one layer: for each (micro-batch, chiplet, round), its tokens, experts and pairs."""

    tokens: dict[tuple[int, int, int], np.ndarray]
    experts: dict[tuple[int, int, int], tuple[int, ...]]
    pairs: dict[tuple[int, int, int], int]


def _group_work(experts: np.ndarray, e2c: np.ndarray, layout: _Layout, micro_batches: int | None) -> _Work:
    """Group (token, expert) pairs by (micro-batch, chiplet, round); ``micro_batches=None``: one bulk batch."""
    tokens, k = experts.shape
    num_experts = len(e2c)
    tok = np.repeat(np.arange(tokens, dtype=np.int64), k)
    flat = experts.reshape(-1).astype(np.int64)
    if micro_batches is None:
        mb = np.zeros_like(tok)
    else:
        mb = np.searchsorted(layout.mb_bounds, tok, side="right") - 1
    nchip = int(e2c.max()) + 1 if len(e2c) else 1
    key = (mb * nchip + e2c[flat]) * layout.rounds + layout.round_of[flat]
    # One sort on (key, token) finds each group's distinct tokens; a bincount its experts and pairs.
    order = np.argsort(key * tokens + tok, kind="stable")
    key_s, tok_s = key[order], tok[order]
    new_key = np.r_[True, key_s[1:] != key_s[:-1]]
    first = new_key | np.r_[True, tok_s[1:] != tok_s[:-1]]
    keys = key_s[new_key]
    uniq_keys, uniq_tok = key_s[first], tok_s[first].astype(np.int32)
    bounds = np.searchsorted(uniq_keys, keys, side="left")
    bounds = np.r_[bounds, len(uniq_keys)]
    group = np.cumsum(new_key) - 1  # group index of each sorted pair
    pairs = np.bincount(group, minlength=len(keys))
    used = np.bincount(group * num_experts + flat[order], minlength=len(keys) * num_experts)
    used = used.reshape(len(keys), num_experts) > 0
    work = _Work({}, {}, {})
    for i, kk in enumerate(keys.tolist()):
        r = kk % layout.rounds
        c = (kk // layout.rounds) % nchip
        m = kk // layout.rounds // nchip
        ident = (m if micro_batches is not None else -1, c, r)
        work.tokens[ident] = uniq_tok[bounds[i]:bounds[i + 1]]
        work.experts[ident] = tuple(np.flatnonzero(used[i]).tolist())
        work.pairs[ident] = int(pairs[i])
    return work


def build_schedule(cfg, placement, trace, layer: int, variant: Variant | str, *, slots: int | None = None,
                   micro_batches: int | None = None, profile=None) -> Schedule:
    """Build the forward and backward schedule of MoE ``layer``.

    Parameters
    ----------
    cfg : WaferConfig
    placement : Placement
        Expert -> chiplet map (one layer, or one per trace layer). Variant C expects a clustered one.
    trace : Trace
        One training step's routing; all its tokens form the step (``trace.tokens``).
    layer : int
        Layer of ``trace`` (and of ``placement`` when it has more than one layer).
    variant : {"baseline", "A", "B", "C"}
    slots : int, optional
        Weight slots per chiplet; default ``cfg.hardware.sram_slots``.
    micro_batches : int, optional
        Default ``cfg.training.micro_batches``.
    profile : Trace, optional
        The routing the load order (heavier clusters and experts first) comes from, with ``trace``'s layers
        and experts; default ``trace`` itself.

    Returns
    -------
    Schedule
    """
    variant = Variant.parse(variant)
    slots = cfg.hardware.sram_slots if slots is None else slots
    micro_batches = cfg.training.micro_batches if micro_batches is None else micro_batches
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ScheduleError(f"slots must be a positive integer, not {slots!r}")
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
        raise ScheduleError(f"micro_batches must be a positive integer, not {micro_batches!r}")
    trace.check_fits(cfg)
    placement.validate(cfg)
    if not 0 <= layer < trace.layers:
        raise ScheduleError(f"layer must be in 0..{trace.layers - 1}, not {layer!r}")
    if trace.tokens < micro_batches:
        raise ScheduleError(f"the trace must have at least micro_batches ({micro_batches}) tokens, not "
                            f"{trace.tokens}")
    e2c = placement.expert_to_chiplet[layer if placement.layers > 1 else 0].astype(np.int64)
    if profile is not None and (profile.layers, profile.num_experts) != (trace.layers, trace.num_experts):
        raise ScheduleError(f"the profile must have the trace's {trace.layers} layers and {trace.num_experts} "
                            f"experts, not {profile.layers} and {profile.num_experts}")
    counts = activation_counts(trace, layer)
    experts = trace.experts[layer]
    order_counts = counts if profile is None else activation_counts(profile, layer)
    layout = _layout(cfg, e2c, order_counts, slots, micro_batches, trace.tokens)
    bulk = not variant.streaming
    work = _group_work(experts, e2c, layout, None if bulk else micro_batches)
    b = _Builder()
    builder = _BulkBuilder if bulk else _StreamBuilder
    builder(b, cfg, layout, work, counts, variant, micro_batches).build()
    return Schedule(b.commands, layer, variant, micro_batches, slots, cfg.chiplets_per_group, trace.tokens)


class _PhaseBuilder:
    """Shared by both builders: loads, dispatches and their bookkeeping for one phase."""

    def __init__(self, b: _Builder, cfg, layout: _Layout, work: _Work, counts: np.ndarray, variant: str,
                 micro_batches: int):
        self.b, self.cfg, self.layout, self.work = b, cfg, layout, work
        self.counts, self.variant, self.micro_batches = counts, variant, micro_batches
        self.dedup = variant.dedup
        self.mbs = list(range(micro_batches)) if variant.streaming else [-1]

    def mb_tokens(self, mb: int) -> int:
        bounds = self.layout.mb_bounds
        return int(bounds[-1]) if mb < 0 else int(bounds[mb + 1] - bounds[mb])

    def load(self, phase: str, c: int, j: int, deps: Iterable[int]) -> tuple[int, int]:
        """A Load and its WaitLoaded for expert number ``j`` of chiplet ``c``; returns both ids."""
        e = int(self.layout.per_chiplet[c][j])
        g = c // self.cfg.chiplets_per_group
        lid = self.b.add(Load, deps, phase=phase, group=g, chiplet=c, slot=int(self.layout.slot_of[e]), expert=e)
        wid = self.b.add(WaitLoaded, [lid], phase=phase, load=lid)
        return lid, wid

    def needed(self, phase: str, c: int, j: int) -> bool:
        # Backward needs only experts that saw tokens (the others have no gradient); forward loads before
        # routing is known (prefetch), so it loads every expert.
        return phase == "forward" or self.counts[self.layout.per_chiplet[c][j]] > 0

    def dispatch(self, phase: str, mb: int, c: int, r: int, deps: Iterable[int]) -> int | None:
        ident = (mb, c, r)
        if ident not in self.work.tokens:
            return None
        return self.b.add(Dispatch, deps, phase=phase, micro_batch=mb, group=c // self.cfg.chiplets_per_group,
                          chiplets=(c,), round=r, experts=self.work.experts[ident], tokens=self.work.tokens[ident],
                          pairs=self.work.pairs[ident], per_expert=not self.dedup, reduce=self.dedup,
                          save=phase == "forward")


class _StreamBuilder(_PhaseBuilder):
    """Variants A, B and C: loads wait only for their slot; micro-batches stream."""

    def build(self) -> None:
        for phase in PHASES:
            self.phase(phase)

    def phase(self, phase: str) -> None:
        b, lay = self.b, self.layout
        mbs = self.mbs if phase == "forward" else self.mbs[::-1]
        attention = {}
        if phase == "forward":
            for mb in mbs:
                attention[mb] = b.add(Attention, phase=phase, micro_batch=mb, tokens=self.mb_tokens(mb))
        waits: dict[tuple[int, int], int] = {}        # (chiplet, j) -> WaitLoaded id
        release: dict[tuple[int, int], list[int]] = {}  # (chiplet, round) -> what frees its slots
        combined: dict[int, list[int]] = {mb: [] for mb in mbs}
        dispatched: dict[tuple[int, int], list[int]] = {}  # (chiplet, round) -> WaitCombined ids
        for r in range(lay.rounds):
            # Loads of round r, per group in the heavy-first order; a reload waits for the previous round.
            for entries in lay.group_order:
                for c, j in entries:
                    if j // lay.slots != r or not self.needed(phase, c, j):
                        continue
                    deps = release.get((c, r - 1), []) if r else []
                    waits[(c, j)] = self.load(phase, c, j, deps)[1]
            # Dispatches of round r: per micro-batch, chiplets in load order (heavier first).
            for mb in mbs:
                for entries in lay.group_order:
                    for c in dict.fromkeys(c for c, j in entries):
                        ident = (mb, c, r)
                        if ident not in self.work.tokens:
                            continue
                        deps = [waits[(c, int(lay.index_of[e]))] for e in self.work.experts[ident]]
                        if phase == "forward":
                            deps.append(attention[mb])
                        did = self.dispatch(phase, mb, c, r, deps)
                        wc = b.add(WaitCombined, [did], phase=phase, dispatch=did)
                        if phase == "forward":
                            b.add(SaveActivations, [did], phase=phase, dispatch=did)
                        combined[mb].append(wc)
                        dispatched.setdefault((c, r), []).append(wc)
            # What frees each chiplet's round-r slots: forward, its combines; backward, its write-backs.
            for c in range(self.cfg.chiplets):
                used = dispatched.get((c, r), [])
                loaded = [waits[(c, j)] for j in self.round_indices(c, r) if (c, j) in waits]
                if phase == "forward":
                    release[(c, r)] = used + loaded
                else:
                    release[(c, r)] = [self.write_back(c, j, used or loaded) for j in self.round_indices(c, r)
                                       if (c, j) in waits]
        for mb in mbs:
            if phase == "forward":
                b.add(Return, combined[mb] or [attention[mb]], phase=phase, micro_batch=mb)
            else:
                att = b.add(Attention, combined[mb], phase=phase, micro_batch=mb, tokens=self.mb_tokens(mb))
                b.add(Return, [att], phase=phase, micro_batch=mb)

    # -- helpers shared with the bulk builder ------------------------------------------------------------
    def round_indices(self, c: int, r: int) -> list[int]:
        return [j for j, e in enumerate(self.layout.per_chiplet[c]) if self.layout.round_of[e] == r]

    def write_back(self, c: int, j: int, deps: Iterable[int]) -> int:
        e = int(self.layout.per_chiplet[c][j])
        return self.b.add(WriteBack, deps, phase="backward", group=c // self.cfg.chiplets_per_group, chiplet=c,
                          slot=int(self.layout.slot_of[e]), expert=e)


class _BulkBuilder(_StreamBuilder):
    """The Baseline: per round, all loads, then all dispatches, each phase closed by a barrier; the root
    overlaps nothing. Saves are inline (the chiplet's), as in :class:`_StreamBuilder`."""

    def phase(self, phase: str) -> None:
        b, lay = self.b, self.layout
        if phase == "forward":
            gate = b.add(Barrier, [b.add(Attention, phase=phase, micro_batch=-1, tokens=self.mb_tokens(-1))],
                         phase=phase)
        else:
            gate = b.add(Barrier, phase=phase)  # no deps: waits for the whole backward input
        combined = []
        for r in range(lay.rounds):
            waits: dict[tuple[int, int], int] = {}
            for entries in lay.group_order:
                for c, j in entries:
                    if j // lay.slots == r and self.needed(phase, c, j):
                        waits[(c, j)] = self.load(phase, c, j, [gate])[1]
            gate = b.add(Barrier, waits.values(), phase=phase)
            wcs = []
            for entries in lay.group_order:
                for c in dict.fromkeys(c for c, j in entries):
                    did = self.dispatch(phase, -1, c, r, [gate])
                    if did is not None:
                        wcs.append(b.add(WaitCombined, [did], phase=phase, dispatch=did))
                        if phase == "forward":  # inline: the chiplet saves each token as it computes it
                            b.add(SaveActivations, [did], phase=phase, dispatch=did)
            combined += wcs
            gate = b.add(Barrier, wcs or [gate], phase=phase)
            if phase == "backward":
                wbs = [self.write_back(c, j, [gate]) for (c, j) in waits]
                gate = b.add(Barrier, wbs or [gate], phase=phase)
        if phase == "backward":
            gate = b.add(Barrier, [b.add(Attention, [gate], phase=phase, micro_batch=-1,
                                         tokens=self.mb_tokens(-1))], phase=phase)
        b.add(Return, [gate], phase=phase, micro_batch=-1)
