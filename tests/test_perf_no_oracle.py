"""No oracle: the load order ("heavier clusters first") comes from the profile the placement was built from,
not from the timed step's own routing, which is not known before the step's loads go out."""

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ScheduleError
from mozart.model.placement import Placement
from mozart.model.schedule import Load, build_schedule
from mozart.model.synth import synthesize_for
from mozart.model.trace import Trace


def setup():
    cfg = override(load_config("olmoe-1b-7b"), {"moe.layers": 1, "training.sequences": 4})
    e = cfg.moe.experts
    placement = Placement(np.arange(e) // (e // cfg.chiplets), cfg.chiplets_per_group, "contiguous")
    tokens = cfg.training.tokens_per_step
    return cfg, placement, synthesize_for(cfg, tokens, seed=5, step=0), synthesize_for(cfg, tokens, seed=5, step=1)


def load_order(schedule):
    return [(c.chiplet, c.expert) for c in schedule.of_kind(Load, "forward")]


def reversed_popularity(trace):
    """The trace with expert ids mirrored: the heaviest experts become the lightest."""
    return Trace(trace.num_experts - 1 - trace.experts, trace.weights, trace.num_experts, "mirrored")


def test_load_order_follows_the_profile_not_the_step():
    cfg, placement, profile, step = setup()
    from_profile = build_schedule(cfg, placement, step, 0, "B", profile=profile)
    again = build_schedule(cfg, placement, reversed_popularity(step), 0, "B", profile=profile)
    # The step's own routing changes, the profile does not: the loads go out in the same order.
    assert load_order(from_profile) == load_order(again)


def test_mutant_oracle_order_differs_from_the_profile_order():
    cfg, placement, profile, step = setup()
    mirrored = reversed_popularity(step)
    oracle = build_schedule(cfg, placement, mirrored, 0, "B")  # the pre-issue-19 order: the step's own counts
    honest = build_schedule(cfg, placement, mirrored, 0, "B", profile=profile)
    assert load_order(oracle) != load_order(honest)


def test_without_a_profile_the_trace_is_its_own_profile():
    cfg, placement, _, step = setup()
    assert build_schedule(cfg, placement, step, 0, "C").to_json() == \
        build_schedule(cfg, placement, step, 0, "C", profile=step).to_json()


def test_a_profile_of_another_shape_is_refused():
    cfg, placement, profile, step = setup()
    other = Trace(np.concatenate([profile.experts] * 2), np.concatenate([profile.weights] * 2), profile.num_experts)
    with pytest.raises(ScheduleError, match="the profile must have the trace's 1 layers and 64 experts, not 2 and 64"):
        build_schedule(cfg, placement, step, 0, "B", profile=other)


def test_sweep_orders_loads_by_the_profile_the_placement_was_built_from(tmp_path):
    """``mozart sweep`` (sim/sweep_eval.py) as ``mozart evaluate``: its schedules' load order is the profile's
    (step 0), the trace its placement was built from; the oracle order (the timed step's own routing) differs
    on this point, so the test fails on a sweep that orders by the step."""
    from mozart.model.sweep_spec import load_spec
    from mozart.sim import sweep_eval
    from mozart.sim.sweep import expand
    (tmp_path / "s.toml").write_text("""
[sweep]
configs = ["olmoe-1b-7b"]
methods = ["contiguous"]
variants = ["B"]
seed = 5
[axes]
"moe.layers" = [1]
"training.sequences" = [4]
""")
    [point] = expand(load_spec(tmp_path / "s.toml"))
    sweep_eval.evaluate_point(point)
    profile, step = next(reversed(sweep_eval._TRACES.items.values()))
    placement = next(reversed(sweep_eval._PLACEMENTS.items.values()))
    [swept] = next(reversed(sweep_eval._SCHEDULES.items.values()))
    cfg = override(load_config("olmoe-1b-7b"), {"moe.layers": 1, "training.sequences": 4})
    honest = build_schedule(cfg, placement, step, 0, "B", profile=profile)
    oracle = build_schedule(cfg, placement, step, 0, "B")
    assert load_order(honest) != load_order(oracle)  # the point can tell the two apart
    assert load_order(swept) == load_order(honest)
