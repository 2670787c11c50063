"""One end-to-end MoE layer for the RTL wafer: everything the model says before the hardware runs.

:func:`build_run` takes a config, a trace (or a seed for a synthetic one), a placement method and a variant,
and returns a :class:`WaferRun`:

- the quantised weights (seeded) and each group's DRAM image (:func:`mozart.model.golden.expert_image` at
  :meth:`Protocol.expert_image_base` of the expert's place in its group);
- the tokens (seeded), the quantised gates, and the expected outputs (:func:`mozart.model.golden.moe_layer`);
- the forward schedule (:func:`mozart.model.schedule.build_schedule`) translated into host commands
  (:mod:`mozart.model.host`);
- the DISPATCH packets the model expects on every link (the hardware's C_T, per link).

How a schedule becomes host commands (the root executes them in order): the expert table; then per weight
round ``r``: the round's LOADs in the schedule's order (a reload of a group's slots is preceded by
``WAIT_COMBINED`` of that group, and by the ``WAIT_LOADED`` of the slot's previous load if nothing waited for
it yet); then the round's token dispatches micro-batch by micro-batch, tokens ascending, each token with its
experts of round ``r`` (one TOKEN command, which the root turns into one DISPATCH per group, or one per expert
without de-duplication); before a token, ``WAIT_LOADED`` of each slot it needs that nothing waited for yet.
The schedule's per-chiplet dispatches of one (micro-batch, round) thus become one host TOKEN per token: the
root merges the chiplets of a group into one packet. Coarser than the schedule: the reload waits for the
whole group (the root counts results per group), and commands run in one order. The Baseline's barriers become
WAIT_LOADED of every load of a round before the round's first dispatch, and a reload waits for every group's
results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden
from .errors import ConfigError, ScheduleError
from .host import HostCommand, HostInterface, HostOp
from .protocol import Protocol
from .schedule import Dispatch, Load, Schedule, Variant, build_schedule

__all__ = ["WaferRun", "build_run", "default_placement", "FAULTS"]

#: Deliberate faults for testing the testbench's watchdog: ``drop-load`` removes the first LOAD but keeps its
#: WAIT_LOADED, so the root waits forever.
FAULTS = ("none", "drop-load")


def default_placement(variant: str) -> str:
    """The paper's placements: C runs on the clustered one, Baseline/A/B on the framework default."""
    return "mozart" if Variant.parse(variant).clustered else "contiguous"


@dataclass
class WaferRun:
    cfg: object
    variant: str
    placement: str
    trace_source: str
    expert_to_chiplet: np.ndarray   # [E] global chiplet
    w1: np.ndarray                  # [E, d_ff, d_model]
    w2: np.ndarray                  # [E, d_model, d_ff]
    x: np.ndarray                   # [T, d_model]
    experts: np.ndarray             # [T, k]
    gates: np.ndarray               # [T, k] raw unsigned
    expected: np.ndarray            # [T, d_model] golden outputs
    dram: list                      # per group: list of (word address, words)
    schedule: Schedule
    commands: list = field(default_factory=list)     # HostCommand, in order
    link_dispatches: dict = field(default_factory=dict)  # (a, b) -> DISPATCH packets expected

    @property
    def tokens(self) -> int:
        return len(self.x)

    @property
    def rounds(self) -> int:
        return int(max((d.round for d in self.schedule.of_kind(Dispatch, "forward")), default=0)) + 1

    def link_label(self, link: tuple[int, int]) -> str:
        topo = Protocol(self.cfg).topology
        return f"{topo.node(link[0]).label}->{topo.node(link[1]).label}"

    def replicas_per_token(self) -> dict[str, float]:
        """DISPATCH packets per token on the root links and on the chiplet links (the hardware's C_T)."""
        topo = Protocol(self.cfg).topology
        root = sum(n for (a, _), n in self.link_dispatches.items() if a == topo.root)
        leaf = sum(n for (a, b), n in self.link_dispatches.items() if a != topo.root)
        return {"root": root / self.tokens, "chiplet": leaf / self.tokens}


