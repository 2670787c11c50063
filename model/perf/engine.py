"""The event-driven executor: runs schedules command by command over timed, contended resources.

Resources are links (per direction), each group DRAM's channels, each group's SSD-tier device (layers beyond the
DRAM's capacity), every chiplet's compute, each switch's reducer, the root's compute, the root's DRAM and, when the
timing has one, the root's input port that all up links share (``root_port_bytes_per_cycle``: the RTL root's mux).
Each keeps its busy intervals (:class:`~mozart.model.perf.timeline.Timeline`). Commands are taken in the order they
become ready (a heap on ready time); each places its work at the earliest gap that all the resources of a stage
share, so a command processed later may still use a gap left before an earlier command's reservation. A command is
ready when its ``deps`` completed and, per :mod:`mozart.model.schedule`, its micro-batch's input arrived (commands
with a ``micro_batch``), or its slot was freed by the previous layer (``Load``).

A command is a chain of *stages*, each a set of resources busy for ``total`` cycles while ``items``
(packets or tokens) pass through. A dispatch overlaps its stages item by item in every variant (the chiplet
computes each token as it arrives: the Baseline differs only by its schedule's barriers); the Baseline's
attention runs its stages one after another. A stage holds its resources for its own work from its start
(work-conserving).

- ``Load`` / ``WriteBack``: a DRAM stream, ``latency + bytes / min(channel, links)`` on a channel (or the SSD
  tier's device, for layers from ``timing.hbm_expert_layers`` on) and the weight path, cut into bursts that
  each take the next common gap (so streams and packets interleave).
- ``Dispatch``: down (replicas x packet over the dispatch path), [backward: restore saved activations from
  DRAM], compute (``timing.dispatch_cycles``: the experts' GEMMs on the systolic arrays, or MACs / MAC rate
  on the scaled configs, at least weights / SRAM rate, plus tokens x overhead, on the chiplet), up
  (partials; on the tree with ``reduce``: leaf link, switch reducer, then the root link with the token's
  reduced partials, attributed to the dispatches of a (micro-batch, group, round) in proportion to their
  tokens; every transfer into the root also through the root's input port, if any).
- ``SaveActivations``: ``pairs x saved elements`` as a stream over the write path and a DRAM channel, written
  as its dispatch's compute produces it (the chiplet saves inline): the stream's pieces are produced evenly
  over the compute, each taking the DRAM's next free gap once it exists.
- ``Attention``: the root DRAM (layer weights on the phase's first micro-batch, saved activations per token,
  updated weights on the backward's last) and the root compute (``timing.attention_cycles``). A scaled
  workload has no attention: only the root's time ``timing.attention_cycles`` gives (the RTL timing's stand-in
  for the host, :class:`~mozart.model.perf.rtl.RtlTiming`; 0 otherwise).

Every run also counts the MACs and the bytes moved per resource kind (``traffic``, priced by :mod:`.energy`).
The state of the layer-phase being run is one ``_PhaseRun``; a command's stages return their ends.

Two modes. ``"aggregate"`` treats a dispatch stage as one block with the classic pipeline recurrence
(``start_s = max(gap_s, start_{s-1} + item_{s-1})``, ``end_s = max(start_s + total_s, end_{s-1} + item_s)``)
and cuts streams into 16 bursts. ``"token"`` sends every token of a dispatch through every stage with its
own replica, pair and partial counts, each packet in its own gap, and cuts streams into 64 bursts. Both
share everything else.
"""

from __future__ import annotations

import heapq
import math
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, ScheduleError
from .energy import Traffic
from .timeline import Timeline, common_gap
from ..schedule import Attention, Barrier, Dispatch, Load, Return, SaveActivations, Schedule, WriteBack

__all__ = ["Engine", "Record", "MODES"]

MODES = ("aggregate", "token")
_STREAM_PIECES = {"aggregate": 16, "token": 64}  # pieces a DRAM stream is cut into, per mode


class Record(NamedTuple):
    """One busy interval of one resource (kept when the engine records)."""

    category: str   # attention | expert | dispatch | weights | saving
    resource: tuple
    start: float
    end: float
    layer: int
    phase: str
    nbytes: float = 0.0  # bytes the interval moves over the resource (links and DRAM); 0 for compute


