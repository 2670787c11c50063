"""The root's in-order command stream with finite buffers, token by token: what the event engine leaves out.

The event engine (:mod:`mozart.model.perf.engine`) gives every chiplet an unbounded input queue and takes each
schedule command as soon as its own dependencies are met. The RTL root executes one host program in order
(``docs/wafer.md`` §1): a WAIT holds every later command, a TOKEN is written into per-group queues of a few
packets, and a chiplet takes a dispatch only while its activation buffer has a free entry (``token_slots``
entries, each released when the chiplet's engine has finished the token). So a chiplet that is behind fills
its buffer, its group's queue, then stops the root, and every other chiplet behind the root waits too. A
de-duplicated dispatch also needs an entry in its switch's reduction table (a few per group).

:func:`in_order_cycles` replays the host program (:class:`~mozart.model.host.HostCommand` list) with these
rules, token by token, on the RTL's numbers (:class:`InOrderTiming`); the weight loads' durations come from
the engine (``load_times``: the engine's ready and done times of each load), shifted to when the root issues
them. It is a model of the RTL's issue and buffering only: it has no link contention beyond each root link's
serialisation and the root's one input port, no reduction throughput and no activation saving (the engine has
those). The input port: the G up links merge in one packet mux at ``port_flits_per_cycle``, so each result
packet (a COMBINE, or a switch's reduced result) takes the port's earliest free time after its head arrives,
whole packets one after another.
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
from .timeline import Timeline

__all__ = ["InOrderTiming", "in_order_cycles"]


@dataclass(frozen=True)
class InOrderTiming:
    """The RTL properties the in-order replay uses (each from an RTL block, nothing fitted).

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