def build_run(cfg, *, trace=None, seed: int = 1, placement: str | None = None, variant: str = "C",
              tokens: int = 256, layer: int = 0, slots: int | None = None, skew: float | None = None,
              fault: str = "none") -> WaferRun:
    """Everything the testbench needs for one layer; see the module doc.

    ``placement``: a method name, or the path of a placement file (``.json``, as ``mozart allocate`` writes;
    its row ``layer`` is used). ``trace`` None: a synthetic trace of ``tokens`` tokens from ``seed``
    (:func:`mozart.model.synth.synthesize_for`,
    with Zipf popularity exponent ``skew`` if given: 1.5 makes a few hot experts take most tokens). ``slots``:
    weight slots the schedule uses per chiplet (default ``hardware.sram_slots``); fewer slots than experts per
    chiplet make the schedule reload slots mid-layer."""
    from .placers import place  # noqa: PLC0415 (the placers import networkx and scipy)
    from .synth import synthesize_for  # noqa: PLC0415

    if fault not in FAULTS:
        raise ConfigError(f"fault must be one of {', '.join(FAULTS)}, not {fault!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < cfg.training.micro_batches:
        raise ConfigError(f"tokens must be an integer of at least training.micro_batches "
                          f"({cfg.training.micro_batches}), not {tokens!r}")
    if not golden.reduction_is_exact(cfg):
        raise ConfigError(f"numerics.partial_bits must make the reduction exact for the end-to-end check "
                          f"(no partial sum may saturate), not {cfg.numerics.partial_bits!r}")
    host = HostInterface(cfg)
    proto = host.proto
    placement = placement or default_placement(variant)
    if trace is None:
        trace = synthesize_for(cfg, tokens, seed, **({} if skew is None else {"skew": skew}))
    trace.check_fits(cfg)
    if not 0 <= layer < trace.layers:
        raise ConfigError(f"layer must be in 0..{trace.layers - 1} (the trace's layers), not {layer!r}")
    if trace.tokens < tokens:
        raise ConfigError(f"tokens must be at most the trace's {trace.tokens} tokens, not {tokens}")
    trace = trace.layer(layer).head(tokens)
    if placement.endswith(".json"):  # a file from `mozart allocate`: its row for this layer
        from .placement import Placement  # noqa: PLC0415
        from .placement_io import load_placement  # noqa: PLC0415
        given = load_placement(placement, cfg)
        if not 0 <= layer < given.layers:
            raise ConfigError(f"layer must be in 0..{given.layers - 1} (the placement file's layers), not {layer!r}")
        plc = Placement(given.expert_to_chiplet[layer:layer + 1], cfg.chiplets_per_group, given.method)
    else:
        plc = place(trace, cfg, placement, seed=seed)
    e2c = plc.expert_to_chiplet[0].astype(np.int64)
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                              or not 1 <= slots <= cfg.hardware.sram_slots):
        raise ConfigError(f"slots must be between 1 and hardware.sram_slots ({cfg.hardware.sram_slots}), "
                          f"not {slots!r}")
    schedule = build_schedule(cfg, plc, trace, 0, variant, slots=slots)

    # -- data (seeded, independent streams) ------------------------------------------------------------------
    num, moe = cfg.numerics, cfg.moe
    gen = np.random.default_rng([seed, 7])
    wlo, whi = -(1 << (num.weight_bits - 1)), 1 << (num.weight_bits - 1)
    w1 = gen.integers(wlo, whi, size=(moe.experts, moe.d_ff, moe.d_model))
    w2 = gen.integers(wlo, whi, size=(moe.experts, moe.d_model, moe.d_ff))
    alo, ahi = -(1 << (num.act_bits - 1)), 1 << (num.act_bits - 1)
    x = np.random.default_rng([seed, 8]).integers(alo, ahi, size=(tokens, moe.d_model))
    experts = trace.experts[0].astype(np.int64)
    gates = golden.quantise(trace.weights[0], num.gate_bits, num.gate_bits, signed=False)
    expected = golden.moe_layer(x, w1, w2, experts, gates, e2c, cfg)

    C, G = cfg.chiplets_per_group, cfg.groups
    local = plc.local_index(0).astype(np.int64)
    image_index = (e2c % C) * cfg.experts_per_chiplet + local   # the expert's place in its group's DRAM
    dram = [[] for _ in range(G)]
    for e in range(moe.experts):
        dram[int(e2c[e]) // C].append((proto.expert_image_base(int(image_index[e])),
                                       golden.expert_image(w1[e], w2[e], cfg)))

    run = WaferRun(cfg, variant, placement, trace.source, e2c, w1, w2, x, experts, gates, expected, dram, schedule)
    _translate(run, host, local, image_index)
    if fault == "drop-load":
        first = next(i for i, c in enumerate(run.commands) if c.op is HostOp.LOAD)
        del run.commands[first]
    return run


