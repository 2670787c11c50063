"""The schedule validator: the rules a :class:`~mozart.model.schedule.Schedule` must keep to be executable.

:func:`validate` raises :class:`~mozart.model.errors.ScheduleError` at the first broken rule, naming the
command id, the value and the rule. Rules, in the order they are checked:

1. **references**: ids are unique; every dependency, ``WaitLoaded.load``, ``WaitCombined.dispatch`` and
   ``SaveActivations.dispatch`` names a command of the right kind; dependencies stay inside their phase;
   fields are in range (slots, micro-batches, chiplets, groups). A ``SaveActivations`` depends on its
   dispatch alone, whose ``save`` bit is set: the chiplet saves each token inline as it computes it, in every
   variant, so nothing else (a barrier on the round's combines, say) can hold it back.
2. **acyclic**: the dependency graph has no cycle (networkx).
3. **weights before dispatch**: every expert of a ``Dispatch`` is loaded on one of its chiplets in the same
   phase, and a ``WaitLoaded`` of that load precedes the dispatch (transitively). A ``WriteBack`` likewise
   follows the load of its slot and every combine of its expert.
4. **slot reuse**: the loads into one slot of one chiplet are ordered, and each follows every use of the
   previous occupant: the ``WaitCombined`` of each dispatch that used it and its ``WriteBack``.
5. **placement** (when given): each loaded expert is on the chiplet the placement says.
6. **tokens** (when a trace is given): each dispatched token selects at least one of the dispatch's experts
   (else it would go to a chiplet that lacks its expert); ``pairs`` matches; and every (token, expert) pair
   of the layer is served exactly once per phase.
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np

from .errors import ScheduleError
from .schedule import (Attention, Command, Dispatch, Load, Return, SaveActivations, Schedule, WaitCombined,
                       WaitLoaded, WriteBack)

__all__ = ["validate"]


def _fail(cmd: Command, message: str) -> None:
    raise ScheduleError(f"command {cmd.id} ({cmd.KIND}): {message}")


def validate(schedule: Schedule, cfg=None, placement=None, trace=None) -> None:
    """Raise :class:`ScheduleError` unless ``schedule`` keeps every rule of the module docstring.

    Parameters
    ----------
    schedule : Schedule
    cfg : WaferConfig, optional
        Checks chiplet and group ranges against the tree.
    placement : Placement, optional
        Checks that experts are loaded where they are placed.
    trace : Trace, optional
        Checks the dispatched tokens against the routing of ``schedule.layer``.
    """
    by_id = _check_references(schedule, cfg)
    order = _check_acyclic(schedule, by_id)
    ancestors = _Ancestors(order, by_id)
    for phase in ("forward", "backward"):
        _check_phase(schedule, phase, by_id, ancestors, placement)
    if trace is not None:
        _check_tokens(schedule, trace)


def _check_references(schedule: Schedule, cfg) -> dict[int, Command]:
    by_id: dict[int, Command] = {}
    for cmd in schedule.commands:
        if cmd.id in by_id:
            _fail(cmd, f"id must be unique, not a repeat of command {cmd.id}")
        by_id[cmd.id] = cmd
    targets = {WaitLoaded: ("load", Load), WaitCombined: ("dispatch", Dispatch),
               SaveActivations: ("dispatch", Dispatch)}
    for cmd in schedule.commands:
        for dep in cmd.deps:
            if dep not in by_id:
                _fail(cmd, f"dependency must name a command of the schedule, not the unknown id {dep}")
            if by_id[dep].phase != cmd.phase:
                _fail(cmd, f"dependencies must stay in the {cmd.phase} phase, not reach command {dep} of the "
                           f"{by_id[dep].phase} phase")
        if type(cmd) in targets:
            name, kind = targets[type(cmd)]
            ref = getattr(cmd, name)
            if not isinstance(by_id.get(ref), kind):
                _fail(cmd, f"{name} must name a {kind.KIND} command, not {ref!r}")
            if ref not in cmd.deps:
                _fail(cmd, f"deps must include its {name} ({ref}), not {list(cmd.deps)}")
        if isinstance(cmd, SaveActivations):
            if cmd.deps != (cmd.dispatch,):
                _fail(cmd, f"deps must be its dispatch alone ({cmd.dispatch}: the chiplet saves inline), "
                           f"not {list(cmd.deps)}")
            if not by_id[cmd.dispatch].save:
                _fail(cmd, f"its dispatch {cmd.dispatch} must have its save bit set, not save=False")
        if isinstance(cmd, (Load, WriteBack)) and not 0 <= cmd.slot < schedule.slots:
            _fail(cmd, f"slot must be in 0..{schedule.slots - 1}, not {cmd.slot!r}")
        if isinstance(cmd, (Attention, Dispatch, Return)) and not -1 <= cmd.micro_batch < schedule.micro_batches:
            _fail(cmd, f"micro_batch must be -1 or in 0..{schedule.micro_batches - 1}, not {cmd.micro_batch!r}")
        if isinstance(cmd, (Load, WriteBack)) and cmd.group != cmd.chiplet // schedule.chiplets_per_group:
            _fail(cmd, f"group must be the group of chiplet {cmd.chiplet} "
                       f"({cmd.chiplet // schedule.chiplets_per_group}), not {cmd.group!r}")
        if isinstance(cmd, Dispatch):
            if not cmd.chiplets:
                _fail(cmd, "chiplets must name at least one chiplet, not none")
            groups = {c // schedule.chiplets_per_group for c in cmd.chiplets}
            if groups != {cmd.group}:
                _fail(cmd, f"chiplets must all be in group {cmd.group}, not {list(cmd.chiplets)}")
        chiplets = [cmd.chiplet] if isinstance(cmd, (Load, WriteBack)) else \
            list(cmd.chiplets) if isinstance(cmd, Dispatch) else []
        if cfg is not None:
            for c in chiplets:
                if not 0 <= c < cfg.chiplets:
                    _fail(cmd, f"chiplet must be in 0..{cfg.chiplets - 1}, not {c!r}")
    return by_id


def _check_acyclic(schedule: Schedule, by_id: dict[int, Command]) -> list[int]:
    graph = nx.DiGraph()
    graph.add_nodes_from(by_id)
    graph.add_edges_from((dep, cmd.id) for cmd in schedule.commands for dep in cmd.deps)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return list(nx.topological_sort(graph))
    path = " -> ".join(str(a) for a, _ in cycle) + f" -> {cycle[0][0]}"
    _fail(by_id[cycle[0][0]], f"dependencies must be acyclic, not the cycle {path}")
    raise AssertionError  # unreachable: _fail raises


class _Ancestors:
    """Transitive dependencies of every command, as bit sets over topological positions (Python ints)."""

    def __init__(self, order: list[int], by_id: dict[int, Command]):
        self.bit = {cid: i for i, cid in enumerate(order)}
        self.sets: dict[int, int] = {}
        for cid in order:
            acc = 0
            for dep in by_id[cid].deps:
                acc |= self.sets[dep] | (1 << self.bit[dep])
            self.sets[cid] = acc

    def precedes(self, first: int, then: int) -> bool:
        return bool(self.sets[then] >> self.bit[first] & 1)


def _check_phase(schedule: Schedule, phase: str, by_id: dict[int, Command], ancestors: _Ancestors, placement) -> None:
    cmds = [c for c in schedule.commands if c.phase == phase]
    loads: dict[tuple[int, int], Load] = {}            # (chiplet, expert) -> its load
    per_slot: dict[tuple[int, int], list[Load]] = defaultdict(list)
    waits: dict[int, list[int]] = defaultdict(list)     # load id -> WaitLoaded ids
    combines: dict[int, list[int]] = defaultdict(list)  # dispatch id -> WaitCombined ids
    users: dict[int, list[Dispatch]] = defaultdict(list)  # load id -> dispatches using it
    write_backs: dict[int, list[WriteBack]] = defaultdict(list)
    e2c = None
    if placement is not None:
        e2c = placement.expert_to_chiplet[schedule.layer if placement.layers > 1 else 0]
    for cmd in cmds:
        if isinstance(cmd, Load):
            if (cmd.chiplet, cmd.expert) in loads:
                _fail(cmd, f"expert {cmd.expert} must be loaded at most once per chiplet and phase, not again on "
                           f"chiplet {cmd.chiplet} (first by command {loads[(cmd.chiplet, cmd.expert)].id})")
            if e2c is not None and not 0 <= cmd.expert < len(e2c):
                _fail(cmd, f"expert must be in 0..{len(e2c) - 1}, not {cmd.expert!r}")
            if e2c is not None and e2c[cmd.expert] != cmd.chiplet:
                _fail(cmd, f"expert {cmd.expert} must be loaded on chiplet {e2c[cmd.expert]} where the placement "
                           f"puts it, not on chiplet {cmd.chiplet}")
            loads[(cmd.chiplet, cmd.expert)] = cmd
            per_slot[(cmd.chiplet, cmd.slot)].append(cmd)
        elif isinstance(cmd, WaitLoaded):
            waits[cmd.load].append(cmd.id)
        elif isinstance(cmd, WaitCombined):
            combines[cmd.dispatch].append(cmd.id)
    for cmd in cmds:
        if isinstance(cmd, Dispatch):
            for e in cmd.experts:
                load = next((loads[(c, e)] for c in cmd.chiplets if (c, e) in loads), None)
                if load is None:
                    _fail(cmd, f"expert {e} must be loaded on one of its chiplets {list(cmd.chiplets)} in the "
                               f"{phase} phase, not missing (rule: a token goes only to a chiplet that holds its "
                               f"expert)")
                if not any(ancestors.precedes(w, cmd.id) for w in waits[load.id]):
                    _fail(cmd, f"must wait for the weights of expert {e} on chiplet {load.chiplet} (a WaitLoaded of "
                               f"command {load.id}) before it runs, not run without (rule: no dispatch before its "
                               f"weights are resident)")
                users[load.id].append(cmd)
        elif isinstance(cmd, WriteBack):
            load = loads.get((cmd.chiplet, cmd.expert))
            if load is None or load.slot != cmd.slot:
                _fail(cmd, f"must write back a slot loaded in this phase, not slot {cmd.slot} of chiplet "
                           f"{cmd.chiplet} with expert {cmd.expert}")
            if not any(ancestors.precedes(w, cmd.id) for w in waits[load.id]):
                _fail(cmd, f"must follow the WaitLoaded of command {load.id}, not run before the weights arrived")
            write_backs[load.id].append(cmd)
    for load_id, dispatches in users.items():
        for d in dispatches:
            if not combines[d.id]:
                _fail(d, "must be followed by a WaitCombined (rule: a slot is freed only when its tokens are "
                         "combined), not left unwaited")
    for cmd in cmds:
        if isinstance(cmd, WriteBack):
            load = loads[(cmd.chiplet, cmd.expert)]
            for d in users[load.id]:
                if not any(ancestors.precedes(w, cmd.id) for w in combines[d.id]):
                    _fail(cmd, f"must follow the WaitCombined of dispatch {d.id} (rule: write back an expert only "
                               f"after its last gradient), not run before it")
    for (chiplet, slot), seq in per_slot.items():
        seq = sorted(seq, key=lambda ld: ancestors.bit[ld.id])
        for prev, nxt in zip(seq, seq[1:]):
            in_use = [w for d in users[prev.id] for w in combines[d.id][:1]] + [w.id for w in write_backs[prev.id]]
            in_use += waits[prev.id]
            for user in in_use:
                if not ancestors.precedes(user, nxt.id):
                    _fail(nxt, f"overwrites slot {slot} of chiplet {chiplet} while expert {prev.expert} (command "
                               f"{prev.id}) is still in use by command {user}; a slot must be reloaded only after "
                               f"every token that used it was combined")


def _check_tokens(schedule: Schedule, trace) -> None:
    experts = trace.experts[schedule.layer]
    tokens, k = experts.shape
    num = trace.num_experts
    for phase in ("forward", "backward"):
        served = []
        owner = []
        for d in schedule.of_kind(Dispatch, phase):
            toks = d.tokens.astype(np.int64)
            if toks.size and (toks.min() < 0 or toks.max() >= tokens):
                bad = int(toks[(toks < 0) | (toks >= tokens)][0])
                _fail(d, f"token must be in 0..{tokens - 1}, not {bad}")
            hit = np.isin(experts[toks], np.asarray(d.experts, dtype=np.int64))
            none = ~hit.any(axis=1)
            if none.any():
                t = int(toks[none][0])
                _fail(d, f"token {t} (experts {experts[t].tolist()}) must select one of the experts "
                         f"{list(d.experts)} of chiplets {list(d.chiplets)}, not none (rule: no token goes to a "
                         f"chiplet that lacks its expert)")
            if int(hit.sum()) != d.pairs:
                _fail(d, f"pairs must count its (token, expert) computations ({int(hit.sum())}), not {d.pairs}")
            rows, cols = np.nonzero(hit)
            served.append(toks[rows] * num + experts[toks[rows], cols])
            owner.append(np.full(len(rows), d.id))
        pairs = np.concatenate(served) if served else np.zeros(0, dtype=np.int64)
        owners = np.concatenate(owner) if owner else np.zeros(0, dtype=np.int64)
        order = np.argsort(pairs, kind="stable")
        dup = np.flatnonzero(pairs[order][1:] == pairs[order][:-1])
        if dup.size:
            i = order[dup[0] + 1]
            t, e = divmod(int(pairs[i]), num)
            first = int(owners[order[dup[0]]])
            raise ScheduleError(f"command {int(owners[i])} (Dispatch): token {t} expert {e} must be served once per "
                                f"{phase} phase, not again after command {first}")
        if len(pairs) != tokens * k:
            missing = np.setdiff1d(np.arange(tokens)[:, None] * num + experts.astype(np.int64), pairs)
            t, e = divmod(int(missing.ravel()[0]), num)
            raise ScheduleError(f"{phase} phase: token {t} expert {e} must be served by a Dispatch, not left out "
                                f"(rule: every selected expert runs exactly once per phase)")