def in_order_cycles(cfg, commands: list[HostCommand], expert_to_chiplet,
                    load_times: dict[tuple[int, int], list[tuple[float, float]]], timing: InOrderTiming,
                    attention: Sequence = ()) -> float:
    """Cycles from the first host command to the last output flit when the root executes ``commands`` in
    order with finite buffers (module doc).

    ``expert_to_chiplet``: the expert table, ``[E]``, or one per layer ``[layers, E]`` (a layer's table holds
    from its first TABLE command on). ``load_times[(chiplet, slot)]`` lists the engine's ``(ready, done)`` of
    each load of that global chiplet's slot, in order; the n-th LOAD of the slot in ``commands`` is the n-th
    there. A load issued by the root at ``now`` ends at ``done + max(0, now - ready)``. ``attention``: the host's
    attention stand-ins (:class:`~mozart.model.wafer_run.AttentionStandIn`): step ``n`` starts when the host
    holds its ``outputs`` outputs and step ``n - 1`` has ended, and a command with ``release = n`` is sent no
    sooner than step ``n``'s end. A token's combine entry is free again once the entry's previous token left.
    """
    host = HostInterface(cfg)
    proto = host.proto
    C = cfg.chiplets_per_group
    tables = np.asarray(expert_to_chiplet).reshape(-1, cfg.moe.experts)
    table_index, e2c = -1, tables[0]   # a program without TABLE commands uses the first
    t = timing
    now = 0.0
    outputs = _Outputs(proto.partial_flits, attention)
    issued = defaultdict(int)                    # (chiplet, slot) -> LOADs issued
    load_done: dict[tuple[int, int], float] = {}  # (chiplet, slot) -> its latest load's end
    ends = defaultdict(list)       # chiplet -> end of every token it took (frees a buffer entry)
    last_end = defaultdict(float)  # chiplet -> when its engine is free
    queued = defaultdict(list)     # group -> (leave, flits) of its packets, oldest first, that may be queued
    table = defaultdict(list)      # group -> min-heap of the done times of its open reduction entries
    free_link = defaultdict(float)  # group -> when down[g] is free (one flit per cycle)
    owed = defaultdict(float)      # group -> latest result of a dispatch to it, at the root
    result: dict[int, float] = {}  # combine entry -> latest result at the root
    back = t.chiplet_output_flits + 2 * t.hop_cycles   # chiplet engine done -> COMBINE at the root
    port = Timeline()  # the root's input port: result packets of every group
    port_cycles = t.chiplet_output_flits / t.port_flits_per_cycle
    previous_op = None
    for cmd in commands:
        op, a = HostOp(cmd.op), cmd.args
        if cmd.release:
            now = max(now, outputs.released(cmd.release))
        if op is HostOp.TABLE:
            if previous_op is not HostOp.TABLE:
                table_index += 1
            e2c = tables[min(table_index, len(tables) - 1)]
            now += host.flits(op)
        elif op is HostOp.LOAD:
            now += host.flits(op)
            key = (a["group"] * C + a["chiplet"], a["slot"])
            ready, done = load_times[key][issued[key]]
            issued[key] += 1
            load_done[key] = done + max(0.0, now - ready)
        elif op is HostOp.WAIT_LOADED:
            now = max(now + host.flits(op), load_done[(a["group"] * C + a["chiplet"], a["slot"])] + t.loaded_cycles)
        elif op is HostOp.WAIT_COMBINED:
            now = max([now + host.flits(op)] + [owed[g] for g, on in enumerate(a["groups"]) if on])
        elif op is HostOp.TOKEN:
            now += host.flits(op)
            if a["first"]:   # the combine entry must have been returned by its previous token
                now = max(now, outputs.entry_free(a["token"]))
            chips = [int(e2c[a["experts"][j]]) for j, v in enumerate(a["valid"]) if v]
            if a["dedup"]:   # one packet per group: {chiplet: its selected experts}
                groups: dict[int, dict[int, int]] = {}
                for c in chips:
                    pk = groups.setdefault(c // C, {})
                    pk[c] = pk.get(c, 0) + 1
                packets = [(g, pk, 1 + len(pk) * proto.route_flits + proto.token_flits) for g, pk in groups.items()]
            else:            # one packet per selected expert
                packets = [(c // C, {c: 1}, 1 + proto.route_flits + proto.token_flits) for c in chips]
            # the root writes the packets when every group's queue has room for them (in flits)
            per_group = defaultdict(int)
            for g, _, flits in packets:
                per_group[g] += flits
            for g, n in per_group.items():
                q = queued[g]
                while q and (q[0][0] <= now or sum(f for _, f in q) + n > t.queue_flits):
                    now = max(now, q.pop(0)[0])
            written = defaultdict(float)   # flits written so far per group
            entry = a["token"]
            for g, pk, flits in packets:
                written[g] += flits
                leave = max(now + written[g] + t.queue_latency, free_link[g])
                for c in pk:   # a chiplet takes the packet only with a free buffer entry
                    if len(ends[c]) >= t.token_slots:
                        leave = max(leave, ends[c][-t.token_slots])
                if a["dedup"] and len(table[g]) >= t.reduction_entries:   # and the switch a table entry
                    leave = max(leave, heapq.heappop(table[g]))
                queued[g].append((leave, flits))
                free_link[g] = leave + flits
                done = 0.0
                for c, n in pk.items():
                    start = max(leave + t.hop_cycles + t.chiplet_input_flits, last_end[c])
                    last_end[c] = start + n * t.cycles_per_expert
                    ends[c].append(last_end[c])
                    done = max(done, last_end[c] + back)
                # the port passes the packet no sooner than its up link delivers it (tail at ``done``), in
                # its next free time
                start = port.earliest(done - port_cycles, port_cycles)
                port.occupy(start, start + port_cycles)
                done = start + port_cycles
                if a["dedup"]:
                    heapq.heappush(table[g], done - t.hop_cycles)   # the reduced result leaves the switch
                owed[g] = max(owed[g], done)
                result[entry] = max(result.get(entry, 0.0), done)
            now += max(written.values(), default=0) + 1
            if a["final"]:
                outputs.returned(entry, result.pop(entry))
        previous_op = op
    return outputs.last()


class _Outputs:
    """The host's side of the replay: outputs leave in token order, ``partial_flits`` flits each at one flit per
    cycle, and the attention stand-ins wait for them."""

    def __init__(self, flits: int, attention: Sequence):
        self.flits, self.attention = flits, list(attention)
        self.done: list[float] = []       # when each output's results were all at the root, in token order
        self.out: list[float] = []        # when each output's last flit left
        self.last_of_entry: dict[int, int] = {}   # combine entry -> the latest output that held it
        self.ends: list[float] = []       # end of each attention step so far

    def returned(self, entry: int, done: float) -> None:
        self.last_of_entry[entry] = len(self.done)
        self.done.append(done)

    def taken(self, n: int) -> float:
        """When the host holds ``n`` outputs (0: at once)."""
        if n > len(self.done):
            raise ScheduleError(f"the host program waits for output {n} before its token's final dispatch "
                                f"(only {len(self.done)} tokens are complete): it would never start")
        while len(self.out) < n:
            i = len(self.out)
            self.out.append(max(self.out[-1] if self.out else 0.0, self.done[i]) + self.flits)
        return self.out[n - 1] if n else 0.0

    def released(self, step: int) -> float:
        """The end of attention step ``step`` (1-based)."""
        while len(self.ends) < step:
            s = self.attention[len(self.ends)]
            self.ends.append(max(self.ends[-1] if self.ends else 0.0, self.taken(s.outputs)) + s.cycles)
        return self.ends[step - 1]

    def entry_free(self, entry: int) -> float:
        """When the last output that held combine entry ``entry`` left (0: never used)."""
        i = self.last_of_entry.get(entry)
        return 0.0 if i is None else self.taken(i + 1)

    def last(self) -> float:
        return self.taken(len(self.done))