@dataclass
class _Stage:
    resources: tuple
    total: float
    items: int
    latency: float = 0.0
    category: str = "dispatch"
    per_item: object = None  # token mode: cycles of each item (a DRAM stream: its piece, once)
    nbytes: float = 0.0  # bytes moved over each of the resources (transfers and DRAM streams)


@dataclass
class Engine:
    """Executes schedules layer-phase by layer-phase, carrying resource, slot and micro-batch state.

    Parameters
    ----------
    timing : HardwareTiming
    network : TreeNetwork or MeshNetwork
    workload : Workload
    mode : {"aggregate", "token"}
    record : bool
        Keep a :class:`Record` per stage (for breakdowns and Gantt charts), and each command's ready and done
        times in ``command_times`` (command id -> (ready, done)); costs time.
    """

    timing: object
    network: object
    workload: object
    mode: str = "aggregate"
    record: bool = False
    slot_free: dict = field(default_factory=lambda: defaultdict(float))
    inputs: list = field(default_factory=list)
    records: list = field(default_factory=list)
    command_times: dict = field(default_factory=dict)  # when recording: command id -> (ready, done) of the last run
    end: float = 0.0
    _rates: dict = field(default_factory=dict)
    timelines: dict = field(default_factory=lambda: defaultdict(Timeline))  # resource -> busy intervals
    traffic: Traffic = field(default_factory=Traffic)  # MACs and bytes moved, for the step's energy
    _now: "_PhaseRun | None" = field(default=None, init=False, repr=False)  # the layer-phase being run
    #: dispatch id -> start and end of its expert compute, in the layer-phase being run
    compute_spans: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, schedule: Schedule, phase: str, experts: np.ndarray) -> None:
        """Execute ``phase`` of ``schedule``; ``experts`` is the layer's ``[tokens, k]`` routing."""
        plan = _plan(schedule, phase, experts.shape[0])
        if not self.inputs:
            self.inputs = [0.0] * schedule.micro_batches
        self._now = _PhaseRun(schedule.layer, phase, schedule.streaming, phase == "backward", experts, plan)
        cmds, deps, children, execute = plan.cmds, plan.deps, plan.children, self._executors
        n = len(cmds)
        done = [0.0] * n
        waiting = [len(d) for d in deps]
        heap = [(self._ready(plan, i, 0.0), i) for i in range(n) if not deps[i]]
        heapq.heapify(heap)
        outputs = list(self.inputs)
        finished = 0
        while heap:
            ready, i = heapq.heappop(heap)
            cmd = cmds[i]
            end = done[i] = execute.get(type(cmd), _sync)(cmd, ready)
            finished += 1
            if self.record:
                self.command_times[cmd.id] = (ready, end)
            if plan.returns[i]:
                if cmd.micro_batch < 0:
                    outputs = [end] * len(outputs)
                else:
                    outputs[cmd.micro_batch] = end
            for child in children[i]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(heap, (self._ready(plan, child, max([done[d] for d in deps[child]])), child))
        if finished != n:
            raise ScheduleError(f"schedule layer {schedule.layer} {phase}: {n - finished} commands never became ready "
                              f"(validate the schedule)")
        slot_free = self.slot_free
        for i, key in plan.slot_users:
            if done[i] > slot_free[key]:
                slot_free[key] = done[i]
        self.inputs = outputs
        self.end = max(self.end, max(done, default=0.0))

    def _ready(self, plan: "_Plan", i: int, ready: float) -> float:
        mb = plan.mb[i]
        if mb is not None:
            wait = max(self.inputs) if mb < 0 else self.inputs[mb]
            if wait > ready:
                ready = wait
        slot = plan.slot[i]
        if slot is not None and self.slot_free[slot] > ready:
            ready = self.slot_free[slot]
        return ready

    @cached_property
    def _executors(self) -> dict:
        """Command handlers by command type; the others (waits, barriers, returns) only synchronise."""
        return {Load: self._load, WriteBack: self._write_back, SaveActivations: self._save,
                Attention: self._attention, Dispatch: self._dispatch}

    # -- commands --------------------------------------------------------------------------------------------
    def _load(self, cmd: Load, ready: float) -> float:
        return self._weight_stream(ready, cmd.group, self.network.weight_path(cmd.chiplet))

    def _write_back(self, cmd: WriteBack, ready: float) -> float:
        return self._weight_stream(ready, cmd.group, self.network.write_path(cmd.chiplet))

    def _weight_stream(self, ready: float, group: int, path: tuple) -> float:
        """An expert's weights to or from the group's DRAM, or from the slow tier for layers beyond the
        DRAM's capacity (``timing.hbm_expert_layers``)."""
        t = self.timing
        if t.hbm_expert_layers is not None and self._now.layer >= t.hbm_expert_layers:
            return self._dram_stream(ready, group, path, self._weight_bytes(), tier="ssd")
        return self._dram_stream(ready, group, path, self._weight_bytes())

    def _weight_bytes(self) -> float:
        return self.workload.expert_weight_elements * self.timing.weight_bytes

    def _channel(self, group: int) -> tuple:
        """The group DRAM channel that frees first."""
        best, when = None, None
        for ch in range(self.timing.dram_channels):
            key = ("dram", group, ch)
            ends = self.timelines[key].ends
            free = ends[-1] if ends else 0.0
            if when is None or free < when:
                best, when = key, free
        return best

    def _path_rate(self, path: tuple, dram: bool = False, tier: str = "dram") -> float:
        key = (path, dram, tier)
        rate = self._rates.get(key)
        if rate is None:
            rates = [self.network.link_rate(link) for link in path]
            if dram:
                t = self.timing
                rates.append(t.channel_bytes_per_cycle if tier == "dram" else t.overflow_bytes_per_cycle)
            rate = self._rates[key] = min(rates)
        return rate

    def _dram_stream(self, ready: float, group: int, path: tuple, nbytes: float, category: str = "weights",
                     tier: str = "dram", produced_until: float | None = None) -> float:
        """A stream between ``path``'s chiplet and the group's DRAM channel (``tier="dram"``) or its slow-tier
        device (``"ssd"``: one channel, ``overflow_bytes_per_cycle``). ``produced_until``: the data is produced
        evenly from ``ready`` until then (a piece can go no sooner than it exists)."""
        t = self.timing
        rate = self._path_rate(path, dram=True, tier=tier)
        latency = t.dram_latency_cycles + len(path) * t.hop_cycles
        resources = ((self._channel(group) if tier == "dram" else ("ssd", group)),) + path
        # A stream is a train of bursts: each takes the next common gap, so streams and packets interleave
        # on shared links. The per-token mode cuts it into up to 64 pieces, the aggregated mode into 8.
        pieces = _STREAM_PIECES[self.mode]
        chunks = max(1, min(pieces, math.ceil(nbytes / (t.flit_bytes * t.burst_flits))))
        stage = _Stage(resources, nbytes / rate, chunks, latency, category, (nbytes / rate / chunks,),
                       nbytes)
        pace = 0.0 if produced_until is None else max(0.0, produced_until - ready) / chunks
        return self._stream(ready, stage, pace)

    def _save(self, cmd: SaveActivations, ready: float) -> float:
        """The chiplets write the activations as they compute them: the stream's pieces are produced evenly over
        the dispatch's compute, each written once it exists."""
        disp = self._now.plan.dispatches[cmd.dispatch]
        nbytes = disp.pairs * self.workload.saved_elements_per_pair * self.timing.act_bytes
        compute_start, compute_end = self.compute_spans[cmd.dispatch]
        return self._dram_stream(compute_start, disp.group, self.network.write_path(disp.chiplets[0]), nbytes,
                                 "saving", produced_until=compute_end)

    def _attention(self, cmd: Attention, ready: float) -> float:
        w, t, now = self.workload, self.timing, self._now
        # a scaled workload has no root weights, saved activations or MACs: only the host's stand-in, if any
        nbytes = cmd.tokens * w.root_saved_elements_per_token * t.act_bytes
        if cmd.id == now.plan.first_attention:
            nbytes += w.root_weight_elements * t.weight_bytes
        if now.backward and cmd.id == now.plan.last_attention:
            nbytes += w.root_weight_elements * t.weight_bytes
        self.traffic.macs += cmd.tokens * w.root_macs_per_token(now.backward)
        cycles = t.attention_cycles(cmd.tokens, w, now.backward)
        stages = ([_Stage((("root-dram",),), nbytes / t.attention_dram_bytes_per_cycle, cmd.tokens,
                          t.dram_latency_cycles, "weights", nbytes=nbytes)] if nbytes else []) \
            + ([_Stage((("root",),), cycles, cmd.tokens, 0.0, "attention")] if cycles else [])
        return self._pipeline(ready, stages, bulk=not now.streaming)[-1][1] if stages else ready

    def _dispatch(self, d: Dispatch, ready: float) -> float:
        w, t, net, now = self.workload, self.timing, self.network, self._now
        chiplet = d.chiplets[0]
        tokens = len(d.tokens)
        if self.mode == "token":
            hits = np.isin(now.experts[d.tokens], np.asarray(d.experts)).sum(axis=1).astype(float)
        else:
            hits = None
        replicas_i = hits if d.per_expert else None
        down_bytes = t.packet_bytes(w.dispatch_elements(now.backward) * t.act_bytes)
        partial_bytes = t.packet_bytes(w.d_model * t.partial_bytes)
        down_path = net.dispatch_path(chiplet)
        stages = [self._transfer(down_path, d.replicas, down_bytes, replicas_i, tokens)]
        if now.backward:
            restore = d.pairs * w.saved_elements_per_pair * t.act_bytes
            path = net.weight_path(chiplet)
            rate = self._path_rate(path, dram=True)
            stages.append(_Stage((self._channel(d.group),) + path, restore / rate, tokens,
                                 t.dram_latency_cycles, "saving",
                                 None if hits is None else hits * w.saved_elements_per_pair * t.act_bytes / rate,
                                 restore))
        expert_tokens = self._expert_tokens(d) if t.expert_arrays is not None else d.experts
        compute = t.dispatch_cycles(expert_tokens, d.pairs, tokens, w, now.backward)
        self.traffic.macs += d.pairs * w.expert_macs_per_pair(now.backward)
        self.traffic.sram_bytes += len(d.experts) * self._weight_bytes()
        per_token = None
        if hits is not None:  # each token's share: its pairs' part of the MAC- or SRAM-bound time
            share = (compute - tokens * t.token_overhead_cycles) / max(d.pairs, 1)
            per_token = hits * share + t.token_overhead_cycles
        compute_stage = len(stages)
        stages.append(_Stage((("chip", chiplet),), compute, tokens, 0.0, "expert", per_token))
        partials = d.pairs if d.per_expert else tokens
        if net.reduces and d.reduce:
            share = now.plan.share.get(d.id, 1.0)
            stages.append(self._transfer(net.leaf_up(chiplet), partials, partial_bytes, None, tokens))
            red = partials * w.d_model * t.partial_bytes / t.reduce_bytes_per_cycle
            stages.append(_Stage((("reduce", d.group),), red, tokens, 0.0, "dispatch",
                                 None if hits is None else np.full(tokens, red / max(tokens, 1))))
            stages.append(self._transfer(net.root_up(d.group), partials * share, partial_bytes,
                                         None if hits is None else np.full(tokens, share), tokens, net.root_port))
        else:
            stages.append(self._transfer(net.combine_path(chiplet), partials, partial_bytes, replicas_i, tokens,
                                         net.root_port))
        run = self._pipeline_tokens if self.mode == "token" else self._pipeline
        spans = run(ready, stages)
        self.compute_spans[d.id] = spans[compute_stage]
        return spans[-1][1]

    def _expert_tokens(self, d: Dispatch) -> np.ndarray:
        """Tokens of the dispatch per expert of ``d.experts`` (each expert runs on its own tokens). Cached in
        the plan: a schedule is always run on the routing it was built from."""
        cache = self._now.plan.expert_tokens
        if d.id not in cache:
            counts = np.bincount(self._now.experts[d.tokens].ravel(), minlength=max(d.experts) + 1)
            cache[d.id] = counts[list(d.experts)].tolist()
        return cache[d.id]

    def _transfer(self, path: tuple, packets: float, packet_bytes: float, per_token_packets, tokens: int,
                  port: tuple = ()) -> _Stage:
        """A transfer of ``packets`` packets over ``path``, and through ``port`` (the root's input port, which
        adds no hop); in token mode each token sends its own count."""
        t = self.timing
        rate = self._path_rate(path + port)
        per_item = None
        if self.mode == "token":
            counts = np.ones(tokens) if per_token_packets is None else np.asarray(per_token_packets, dtype=float)
            per_item = counts * packet_bytes / rate
        return _Stage(path + port, packets * packet_bytes / rate, max(int(round(packets)), 1),
                      len(path) * t.hop_cycles, "dispatch", per_item, packets * packet_bytes)

    # -- stage chains ----------------------------------------------------------------------------------------
    def _pipeline(self, ready: float, stages: list[_Stage], bulk: bool = False) -> list[tuple[float, float]]:
        """The stages as one block each with the pipeline recurrence (``bulk``: one after another, as the
        Baseline's attention runs); returns each stage's start and end."""
        timelines = self.timelines
        prev_start = prev_end = ready
        prev_item = 0.0
        first = True
        ends = []
        for st in stages:
            item = st.total / st.items if st.items > 1 else st.total
            earliest = ready if first else prev_end if bulk else prev_start + prev_item
            start = common_gap([timelines[r] for r in st.resources], earliest, st.total + st.latency)
            if first or bulk:
                end = start + st.total + st.latency
                first = False
            else:
                end = max(start + st.total, prev_end + item) + st.latency
            self._reserve(st, start, end, st.total + st.latency)
            prev_start, prev_end, prev_item = start, end, item + st.latency
            ends.append((start, end))
        return ends

    def _stream(self, ready: float, st: _Stage, pace: float = 0.0) -> float:
        """A DRAM stream's pieces, each at the earliest common gap after the previous one, and piece ``j`` no
        sooner than ``ready + (j + 1) * pace`` (its data produced)."""
        timelines = [self.timelines[r] for r in st.resources]
        t, first, left = ready, None, st.total
        piece = float(st.per_item[0])
        produced = ready
        while left > 1e-9:
            if pace:
                produced += pace
                t = max(t, produced)
            start = common_gap(timelines, t, min(piece, left))
            first = start if first is None else first
            # Fast path: the rest fits in one gap (the usual case), so it is one reservation.
            size = (left if not pace and all(tl.is_free(start, start + left) for tl in timelines)
                    else min(piece, left))
            for tl in timelines:
                tl.occupy(start, start + size)
            t, left = start + size, left - size
        self._reserve(st, first if first is not None else ready, t + st.latency, st.total)
        return t + st.latency

    def _pipeline_tokens(self, ready: float, stages: list[_Stage]) -> list[tuple[float, float]]:
        """Every token through every stage; each takes the earliest common gap of its stage's resources.
        Returns each stage's start (its first token's) and end (its last token's)."""
        n = len(stages[-1].per_item) if stages[-1].per_item is not None else stages[0].items
        arrive = [ready] * n
        ends = []
        for st in stages:
            timelines = [self.timelines[r] for r in st.resources]
            d = st.per_item if st.per_item is not None else np.full(n, st.total / max(n, 1))
            first = None
            for i in range(n):
                start = common_gap(timelines, arrive[i], float(d[i]))
                for tl in timelines:
                    tl.occupy(start, start + float(d[i]))
                first = start if first is None else first
                arrive[i] = start + float(d[i]) + st.latency
            start = first if first is not None else ready
            ends.append((start, max(arrive, default=ready)))
            self._reserve(st, start, ends[-1][1], float(d.sum()))
        return ends

    def _reserve(self, st: _Stage, start: float, end: float, work: float) -> None:
        """Hold the stage's resources for its ``work`` from ``start`` (work-conserving: when upstream
        throttles the stage, its items trickle in until ``end``, and other commands fill the gaps)."""
        if st.per_item is None:  # per-token stages occupied their gaps token by token
            for r in st.resources:
                self.timelines[r].occupy(start, start + work)
        if st.nbytes:
            for r in st.resources:
                self.traffic.add_moved(r, st.nbytes)
        if self.record:
            for r in st.resources:
                self.records.append(Record(st.category, r, start, start + work, self._now.layer, self._now.phase,
                                           st.nbytes))


