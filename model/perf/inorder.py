"""The root's command stream and issue window with finite buffers, token by token: what the event engine leaves
out.

The event engine (:mod:`mozart.model.perf.engine`) gives every chiplet an unbounded input queue and takes each
schedule command as soon as its own dependencies are met. The RTL root reads one host program in order
(:mod:`mozart.model.host`): a WAIT holds every later command; a TOKEN is stored in one of ``issue_window``
window positions (the stream holds while all are full), and the root dispatches, one at a time, the oldest
stored TOKEN that is ready (every expert it selects resident, its combine entry free if it is a first dispatch,
no older stored TOKEN with the same entry); TABLE, LOAD and WAIT_COMBINED wait until the window is empty. A
dispatch writes the token's packets into per-group queues of a few packets, and a chiplet takes a dispatch only
while its activation buffer has a free entry (``token_slots`` entries, each released when the chiplet's engine
has finished the token). So a chiplet that is behind fills its buffer, its group's queue, then stops the
root's dispatcher, and every other chiplet behind the root waits too. A de-duplicated dispatch also needs an
entry in its switch's reduction table (a few per group).

:func:`in_order_cycles` replays the host program (:class:`~mozart.model.host.HostCommand` list) with these
rules on the RTL's numbers (:class:`InOrderTiming`). A group's memory controller streams the LOADs in the order
the root issues them, one image after another at its load rate (``load_cycles``), and a load ends no sooner
than the engine's (``load_times``: the engine also has the DRAM's other traffic, which the replay leaves out).
(Until 2026-12-07 a load took the engine's ready-to-done span shifted to when the root issued it: that counted
the engine's own queueing behind the group's earlier loads a second time.) The
command stream (host flits, WAITs, attention releases) and the dispatcher keep separate times. The window is
replayed exactly without an event queue by dispatching lazily, only when forced (a TOKEN finds the window full;
a TABLE, LOAD or WAIT_COMBINED needs it empty; the host waits for outputs; the program ends): then the stored
TOKENs are all that can compete, and the next dispatch is the one that can start first (ties to the oldest).
It is a model of the RTL's issue and buffering only: it has no link contention beyond each root link's
serialisation and the root's one input port, no reduction throughput and no activation saving (the engine has
those). The input port: the G up links merge in one packet mux at ``port_flits_per_cycle``, so each result
packet (a COMBINE, or a switch's reduced result) takes the port's earliest free time after its head arrives,
whole packets one after another.

A training program (:class:`BackwardTiming`) adds, as the RTL root and chiplet do (``docs/wafer.md`` §1 and §11,
``docs/chiplet.md``): a backward TOKEN is stored and dispatched like a forward one (window, queues, reduction
table, buffer entries) with its two vectors (``2 token_flits`` on the host and in each DISPATCH), and is ready
only with the root's **credit**: every chiplet it goes to has at most ``token_slots`` backward replicas without
their GATE_GRAD, its own included (a GATE_GRAD reaches the root its COMBINE's way after the replica's compute,
plus its flits). At the chiplet each selected expert's saved ``z`` is restored (a MEM_READ round trip through
the memory controller, started when the replica is whole in the buffer, so it overlaps the earlier tokens'
compute); each job takes ``cycles_per_job`` after the previous one and its ``z``. A replica's GATE_GRAD also
crosses the root's input port after the result. An UPDATE clears its slot's LOADED and its expert's RESIDENT
until UPDATED: the packet reaches the chiplet, whose update unit runs ``update_cycles`` once its engine is idle;
the write-back streams through the group's memory controller (after the LOADs and write-backs before it, at the
load rate) and its MEM_ACK and UPDATED follow. A WAIT_LOADED of the slot and a LOAD after it wait for that. The
replay has no DRAM traffic of the restores and no contention of the chiplet's output (saves, restores, GATE_GRADs).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ScheduleError
from ..host import HostCommand, HostInterface, HostOp
from ..placement import Placement
from .timeline import Timeline

__all__ = ["InOrderTiming", "BackwardTiming", "in_order_cycles", "in_order_output_times"]


@dataclass(frozen=True)
class InOrderTiming:
    """The RTL properties the replay uses (each from an RTL block, nothing fitted).

    cycles_per_expert : chiplet compute cycles per (token, local expert)
    token_slots : chiplet activation-buffer entries; an entry is freed when the engine finishes its token
    queue_flits : the root's queue per group, in flits (``queue_packets`` maximum-length dispatches)
    reduction_entries : a switch's reduction table: de-duplicated dispatches of a group in flight at once (an
        entry opens when the dispatch enters the switch and frees when the group's reduced result leaves)
    queue_latency : cycles from a packet entering an empty root queue to leaving on ``down[g]``
    hop_cycles : a switch's head latency
    chiplet_input_flits : flits of one dispatch replica at a chiplet's port
    chiplet_output_flits : flits of one COMBINE
    loaded_cycles : cycles from a load's last word to its LOADED at the root
    port_flits_per_cycle : the root's input port, which every group's results share (default: none, each up
        link has its own; ``in_order_timing`` sets the RTL's)
    issue_window : TOKENs the root holds at once (``hardware.issue_window``; default 1: in program order)
    load_cycles : a group's memory controller streaming one expert image (its words at the controller's load
        rate); a group's LOADs are served one after another (default 0: loads take the engine's times alone)
    load_latency : cycles a load's end adds to its stream: the DRAM's first access and the WEIGHT path's hops
    """

    cycles_per_expert: int
    token_slots: int
    queue_flits: int
    reduction_entries: int
    queue_latency: float
    hop_cycles: float
    chiplet_input_flits: int
    chiplet_output_flits: int
    loaded_cycles: float
    port_flits_per_cycle: float = math.inf
    issue_window: int = 1
    load_cycles: float = 0.0
    load_latency: float = 0.0


@dataclass(frozen=True)
class BackwardTiming:
    """The RTL properties the replay of a training program adds (each from an RTL block, nothing fitted).

    cycles_per_job : chiplet compute cycles per backward (token, local expert) job
    input_flits : flits of one backward dispatch replica at a chiplet's port (route word, dY and x)
    restore_cycles : from a backward replica's last flit at the chiplet to its first expert's saved ``z`` in: the
        first read, the MEM_READ's hop to the memory controller, its read latency, the MEM_DATA's hop back and
        its flits (``restore_flits``)
    restore_flits : one restore answer (MEM_DATA of ``hidden_flits``): each further expert's ``z`` comes one
        answer later
    gate_grad_flits : one GATE_GRAD packet at the root's input port (a backward replica's, after its COMBINE)
    update_cycles : the chiplet's update unit, from the UPDATE taken to its last MEM_WRITE flit sent
    ack_latency : from the write-back's last flit at the memory controller to its MEM_ACK at the chiplet
    """

    cycles_per_job: int
    input_flits: int
    restore_cycles: float
    restore_flits: int
    gate_grad_flits: int
    update_cycles: float
    ack_latency: float


def in_order_cycles(cfg, commands: list[HostCommand], expert_to_chiplet,
                    load_times: dict[tuple[int, int], list[tuple[float, float]]], timing: InOrderTiming,
                    attention: Sequence = (), backward: BackwardTiming | None = None) -> float:
    """Cycles from the first host command to the last output flit when the root reads ``commands`` in order,
    reorders TOKENs in its issue window and dispatches them through finite buffers (module doc).

    ``expert_to_chiplet``: the expert table, ``[E]``, or one per layer ``[layers, E]`` (a layer's table holds
    from its first TABLE command on; an expert's local index is its index on its chiplet, ascending global id,
    as the host's TABLE gives it). ``load_times[(chiplet, slot)]`` lists the engine's ``(ready, done)`` of each
    load of that global chiplet's slot, in order; the n-th LOAD of the slot in ``commands`` is the n-th there. A
    LOAD issued by the root at ``now`` streams from the later of ``now`` and the end of its group's previous LOAD
    for ``timing.load_cycles``, and ends ``timing.load_latency`` after its stream, or at the engine's ``done`` if
    that is later; its expert is resident ``loaded_cycles`` after its end. ``attention``: the host's attention stand-ins
    (:class:`~mozart.model.wafer_run.AttentionStandIn`): step ``n`` starts when the host holds its ``outputs``
    outputs and step ``n - 1`` has ended, and a command with ``release = n`` is sent no sooner than step ``n``'s
    end. Outputs leave in output order (the n-th token of the run is output n, whatever order its dispatches
    took); a token's combine entry is free again once output ``n - entries`` left.

    A training program's backward TOKENs and UPDATEs follow the module doc's rules; ``load_times`` then lists the
    backward pass's LOADs too (after the forward's, in program order), and ``backward`` gives their timing."""
    times = in_order_output_times(cfg, commands, expert_to_chiplet, load_times, timing, attention, backward)
    return times[-1] if times else 0.0


def in_order_output_times(cfg, commands: list[HostCommand], expert_to_chiplet,
                          load_times: dict[tuple[int, int], list[tuple[float, float]]], timing: InOrderTiming,
                          attention: Sequence = (), backward: BackwardTiming | None = None) -> list[float]:
    """:func:`in_order_cycles`'s replay, returning when each output's last flit left, in output order (a training
    step's forward ends with its last forward output)."""
    replay = _Replay(cfg, expert_to_chiplet, load_times, timing, attention, backward)
    for cmd in commands:
        replay.command(cmd)
    replay.drain()
    replay.outputs.last()
    return list(replay.outputs.out)


@dataclass
class _Stored:
    """A TOKEN in the root's issue window."""

    args: dict
    output: int      # the token's output number over the run
    arrival: float   # its last host flit was read
    ready: float     # every expert it selects is resident
    chiplets: list   # the global chiplet of each selected expert


class _Replay:
    """The root's command stream (its time ``now``) and issue window in front of the dispatcher."""

    #: Commands that first wait until the window is empty (every stored TOKEN's dispatch has ended).
    WAIT_FOR_EMPTY_WINDOW = (HostOp.TABLE, HostOp.LOAD, HostOp.WAIT_COMBINED)

    def __init__(self, cfg, expert_to_chiplet, load_times, timing: InOrderTiming, attention: Sequence,
                 backward: BackwardTiming | None):
        self.host = HostInterface(cfg)
        self.chiplets_per_group = cfg.chiplets_per_group
        self.tables = np.asarray(expert_to_chiplet).reshape(-1, cfg.moe.experts)
        self.table_index = -1   # a program without TABLE commands uses the first
        self._use_table(0)
        self.load_times, self.timing = load_times, timing
        self.now = 0.0
        self.outputs = _Outputs(self.host.proto.partial_flits, self.host.entries, attention)
        self.numbers = _OutputNumbers(self.host.entries)
        self.dispatcher = _Dispatcher(cfg, timing, backward)
        self.window: list[_Stored] = []    # oldest first
        self.issued = defaultdict(int)     # (chiplet, slot) -> LOADs issued
        self.group_free = defaultdict(float)   # group -> when its memory controller ends the LOADs issued so far
        self.loaded: dict[tuple[int, int], float] = {}   # (chiplet, slot) -> its latest LOADED or UPDATED at the root
        self.resident: dict[tuple[int, int], float] = {}    # (chiplet, local) -> RESIDENT since
        self.previous_op = None

    def _use_table(self, index: int) -> None:
        self.e2c = self.tables[min(index, len(self.tables) - 1)]
        self.local = Placement(self.e2c, self.chiplets_per_group).local_index()   # as the host's TABLE gives it

    def command(self, cmd: HostCommand) -> None:
        op, a = HostOp(cmd.op), cmd.args
        if cmd.release:
            self.now = max(self.now, self._released(cmd.release))
        if op in self.WAIT_FOR_EMPTY_WINDOW:
            self.drain()
            self.now = max(self.now, self.dispatcher.free)
        if op is HostOp.TABLE:
            if self.previous_op is not HostOp.TABLE:
                self.table_index += 1
                self._use_table(self.table_index)
            self.now += self.host.flits(op)
        elif op is HostOp.LOAD:
            self.now += self.host.flits(op)
            chiplet = a["group"] * self.chiplets_per_group + a["chiplet"]
            key = (chiplet, a["slot"])
            _, done = self.load_times[key][self.issued[key]]
            self.issued[key] += 1
            # the group's controller streams the LOADs in the order the root issues them; no sooner than the engine
            start = max(self.now, self.group_free[a["group"]])
            self.group_free[a["group"]] = start + self.timing.load_cycles
            end = max(done, self.group_free[a["group"]] + self.timing.load_latency)
            self.loaded[key] = self.resident[(chiplet, a["local"])] = end + self.timing.loaded_cycles
        elif op is HostOp.UPDATE:
            self.now += self.host.flits(op)
            self._update(a)
        elif op is HostOp.WAIT_LOADED:
            end = self.loaded[(a["group"] * self.chiplets_per_group + a["chiplet"], a["slot"])]
            self.now = max(self.now + self.host.flits(op), end)
        elif op is HostOp.WAIT_COMBINED:
            owed = [self.dispatcher.owed[g] for g, on in enumerate(a["groups"]) if on]
            self.now = max([self.now + self.host.flits(op)] + owed)
        elif op is HostOp.TOKEN:
            self._store(a)
        self.previous_op = op

    def _update(self, a) -> None:
        """An UPDATE sent at ``now``: the packet reaches the chiplet (the root's queue, a hop, its one flit), which
        updates once its engine is idle (the host sends an UPDATE only after the round's results, so no token
        inside needs the slot); its MEM_WRITEs reach the group's memory controller a hop later, which writes the
        image at its load rate after the LOADs and write-backs issued before; the last write's MEM_ACK, then
        UPDATED to the root (the LOADED path). Until then the slot is not LOADED and its expert not RESIDENT."""
        t, b, g = self.timing, self.dispatcher.backward_timing("UPDATE"), a["group"]
        chiplet = g * self.chiplets_per_group + a["chiplet"]
        start = max(self.now + t.queue_latency + t.hop_cycles + 1, self.dispatcher.last_end[chiplet])
        stream = max(start + t.hop_cycles, self.group_free[g])   # the first MEM_WRITE at the controller
        self.group_free[g] = stream + t.load_cycles
        written = max(start + b.update_cycles + t.hop_cycles, self.group_free[g])
        self.loaded[(chiplet, a["slot"])] = self.resident[(chiplet, a["local"])] = \
            written + b.ack_latency + t.loaded_cycles

    def _store(self, a) -> None:
        """A TOKEN enters the window once a position is free (the one dispatched next frees first)."""
        if len(self.window) >= self.timing.issue_window:
            self.now = max(self.now, self._dispatch_next())
        self.now += self.host.flits(HostOp.TOKEN, bool(a.get("backward", 0)))
        selected = [int(a["experts"][j]) for j, v in enumerate(a["valid"]) if v]
        output = self.numbers.take(a["token"], bool(a["final"]))
        self.window.append(_Stored(a, output, self.now, self._ready(a["token"], selected),
                                   [int(self.e2c[e]) for e in selected]))

    def _ready(self, entry: int, experts: list[int]) -> float:
        """When every one of ``experts`` is RESIDENT (its (chiplet, local)'s latest load has been LOADED)."""
        ready = 0.0
        for e in experts:
            c, local = int(self.e2c[e]), int(self.local[e])
            if (c, local) not in self.resident:   # a later LOAD waits for the window to empty: never
                raise ScheduleError(f"TOKEN {entry} selects expert {e}, which no earlier LOAD made resident on "
                                    f"chiplet {c} (local {local}): the root would hold it forever")
            ready = max(ready, self.resident[(c, local)])
        return ready

    def _held_by_older(self, i: int) -> bool:
        """An older stored TOKEN has stored TOKEN ``i``'s combine entry: it goes first."""
        return any(o.args["token"] == self.window[i].args["token"] for o in self.window[:i])

    def _start(self, i: int) -> float | None:
        """When stored TOKEN ``i`` could be dispatched (None: not before an older stored one)."""
        s = self.window[i]
        if self._held_by_older(i):
            return None
        start = max(s.arrival, s.ready, self.dispatcher.free, self.dispatcher.credit(s))
        if s.args["first"]:   # the entry must have been returned by its previous token
            if not self.outputs.complete(s.output - self.host.entries + 1):
                return None   # an older output is still in the window
            start = max(start, self.outputs.entry_free(s.output))
        return start

    def _dispatch_next(self) -> float:
        """Dispatch the stored TOKEN that can start first (ties to the oldest); return its dispatch's end."""
        best, best_start = None, math.inf
        for i in range(len(self.window)):
            start = self._start(i)
            if start is not None and start < best_start:
                best, best_start = i, start
        if best is None:
            raise ScheduleError(f"no TOKEN in the root's issue window can be dispatched: "
                                f"{[s.args['token'] for s in self.window]}")
        s = self.window.pop(best)
        done = self.dispatcher.dispatch(s, best_start)
        if s.args["final"]:
            self.outputs.returned(s.output, done)
        return self.dispatcher.free

    def drain(self) -> None:
        while self.window:
            self._dispatch_next()

    def _released(self, step: int) -> float:
        """The end of attention step ``step``; the dispatcher goes on with the stored TOKENs meanwhile, until the
        outputs the steps wait for are complete (no later TOKEN arrives before then)."""
        needed = self.outputs.needed(step)
        while self.window and not self.outputs.complete(needed):
            self._dispatch_next()
        return self.outputs.released(step)


class _OutputNumbers:
    """A TOKEN's output number over the run from its combine entry (output mod ``entries``): the unique one from
    the lowest output not yet finally dispatched on (the host program keeps every token within ``entries`` of it)."""

    def __init__(self, entries: int):
        self.entries, self.lowest, self.finished = entries, 0, set()

    def take(self, entry: int, final: bool) -> int:
        n = self.lowest + (entry - self.lowest) % self.entries
        if final:
            self.finished.add(n)
            while self.lowest in self.finished:
                self.finished.remove(self.lowest)
                self.lowest += 1
        return n


class _Dispatcher:
    """The root's dispatcher and everything behind it: per-group queues and down links, the switches' reduction
    tables, the chiplets' buffers and engines, and the root's input port. One TOKEN at a time, in dispatch order."""

    def __init__(self, cfg, timing: InOrderTiming, backward: BackwardTiming | None):
        self.proto, self.timing, self.chiplets_per_group = HostInterface(cfg).proto, timing, cfg.chiplets_per_group
        self.backward = backward
        self.free = 0.0                # the dispatcher is ready for the next TOKEN
        self.ends = defaultdict(list)       # chiplet -> end of every token it took (frees a buffer entry)
        self.last_end = defaultdict(float)  # chiplet -> when its engine is free
        self.queued = defaultdict(list)     # group -> (leave, flits) of its packets, oldest first, maybe queued
        self.table = defaultdict(list)      # group -> min-heap of the done times of its open reduction entries
        self.free_link = defaultdict(float)  # group -> when down[g] is free (one flit per cycle)
        self.owed = defaultdict(float)      # group -> latest result of a dispatch to it, at the root
        self.result: dict[int, float] = {}  # output -> latest result at the root
        self.back = timing.chiplet_output_flits + 2 * timing.hop_cycles   # engine done -> COMBINE at the root
        self.port = Timeline()   # the root's input port: result packets of every group
        self.port_cycles = timing.chiplet_output_flits / timing.port_flits_per_cycle
        self.unanswered = defaultdict(list)   # chiplet -> GATE_GRAD arrivals at the root of its backward replicas

    def _packets(self, s: _Stored) -> list[tuple[int, dict[int, int], int]]:
        """(group, {chiplet: selected experts}, flits) of each DISPATCH packet of the TOKEN."""
        proto, C, backward = self.proto, self.chiplets_per_group, bool(s.args.get("backward", 0))
        if not s.args["dedup"]:   # one packet per selected expert
            return [(c // C, {c: 1}, proto.dispatch_flits(1, backward)) for c in s.chiplets]
        groups: dict[int, dict[int, int]] = {}   # one packet per group
        for c in s.chiplets:
            pk = groups.setdefault(c // C, {})
            pk[c] = pk.get(c, 0) + 1
        return [(g, pk, proto.dispatch_flits(len(pk), backward)) for g, pk in groups.items()]

    def backward_timing(self, what: str) -> BackwardTiming:
        if self.backward is None:
            raise ScheduleError(f"the replay of a {what} needs the backward timing (BackwardTiming), not None")
        return self.backward

    def credit(self, s: _Stored) -> float:
        """When the root has the credit for backward TOKEN ``s`` (0 for a forward one): every chiplet it goes to
        has at most ``token_slots`` backward replicas without their GATE_GRAD, its own (one per packet) included."""
        if not s.args.get("backward", 0):
            return 0.0
        replicas = defaultdict(int)
        for _, packet, _ in self._packets(s):
            for c in packet:
                replicas[c] += 1
        start = 0.0
        for c, n in replicas.items():
            if n > self.timing.token_slots:
                raise ScheduleError(f"backward TOKEN {s.args['token']} sends {n} replicas to chiplet {c}, more than "
                                    f"its token_slots ({self.timing.token_slots}): the root never has the credit")
            answers = sorted(self.unanswered[c])
            waiting = len(answers) - (self.timing.token_slots - n)   # replicas whose GATE_GRAD must be back
            if waiting > 0:
                start = max(start, answers[waiting - 1])
        return start

    def dispatch(self, s: _Stored, now: float) -> float:
        """Dispatch ``s`` from ``now`` on; returns when its output's results are all at the root so far."""
        t = self.timing
        packets = self._packets(s)
        # the root writes the packets when every group's queue has room for them (in flits)
        per_group = defaultdict(int)
        for g, _, flits in packets:
            per_group[g] += flits
        for g, n in per_group.items():
            q = self.queued[g]
            while q and (q[0][0] <= now or sum(f for _, f in q) + n > t.queue_flits):
                now = max(now, q.pop(0)[0])
        written = defaultdict(float)   # flits written so far per group
        for g, pk, flits in packets:
            written[g] += flits
            leave = max(now + written[g] + t.queue_latency, self.free_link[g])
            for c in pk:   # a chiplet takes the packet only with a free buffer entry
                if len(self.ends[c]) >= t.token_slots:
                    leave = max(leave, self.ends[c][-t.token_slots])
            if s.args["dedup"] and len(self.table[g]) >= t.reduction_entries:   # and the switch a table entry
                leave = max(leave, heapq.heappop(self.table[g]))
            self.queued[g].append((leave, flits))
            self.free_link[g] = leave + flits
            self._result(s, g, pk, leave)
        self.free = now + max(written.values(), default=0) + 1
        return self.result.pop(s.output) if s.args["final"] else self.result[s.output]

    def _result(self, s: _Stored, group: int, packet: dict[int, int], leave: float) -> None:
        """The chiplets compute the packet that leaves the root at ``leave``; its result crosses the port."""
        t = self.timing
        backward = bool(s.args.get("backward", 0))
        done = 0.0
        for c, n in packet.items():
            end = self._backward(c, n, leave) if backward else self._forward(c, n, leave)
            self.ends[c].append(end)
            done = max(done, end + self.back)
            if backward:   # its GATE_GRAD follows its COMBINE on the way up
                self.unanswered[c].append(end + self.back + self.backward.gate_grad_flits)
        # the port passes the packet (and a backward one's GATE_GRADs) no sooner than its up link delivers it (tail
        # at ``done``), in its next free time
        grads = len(packet) * self.backward.gate_grad_flits / t.port_flits_per_cycle if backward else 0
        busy = self.port_cycles + grads
        start = self.port.earliest(done - self.port_cycles, busy)
        self.port.occupy(start, start + busy)
        done = start + self.port_cycles
        if s.args["dedup"]:
            heapq.heappush(self.table[group], done - t.hop_cycles)   # the reduced result leaves the switch
        self.owed[group] = max(self.owed[group], done)
        self.result[s.output] = max(self.result.get(s.output, 0.0), done)

    def _forward(self, chiplet: int, jobs: int, leave: float) -> float:
        """A forward replica of ``jobs`` experts, whole at the chiplet, computes after its earlier tokens."""
        t = self.timing
        start = max(leave + t.hop_cycles + t.chiplet_input_flits, self.last_end[chiplet])
        self.last_end[chiplet] = start + jobs * t.cycles_per_expert
        return self.last_end[chiplet]

    def _backward(self, chiplet: int, jobs: int, leave: float) -> float:
        """A backward replica, whole at the chiplet, starts its restore reads at once (while earlier tokens compute);
        job ``j`` computes after the previous job and after its ``z`` is in."""
        b = self.backward_timing("backward TOKEN")
        arrived = leave + self.timing.hop_cycles + b.input_flits
        for j in range(jobs):
            start = max(arrived + b.restore_cycles + j * b.restore_flits, self.last_end[chiplet])
            self.last_end[chiplet] = start + b.cycles_per_job
        return self.last_end[chiplet]


class _Outputs:
    """The host's side of the replay: outputs leave in output order, ``partial_flits`` flits each at one flit per
    cycle, whatever order their tokens were dispatched in, and the attention stand-ins wait for them."""

    def __init__(self, flits: int, entries: int, attention: Sequence):
        self.flits, self.entries, self.attention = flits, entries, list(attention)
        self.done: dict[int, float] = {}   # output -> when its results were all at the root
        self.out: list[float] = []        # when each output's last flit left, in output order
        self.ends: list[float] = []       # end of each attention step so far

    def returned(self, output: int, done: float) -> None:
        self.done[output] = done

    def complete(self, n: int) -> bool:
        """True when outputs ``0..n-1`` are all returned."""
        return all(i in self.done for i in range(len(self.out), n))

    def taken(self, n: int) -> float:
        """When the host holds ``n`` outputs (0: at once)."""
        while len(self.out) < n:
            i = len(self.out)
            if i not in self.done:
                raise ScheduleError(f"the host program waits for output {n} before its token's final dispatch "
                                    f"(only {i} outputs are complete): it would never start")
            self.out.append(max(self.out[-1] if self.out else 0.0, self.done[i]) + self.flits)
        return self.out[n - 1] if n else 0.0

    def needed(self, step: int) -> int:
        """Outputs the host must hold before attention step ``step`` (1-based) can end."""
        return max((s.outputs for s in self.attention[:step]), default=0)

    def released(self, step: int) -> float:
        """The end of attention step ``step`` (1-based)."""
        while len(self.ends) < step:
            s = self.attention[len(self.ends)]
            self.ends.append(max(self.ends[-1] if self.ends else 0.0, self.taken(s.outputs)) + s.cycles)
        return self.ends[step - 1]

    def entry_free(self, output: int) -> float:
        """When the output that held ``output``'s combine entry before it left (0: none did)."""
        previous = output - self.entries
        return 0.0 if previous < 0 else self.taken(previous + 1)

    def last(self) -> float:
        return self.taken(max(self.done, default=-1) + 1)