def _translate(run: WaferRun, host: HostInterface, local: np.ndarray, image_index: np.ndarray) -> None:
    """The forward schedule as host commands, and the DISPATCH packets expected per link."""
    cfg, proto = run.cfg, host.proto
    topo = proto.topology
    C = cfg.chiplets_per_group
    e2c = run.expert_to_chiplet
    cmds = run.commands
    for e in range(cfg.moe.experts):
        c = int(e2c[e])
        cmds.append(HostCommand(HostOp.TABLE, {"expert": e, "group": c // C, "chiplet": c % C,
                                               "local": int(local[e])}))
    loads = run.schedule.of_kind(Load, "forward")
    dispatches = run.schedule.of_kind(Dispatch, "forward")
    # the round of each load: the n-th load of a (chiplet, slot) is round n
    seen: dict[tuple[int, int], int] = {}
    load_round = []
    for ld in loads:
        load_round.append(seen.get((ld.chiplet, ld.slot), 0))
        seen[(ld.chiplet, ld.slot)] = load_round[-1] + 1
    rounds = max([d.round for d in dispatches] + load_round + [0]) + 1
    slot_of = {ld.expert: ld.slot for ld in loads}     # experts loaded once each in the forward pass
    round_of = {ld.expert: r for ld, r in zip(loads, load_round)}
    if len(slot_of) != len(loads):
        raise ScheduleError("each expert must be loaded exactly once in the forward pass of the schedule")
    per_expert = {d.per_expert for d in dispatches}
    if len(per_expert) > 1:
        raise ScheduleError("a schedule's dispatches must all be per-expert or all de-duplicated")
    dedup = not per_expert.pop() if per_expert else True
    save = any(d.save for d in dispatches)
    bulk = not run.schedule.variant.streaming
    micro_batches = sorted({d.micro_batch for d in dispatches})

    # the dispatch units: per round, per micro-batch, tokens ascending, each with its experts of the round
    tok_of_mb = {mb: sorted({int(t) for d in dispatches if d.micro_batch == mb for t in d.tokens})
                 for mb in micro_batches}
    units = []   # (round, token, [positions j in the token's top-k])
    for r in range(rounds):
        for mb in micro_batches:
            for t in tok_of_mb[mb]:
                js = [j for j, e in enumerate(run.experts[t]) if round_of[int(e)] == r]
                if js:
                    units.append((r, t, js))
    first_unit, last_unit = {}, {}
    for i, (_, t, _) in enumerate(units):
        first_unit.setdefault(t, i)
        last_unit[t] = i
    _check_entries(units, first_unit, last_unit, host.entries)

    waited: set[int] = set()     # load indices whose LOADED was waited for
    pending_load: dict[tuple[int, int], int] = {}   # (chiplet, slot) -> index of its latest load
    load_of_expert = {ld.expert: i for i, ld in enumerate(loads)}

    def wait_loaded(i: int) -> None:
        if i not in waited:
            ld = loads[i]
            cmds.append(HostCommand(HostOp.WAIT_LOADED, {"group": ld.group, "chiplet": ld.chiplet % C,
                                                         "slot": ld.slot}))
            waited.add(i)

    links = {link: 0 for link in topo.links}
    unit_index = 0
    for r in range(rounds):
        combined_groups: set[int] = set()
        for i, ld in enumerate(loads):
            if load_round[i] != r:
                continue
            if r and ld.group not in combined_groups:
                # the Baseline's barrier waits for every group's results, the streaming variants for the group's
                groups = [1 if bulk or g == ld.group else 0 for g in range(cfg.groups)]
                cmds.append(HostCommand(HostOp.WAIT_COMBINED, {"groups": groups}))
                combined_groups.update(g for g in range(cfg.groups) if groups[g])
            previous = pending_load.get((ld.chiplet, ld.slot))
            if previous is not None:
                wait_loaded(previous)
            pending_load[(ld.chiplet, ld.slot)] = i
            cmds.append(HostCommand(HostOp.LOAD, {"group": ld.group, "chiplet": ld.chiplet % C, "slot": ld.slot,
                                                  "local": int(local[ld.expert]),
                                                  "addr": proto.expert_image_base(int(image_index[ld.expert]))}))
        if bulk:   # the Baseline's barrier: every load of the round is in before any dispatch
            for i in range(len(loads)):
                if load_round[i] == r:
                    wait_loaded(i)
        while unit_index < len(units) and units[unit_index][0] == r:
            _, t, js = units[unit_index]
            for j in js:
                wait_loaded(load_of_expert[int(run.experts[t][j])])
            k = cfg.moe.top_k
            valid = [1 if j in js else 0 for j in range(k)]
            cmds.append(HostCommand(HostOp.TOKEN, {
                "token": t % host.entries, "first": int(first_unit[t] == unit_index),
                "final": int(last_unit[t] == unit_index), "dedup": int(dedup), "save": int(save),
                "valid": valid, "experts": [int(e) for e in run.experts[t]],
                "gates": [int(g) for g in run.gates[t]]}, tuple(proto.pack_token(run.x[t]))))
            chips = [int(e2c[run.experts[t][j]]) for j in js]
            if dedup:
                for g in sorted({c // C for c in chips}):
                    links[(topo.root, topo.switch(g))] += 1
                for c in sorted(set(chips)):
                    links[(topo.switch(c // C), topo.chiplet(c // C, c % C))] += 1
            else:
                for c in chips:
                    links[(topo.root, topo.switch(c // C))] += 1
                    links[(topo.switch(c // C), topo.chiplet(c // C, c % C))] += 1
            unit_index += 1
    for i in range(len(loads)):
        wait_loaded(i)
    run.link_dispatches = links
    # The model's two counts must agree: replicas on the chiplet links are the schedule's replicas.
    leaf = sum(n for (a, _), n in links.items() if a != topo.root)
    if leaf != sum(d.replicas for d in dispatches):
        raise ScheduleError(f"host program sends {leaf} replicas to chiplets but the schedule counts "
                            f"{sum(d.replicas for d in dispatches)}")


def _check_entries(units, first_unit, last_unit, entries: int) -> None:
    """The root returns tokens in order from a ring of ``entries`` combine entries: token ``t`` takes entry
    ``t % entries`` at its first dispatch, which must find token ``t - entries`` returned, so every token
    before it must have had its final dispatch already (else the root would wait forever)."""
    finals_before = -1   # highest token index such that all tokens <= it had their final dispatch
    done = set()
    for i, (_, t, _) in enumerate(units):
        if first_unit[t] == i and t - entries > finals_before:
            raise ScheduleError(f"token {t} would need combine entry {t % entries} while token {t - entries} "
                                f"still waits for a later weight round: a schedule with several rounds may have "
                                f"at most {entries} tokens (2 ** hardware.tag_bits)")
        if last_unit[t] == i:
            done.add(t)
            while finals_before + 1 in done:
                finals_before += 1