def _sync(cmd, ready: float) -> float:
    """WaitLoaded, WaitCombined, Barrier, Return: synchronisation only, no time."""
    return ready


@dataclass
class _PhaseRun:
    """What the commands of the layer-phase being run share (set by :meth:`Engine.run`)."""

    layer: int
    phase: str
    streaming: bool
    backward: bool
    experts: np.ndarray           # the layer's [tokens, k] routing
    plan: "_Plan"


@dataclass
class _Plan:
    """What the engine needs of one schedule phase, independent of timing and network (built once)."""

    cmds: list
    deps: list
    children: list
    returns: list     # the command is a Return
    mb: list          # micro-batch whose input the command waits for (-1: all), or None
    slot: list        # (chiplet, slot) a Load waits for, or None
    slot_users: list  # (command index, (chiplet, slot)) pairs: the command holds the slot until it ends
    first_attention: int | None
    last_attention: int | None
    dispatches: dict
    share: dict       # reducing dispatch id -> its share of the reduced (token, group) results
    expert_tokens: dict = field(default_factory=dict)  # dispatch id -> tokens per expert (filled by the engine)


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _plan(schedule: Schedule, phase: str, tokens: int) -> _Plan:
    cached = _PLANS.setdefault(schedule, {})
    if phase not in cached:
        cached[phase] = _build_plan(schedule, phase, tokens)
    return cached[phase]


