"""The schedule validator: valid schedules pass; each class of invalid schedule fails with its rule."""

import dataclasses

import numpy as np
import pytest

from mozart.model.config import load_config
from mozart.model.errors import ScheduleError
from mozart.model.placement import Placement
from mozart.model.schedule import (VARIANTS, Dispatch, Load, Schedule, WaitCombined, WaitLoaded, WriteBack,
                                   build_schedule)
from mozart.model.schedule_validate import validate
from mozart.model.synth import synthesize_for

CFG = load_config("tiny")
E = CFG.moe.experts
PLACEMENT = Placement(np.arange(E) // (E // CFG.chiplets), CFG.chiplets_per_group, "contiguous")
TRACE = synthesize_for(CFG, 128, seed=11)


def schedule(variant="A", slots=None):
    return build_schedule(CFG, PLACEMENT, TRACE, 0, variant, slots=slots)


def edit(sched: Schedule, cid: int, **changes) -> Schedule:
    """A copy of ``sched`` with command ``cid`` changed."""
    cmds = [dataclasses.replace(c, **changes) if c.id == cid else c for c in sched.commands]
    return dataclasses.replace(sched, commands=cmds)


def first(sched, kind, phase="forward", where=lambda c: True):
    return next(c for c in sched.commands if isinstance(c, kind) and c.phase == phase and where(c))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("slots", [None, 1])
def test_valid_schedules_pass(variant, slots):
    validate(schedule(variant, slots), CFG, PLACEMENT, TRACE)


def test_unknown_dependency():
    s = schedule()
    d = first(s, Dispatch)
    with pytest.raises(ScheduleError, match=rf"command {d.id} \(Dispatch\): dependency must name a command of the "
                                            r"schedule, not the unknown id 9999"):
        validate(edit(s, d.id, deps=d.deps + (9999,)))


def test_wait_loaded_must_name_a_load():
    s = schedule()
    w = first(s, WaitLoaded)
    d = first(s, Dispatch)
    with pytest.raises(ScheduleError, match=rf"command {w.id} \(WaitLoaded\): load must name a Load command, not "
                                            rf"{d.id}"):
        validate(edit(s, w.id, load=d.id, deps=(d.id,)))


def test_duplicate_id():
    s = schedule()
    cmds = list(s.commands) + [dataclasses.replace(s.commands[3])]
    with pytest.raises(ScheduleError, match=r"command 3 \(\w+\): id must be unique"):
        validate(dataclasses.replace(s, commands=cmds))


def test_dependency_across_phases():
    s = schedule()
    back = first(s, Dispatch, "backward")
    fwd = first(s, Dispatch)
    with pytest.raises(ScheduleError, match=rf"command {back.id} \(Dispatch\): dependencies must stay in the "
                                            r"backward phase"):
        validate(edit(s, back.id, deps=back.deps + (fwd.id,)))


def test_dependency_cycle():
    s = schedule()
    load = first(s, Load)
    wait = first(s, WaitLoaded, where=lambda w: w.load == load.id)
    with pytest.raises(ScheduleError, match=r"dependencies must be acyclic, not the cycle .*"
                                            rf"{load.id} -> {wait.id}|{wait.id} -> {load.id}"):
        validate(edit(s, load.id, deps=(wait.id,)))


def test_dispatch_before_its_weights_arrived():
    s = schedule()
    d = first(s, Dispatch)
    waits = {c.id for c in s.commands if isinstance(c, WaitLoaded)}
    with pytest.raises(ScheduleError, match=rf"command {d.id} \(Dispatch\): must wait for the weights of expert "
                                            r"\d+ on chiplet \d+ .*rule: no dispatch before its weights"):
        validate(edit(s, d.id, deps=tuple(x for x in d.deps if x not in waits)))


def test_dispatch_to_a_chiplet_that_does_not_hold_the_expert():
    s = schedule()
    d = first(s, Dispatch)
    other = (d.chiplets[0] + 1) % CFG.chiplets
    group = other // CFG.chiplets_per_group
    with pytest.raises(ScheduleError, match=rf"command {d.id} \(Dispatch\): expert \d+ must be loaded on one of its "
                                            rf"chiplets \[{other}\].*rule: a token goes only to a chiplet that holds"):
        validate(edit(s, d.id, chiplets=(other,), group=group))


def test_token_that_selects_none_of_the_dispatched_experts():
    s = schedule()
    d = first(s, Dispatch)
    stranger = next(t for t in range(TRACE.tokens) if not set(TRACE.experts[0, t]) & set(d.experts))
    with pytest.raises(ScheduleError, match=rf"command {d.id} \(Dispatch\): token {stranger} .* must select one of "
                                            r"the experts .*not none \(rule: no token goes to a chiplet that lacks"):
        validate(edit(s, d.id, tokens=np.r_[d.tokens, stranger]), trace=TRACE)


def test_every_selected_expert_runs_exactly_once():
    s = schedule()
    d = first(s, Dispatch)
    with pytest.raises(ScheduleError, match=r"forward phase: token \d+ expert \d+ must be served by a Dispatch"):
        validate(edit(s, d.id, tokens=d.tokens[1:], pairs=d.pairs - int(np.isin(TRACE.experts[0, d.tokens[0]],
                                                                                   d.experts).sum())), trace=TRACE)


def test_slot_overwritten_while_in_use():
    # One slot per chiplet: every load after the first reuses it and must wait for the previous combines.
    s = schedule(slots=1)
    reload = next(c for c in s.commands if isinstance(c, Load) and c.phase == "forward" and c.deps)
    with pytest.raises(ScheduleError, match=rf"command {reload.id} \(Load\): overwrites slot 0 of chiplet "
                                            rf"{reload.chiplet} while expert \d+ .*still in use by command \d+"):
        validate(edit(s, reload.id, deps=()))


def test_write_back_before_the_last_gradient():
    s = schedule()
    wb = first(s, WriteBack, "backward")
    combines = {c.id for c in s.commands if isinstance(c, WaitCombined)}
    with pytest.raises(ScheduleError, match=rf"command {wb.id} \(WriteBack\): must follow the WaitCombined of "
                                            r"dispatch \d+ \(rule: write back an expert only after its last"):
        validate(edit(s, wb.id, deps=tuple(x for x in wb.deps if x not in combines) or
                      (first(s, WaitLoaded, "backward", lambda w: s.commands[w.load].expert == wb.expert).id,)))


def test_load_where_the_placement_does_not_put_the_expert():
    s = schedule()
    load = first(s, Load)
    moved = Placement(np.roll(PLACEMENT.expert_to_chiplet[0], 2), CFG.chiplets_per_group)
    with pytest.raises(ScheduleError, match=rf"command {load.id} \(Load\): expert {load.expert} must be loaded on "
                                            r"chiplet \d+ where the placement puts it"):
        validate(s, CFG, moved)


def test_fields_out_of_range():
    s = schedule()
    load = first(s, Load)
    with pytest.raises(ScheduleError, match=rf"command {load.id} \(Load\): slot must be in 0..1, not 7"):
        validate(edit(s, load.id, slot=7))
    with pytest.raises(ScheduleError, match=rf"command {load.id} \(Load\): group must be the group of chiplet"):
        validate(edit(s, load.id, group=load.group + 1))
