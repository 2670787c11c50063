"""Streaming schedules: every variant builds a valid schedule; load order, slots, replicas and JSON."""

import dataclasses

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ScheduleError
from mozart.model.metrics import layer_c_t
from mozart.model.placement import Placement
from mozart.model.placers import place
from mozart.model.schedule import (VARIANTS, Attention, Dispatch, Load, Schedule, WaitCombined, WriteBack,
                                   build_schedule, chiplet_load_order)
from mozart.model.schedule_validate import validate
from mozart.model.synth import synthesize_for


def contiguous(cfg):
    e = cfg.moe.experts
    return Placement(np.arange(e) // (e // cfg.chiplets), cfg.chiplets_per_group, "contiguous")


# A full-size shape with few tokens: Qwen3 has 8 experts per chiplet on 4 slots, so slots are reloaded.
CASES = {
    "tiny": ({}, 256),
    "wafer4x4": ({}, 256),
    "qwen3-30b-a3b": ({"moe.layers": 2}, 512),
    "deepseek-moe-16b": ({"moe.layers": 2}, 512),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    changes, tokens = CASES[request.param]
    cfg = override(load_config(request.param), changes)
    trace = synthesize_for(cfg, tokens, seed=7)
    return cfg, trace, {"contiguous": contiguous(cfg), "mozart": place(trace, cfg, "mozart")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_a_valid_schedule(case, variant):
    cfg, trace, placements = case
    placement = placements["mozart" if variant == "C" else "contiguous"]
    for layer in range(trace.layers):
        schedule = build_schedule(cfg, placement, trace, layer, variant)
        validate(schedule, cfg, placement, trace)
        assert {c.phase for c in schedule.commands} == {"forward", "backward"}


def test_baseline_and_a_send_k_replicas_per_token_and_b_sends_fewer(case):
    cfg, trace, placements = case
    pl = placements["contiguous"]
    reps = {v: build_schedule(cfg, pl, trace, 0, v).replicas_per_token() for v in ("baseline", "A", "B")}
    assert reps["baseline"] == reps["A"] == cfg.moe.top_k
    assert reps["B"] <= reps["A"]


def test_b_replicas_equal_the_placement_c_t_when_all_experts_fit_the_slots():
    cfg = override(load_config("deepseek-moe-16b"), {"moe.layers": 1})  # 4 experts per chiplet, 4 slots
    trace = synthesize_for(cfg, 400, seed=1)
    pl = contiguous(cfg)
    schedule = build_schedule(cfg, pl, trace, 0, "B")
    assert schedule.replicas_per_token() == pytest.approx(layer_c_t(trace.experts[0], pl.expert_to_chiplet[0]))


def test_reloads_reuse_slots_when_a_chiplet_has_more_experts_than_slots():
    cfg = override(load_config("qwen3-30b-a3b"), {"moe.layers": 1})  # 8 experts per chiplet, 4 slots
    trace = synthesize_for(cfg, 256, seed=2)
    schedule = build_schedule(cfg, contiguous(cfg), trace, 0, "A")
    loads = schedule.of_kind(Load, "forward")
    assert len(loads) == cfg.moe.experts
    per_slot = {}
    for ld in loads:
        per_slot.setdefault((ld.chiplet, ld.slot), []).append(ld)
    assert len(per_slot) == cfg.chiplets * cfg.hardware.sram_slots
    assert all(len(v) == 2 for v in per_slot.values())
    # The reload depends on the combines of the slot's previous round: explicit reuse.
    first, second = per_slot[(0, 0)]
    users = {d.id for d in schedule.of_kind(Dispatch, "forward") if 0 in d.chiplets and first.expert in d.experts}
    combines = {w.id for w in schedule.of_kind(WaitCombined, "forward") if w.dispatch in users}
    assert users and combines <= set(second.deps)


def test_each_group_loads_heavier_clusters_first():
    cfg = override(load_config("deepseek-moe-16b"), {"moe.layers": 1})
    trace = synthesize_for(cfg, 1000, seed=3)
    pl = contiguous(cfg)
    counts = np.bincount(trace.experts[0].ravel(), minlength=cfg.moe.experts)
    weight = np.bincount(pl.expert_to_chiplet[0], weights=counts, minlength=cfg.chiplets)
    schedule = build_schedule(cfg, pl, trace, 0, "B")
    for g in range(cfg.groups):
        order = [ld.chiplet for ld in schedule.of_kind(Load, "forward") if ld.group == g]
        clusters = list(dict.fromkeys(order))
        assert [weight[c] for c in clusters] == sorted((weight[c] for c in clusters), reverse=True)
        # inside a cluster, heaviest expert first
        for c in clusters:
            experts = [ld.expert for ld in schedule.of_kind(Load, "forward") if ld.chiplet == c]
            assert list(counts[experts]) == sorted(counts[experts], reverse=True)


def test_chiplet_load_order_breaks_ties_by_id():
    order = chiplet_load_order(np.array([5, 5, 9, 1]), np.array([0, 0, 1, 1]), 2)
    assert [list(o) for o in order] == [[0, 1], [2, 3]]


def test_streaming_dispatches_micro_batches_and_backward_writes_back():
    cfg = load_config("tiny")
    trace = synthesize_for(cfg, cfg.training.tokens_per_step, seed=4)
    schedule = build_schedule(cfg, contiguous(cfg), trace, 0, "B")
    mbs = {d.micro_batch for d in schedule.of_kind(Dispatch, "forward")}
    assert mbs == set(range(cfg.training.micro_batches))
    assert all(d.save for d in schedule.of_kind(Dispatch, "forward"))
    assert not any(d.save for d in schedule.of_kind(Dispatch, "backward"))
    assert len(schedule.of_kind(Attention, "backward")) == cfg.training.micro_batches
    used = np.unique(trace.experts[0])
    assert sorted(w.expert for w in schedule.of_kind(WriteBack)) == sorted(used.tolist())
    baseline = build_schedule(cfg, contiguous(cfg), trace, 0, "baseline")
    assert {d.micro_batch for d in baseline.of_kind(Dispatch)} == {-1}
    assert all(d.per_expert and not d.reduce for d in baseline.of_kind(Dispatch))


def test_c_differs_from_b_only_by_placement():
    cfg = load_config("wafer4x4")
    trace = synthesize_for(cfg, 256, seed=5)
    pl = place(trace, cfg, "mozart")
    b, c = (build_schedule(cfg, pl, trace, 0, v) for v in ("B", "C"))
    assert [x.to_dict() for x in b.commands] == [x.to_dict() for x in c.commands]


def test_json_round_trip():
    cfg = load_config("tiny")
    trace = synthesize_for(cfg, 64, seed=6)
    schedule = build_schedule(cfg, contiguous(cfg), trace, 1, "C")
    again = Schedule.from_json(schedule.to_json())
    assert again.to_json() == schedule.to_json()
    assert isinstance(again.commands[0], type(schedule.commands[0]))
    assert dataclasses.replace(again).variant == "C"


@pytest.mark.parametrize("text,message", [
    ("{", "schedule must be valid JSON"),
    ('{"format": "other"}', "must have format 'mozart-schedule'"),
    ('{"format": "mozart-schedule", "version": 9}', "version must be 2, not 9"),
    ('{"format": "mozart-schedule", "version": 1}', "version must be 2, not 1"),
    ('{"format": "mozart-schedule", "version": 2, "commands": [{"kind": "Nope"}]}', "kind must be one of"),
    ('{"format": "mozart-schedule", "version": 2, "commands": [{"kind": "Load", "id": 0, "deps": [], '
     '"phase": "forward", "colour": 1}]}', "has no field 'colour'"),
    ('{"format": "mozart-schedule", "version": 2, "commands": [{"kind": "Load", "id": 0, "deps": [], '
     '"phase": "sideways"}]}', "phase must be one of forward, backward, not 'sideways'"),
])
def test_bad_json_is_a_schedule_error(text, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.from_json(text)


@pytest.mark.parametrize("kwargs,message", [
    ({"variant": "D"}, "variant must be one of baseline, A, B, C, not 'D'"),
    ({"slots": 0}, "slots must be a positive integer, not 0"),
    ({"micro_batches": 0}, "micro_batches must be a positive integer, not 0"),
    ({"layer": 5}, "layer must be in 0..1, not 5"),
])
def test_bad_arguments_are_schedule_errors(kwargs, message):
    cfg = load_config("tiny")
    trace = synthesize_for(cfg, 64, seed=6)
    args = {"layer": 0, "variant": "A"} | kwargs
    with pytest.raises(ScheduleError, match=message):
        build_schedule(cfg, contiguous(cfg), trace, args.pop("layer"), args.pop("variant"), **args)