def _build_plan(schedule: Schedule, phase: str, tokens: int) -> _Plan:
    cmds = [c for c in schedule.commands if c.phase == phase]
    index = {c.id: i for i, c in enumerate(cmds)}
    deps = [[index[d] for d in c.deps] for c in cmds]
    children = [[] for _ in cmds]
    for i, ds in enumerate(deps):
        for d in ds:
            children[d].append(i)
    returns = [isinstance(c, Return) for c in cmds]
    mb = [getattr(c, "micro_batch", None) for c in cmds]
    for i, c in enumerate(cmds):
        if isinstance(c, Barrier) and not c.deps:
            mb[i] = -1  # a barrier without deps waits for every input
    slot = [(c.chiplet, c.slot) if isinstance(c, Load) else None for c in cmds]
    slot_of = {(c.chiplet, c.expert): (c.chiplet, c.slot) for c in cmds if isinstance(c, Load)}
    users = [(i, (c.chiplet, c.slot)) for i, c in enumerate(cmds) if isinstance(c, (Load, WriteBack))]
    users += [(i, slot_of[(ch, e)]) for i, c in enumerate(cmds) if isinstance(c, Dispatch)
              for ch in c.chiplets for e in c.experts if (ch, e) in slot_of]
    attention = [c.id for c in cmds if isinstance(c, Attention)]
    dispatches = {c.id: c for c in cmds if isinstance(c, Dispatch)}
    return _Plan(cmds, deps, children, returns, mb, slot, users, attention[0] if attention else None,
                 attention[-1] if attention else None, dispatches, _root_shares(list(dispatches.values()), tokens))


def _root_shares(dispatches: list[Dispatch], tokens: int) -> dict[int, float]:
    """Share of the reduced (token, group) results each reducing dispatch sends up the root link: the
    distinct tokens of its (micro-batch, group, round) over the tokens of all its dispatches."""
    sets = defaultdict(list)
    for d in dispatches:
        if d.reduce:
            sets[(d.micro_batch, d.group, d.round)].append(d)
    sets = list(sets.values())
    if not sets:
        return {}
    codes = np.concatenate([i * tokens + d.tokens.astype(np.int64) for i, members in enumerate(sets)
                            for d in members])
    present = np.zeros(len(sets) * tokens, dtype=bool)
    present[codes] = True
    union = present.reshape(len(sets), tokens).sum(axis=1)
    share = {}
    for i, members in enumerate(sets):
        total = sum(len(d.tokens) for d in members)
        for d in members:
            share[d.id] = union[i] / total if total else 0.0
    return share
