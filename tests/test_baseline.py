"""One Baseline (issue 16, point 5): the model's Baseline is the machine the RTL runs.

The paper's Baseline is "the same hardware, no optimisation"; we read "no overlap" at the root's phases (per
weight round all loads, a barrier, all dispatches, a barrier on all combines). The chiplet is the same in
every variant: it computes each token as it arrives, and writes the token's saved activations as it computes
it. So every Baseline ``SaveActivations`` depends on its own dispatch alone (no bulk saving phase), nothing
waits for a save, and a Baseline dispatch's compute starts before its last token has arrived (no
store-and-forward). Each check comes with the mutant it catches.
"""

import dataclasses

import pytest

from mozart.model.config import load_config
from mozart.model.errors import ScheduleError
from mozart.model.perf.engine import Engine
from mozart.model.perf.network import make_network
from mozart.model.perf.rtl import rtl_timing
from mozart.model.perf.workload import Workload
from mozart.model.schedule import Barrier, Dispatch, SaveActivations, Schedule, WaitCombined
from mozart.model.schedule_validate import validate
from mozart.model.wafer_run import build_run

PRESETS = ["tiny", "wafer4x4", "paper4x4"]   # paper4x4 has two weight rounds


def baseline_run(name):
    return build_run(load_config(name), seed=1, variant="baseline")


@pytest.mark.parametrize("name", PRESETS)
def test_every_baseline_save_depends_on_its_dispatch_alone(name):
    schedule = baseline_run(name).layers[0].schedule
    saves = schedule.of_kind(SaveActivations, "forward")
    dispatches = schedule.of_kind(Dispatch, "forward")
    assert sorted(s.dispatch for s in saves) == sorted(d.id for d in dispatches)
    assert all(s.deps == (s.dispatch,) for s in saves)
    save_ids = {s.id for s in saves}
    assert not [c.id for c in schedule.commands if save_ids & set(c.deps)]   # nothing waits for a save
    validate(schedule)


def with_bulk_save_phase(schedule: Schedule) -> Schedule:
    """The mutant: the old Baseline's shape, each save also behind the barrier on its round's combines."""
    commands = list(schedule.commands)
    waits = {c.dispatch: c.id for c in commands if isinstance(c, WaitCombined)}
    barrier_after = {w: c.id for c in commands if isinstance(c, Barrier) for w in c.deps}
    for i, c in enumerate(commands):
        if isinstance(c, SaveActivations):
            commands[i] = dataclasses.replace(c, deps=c.deps + (barrier_after[waits[c.dispatch]],))
    return dataclasses.replace(schedule, commands=commands)


@pytest.mark.parametrize("name", PRESETS)
def test_a_bulk_save_phase_is_rejected(name):
    with pytest.raises(ScheduleError, match=r"SaveActivations\): deps must be its dispatch alone"):
        validate(with_bulk_save_phase(baseline_run(name).layers[0].schedule))


def test_a_save_of_a_dispatch_without_its_save_bit_is_rejected():
    schedule = baseline_run("tiny").layers[0].schedule
    commands = [dataclasses.replace(c, save=False) if isinstance(c, Dispatch) else c for c in schedule.commands]
    with pytest.raises(ScheduleError, match="must have its save bit set, not save=False"):
        validate(dataclasses.replace(schedule, commands=commands))


def dispatch_windows(run):
    """Per chiplet, in order: (end of the DISPATCH packets' arrival over its leaf link, start of its compute)
    of each of its dispatches, from the engine's records on the RTL timing."""
    cfg = run.cfg
    timing = rtl_timing(cfg)
    network = make_network("tree", cfg, timing)
    engine = Engine(timing, network, Workload.scaled(cfg), "aggregate", record=True)
    engine.run(run.layers[0].schedule, "forward", run.layers[0].experts)
    windows = {}
    for chiplet in range(cfg.chiplets):
        leaf = network.dispatch_path(chiplet)[-1]
        arrived = sorted(r.end for r in engine.records if r.category == "dispatch" and r.resource == leaf)
        computing = sorted(r.start for r in engine.records if r.resource == ("chip", chiplet))
        assert len(arrived) == len(computing) > 0
        windows[chiplet] = list(zip(arrived, computing))
    return windows


@pytest.mark.parametrize("name", PRESETS)
def test_a_baseline_chiplet_computes_before_its_last_token_arrived(name):
    for chiplet, windows in dispatch_windows(baseline_run(name)).items():
        for arrived, compute_start in windows:
            assert compute_start < arrived, (chiplet, arrived, compute_start)


def test_store_and_forward_is_caught(monkeypatch):
    """The mutant: every dispatch's stages one after another (the old Baseline's store-and-forward)."""
    pipeline = Engine._pipeline
    monkeypatch.setattr(Engine, "_pipeline", lambda self, ready, stages, bulk=False: pipeline(self, ready, stages,
                                                                                               True))
    windows = dispatch_windows(baseline_run("tiny"))
    assert all(compute_start >= arrived for w in windows.values() for arrived, compute_start in w)
