"""A hard constraint on the performance model's full-size features: the RTL-timed mode does not move.

The expected numbers below were computed with the code of commit af336b5, before the systolic compute model and
the other full-size features: ``predict_cycles`` of ``build_run(cfg, seed=1, variant=v)`` with the in-order
replay and with the engine alone, a digest of the schedule ``build_run`` built (the RTL co-simulation's cycle counts
depend on it), and the scaled and RTL timings' fields. New performance-model features (systolic compute,
attention on the attention chiplet, the micro-batch reading, energy) apply to the full-size evaluation only.

Moved on purpose since, and only there: issue 16 point 5 (one Baseline) made the Baseline's schedule save
inline (a SaveActivations per dispatch, no saving phase after the combines) and dropped ``Dispatch.bulk``
(every variant's schedule JSON changed: the field is gone and the format is version 2; the host programs the
RTL runs did not change). Baseline predictions: tiny 10281.0 / 10063.5 -> 10281.0 / 9903.5, wafer4x4
13982.25 / 13982.25 -> 13873.0 / 13157.75. Issue 16 point 3 (the root's issue window, ``hardware.issue_window`` = 2;
the streaming variants' host programs have no WAIT_LOADED in front of tokens) moved the in-order replay's numbers
only (the engine's and the schedules are unchanged), in-order replay: tiny Baseline/A/B 10281.0 / 10242.0 / 10226.0
-> 10278.0 / 10221.0 / 10199.0 (C: the engine decides), wafer4x4 Baseline/A/B/C 13873.0 / 13876.0 / 13916.0 /
13829.0 -> 13833.0 / 13816.0 / 13879.0 / 13774.0; ``in_order_timing`` gained ``issue_window``. The engine's
SaveActivations written as its dispatch computes (the chiplets save inline; it ran from the dispatch's end)
moved the engine's numbers: tiny Baseline/A/B/C 9903.5 / 9452.25 / 9434.30 / 11738.08 -> 9439.69 / 9368.32 /
9340.32 / 11629.0, wafer4x4 13157.75 / 12460.75 / 12478.56 / 12478.61 -> 12766.23 / 12349.39 (A, B and C), and
with them tiny C's prediction (the engine decides it) 11738.08 -> 11669.0. The replay's loads served in order
by their group's memory controller at its load rate (``in_order_timing`` gained ``load_cycles`` and
``load_latency``; a load took the engine's ready-to-done span shifted to its issue before, which counted the
engine's queueing behind the group's earlier loads again): tiny 10278 / 10221 / 10199 / 11669 -> 10277 / 10220 /
10198 / 11670, wafer4x4 13833 / 13816 / 13879 / 13774 -> 13832 / 13815 / 13878 / 13773.
"""

import dataclasses
import hashlib

import pytest

from mozart.model.perf.rtl import in_order_timing, predict_cycles, rtl_timing
from mozart.model.config import load_config
from mozart.model.perf import HardwareTiming
from mozart.model.wafer_run import build_run

# (config, variant): (predict_cycles(run), predict_cycles(run, in_order=False),
#                     sha256 of run.schedule.to_json(), first 16 hex digits). Pre-issue-19 values, but for
#                     the moves listed in the module docstring.
EXPECTED = {
    ("tiny", "baseline"): (10277.0, 9439.6875, "6abf485c8b219cb7"),
    ("tiny", "A"): (10220.0, 9368.324999999999, "43df5985f248eaed"),
    ("tiny", "B"): (10198.0, 9340.324999999999, "55e2f475de3695ce"),
    ("tiny", "C"): (11670.0, 11629.0, "57c20c9094c694f6"),
    ("wafer4x4", "baseline"): (13832.0, 12766.234375, "2efcc0e3f6af10d5"),
    ("wafer4x4", "A"): (13815.0, 12349.39285714286, "173565f76cf80dcc"),
    ("wafer4x4", "B"): (13878.0, 12349.39285714286, "c9639d651c6811ce"),
    ("wafer4x4", "C"): (13773.0, 12349.39285714286, "1b2a8c73f82dc613"),
}

# Pre-issue-19 fields of HardwareTiming.scaled, rtl_timing (scaled + its overrides) and in_order_timing, plus
# the root's input port (one flit per cycle), which leaves every prediction above unchanged, its issue window
# (issue 16 point 3) and the memory controller's weight stream (both listed in the module docstring).
PRE_ISSUE_19_TIMING = {
    "tiny": (
        dict(clock_hz=1e9, flit_bytes=8, burst_flits=8, link_bytes_per_cycle=8, mesh_link_bytes_per_cycle=8.0,
             hop_cycles=1.0, reduce_bytes_per_cycle=8, chiplet_macs_per_cycle=4, root_macs_per_cycle=4,
             sram_bytes_per_cycle=4, token_overhead_cycles=1.0, dram_bytes_per_cycle=8.0, dram_latency_cycles=8,
             dram_channels=1, attention_dram_bytes_per_cycle=8.0, act_bytes=1.0, partial_bytes=4.0,
             weight_bytes=1.0),
        dict(hop_cycles=2.0, reduce_bytes_per_cycle=6.4, token_overhead_cycles=0.0,
             dram_bytes_per_cycle=7.111111111111111, dram_latency_cycles=9.0, cycles_per_expert=64,
             root_port_bytes_per_cycle=8.0),
        dict(cycles_per_expert=64, token_slots=4, queue_flits=13, reduction_entries=4, queue_latency=2.0,
             hop_cycles=2.0, chiplet_input_flits=3, chiplet_output_flits=5, loaded_cycles=5.0,
             port_flits_per_cycle=1.0, issue_window=2, load_cycles=36.0, load_latency=13.0),
    ),
    "wafer4x4": (
        dict(clock_hz=1e9, flit_bytes=8, burst_flits=16, link_bytes_per_cycle=8,
             mesh_link_bytes_per_cycle=5.714285714285714, hop_cycles=1.0, reduce_bytes_per_cycle=8,
             chiplet_macs_per_cycle=8, root_macs_per_cycle=8, sram_bytes_per_cycle=8, token_overhead_cycles=1.0,
             dram_bytes_per_cycle=8.0, dram_latency_cycles=12, dram_channels=1, attention_dram_bytes_per_cycle=8.0,
             act_bytes=1.0, partial_bytes=4.0, weight_bytes=1.0),
        dict(hop_cycles=2.0, reduce_bytes_per_cycle=7.111111111111111, token_overhead_cycles=0.0,
             dram_bytes_per_cycle=7.529411764705882, dram_latency_cycles=13.0, cycles_per_expert=128,
             root_port_bytes_per_cycle=8.0),
        dict(cycles_per_expert=128, token_slots=4, queue_flits=25, reduction_entries=8, queue_latency=2.0,
             hop_cycles=2.0, chiplet_input_flits=4, chiplet_output_flits=9, loaded_cycles=5.0,
             port_flits_per_cycle=1.0, issue_window=2, load_cycles=136.0, load_latency=17.0),
    ),
}


@pytest.mark.parametrize("name,variant", list(EXPECTED), ids=[f"{n}-{v}" for n, v in EXPECTED])
def test_predict_cycles_and_schedule_are_the_expected_ones(name, variant):
    in_order, engine, digest = EXPECTED[name, variant]
    run = build_run(load_config(name), seed=1, variant=variant)
    assert hashlib.sha256(run.layers[0].schedule.to_json().encode()).hexdigest()[:16] == digest
    assert predict_cycles(run) == pytest.approx(in_order, rel=1e-12)
    assert predict_cycles(run, in_order=False) == pytest.approx(engine, rel=1e-12)


@pytest.mark.parametrize("name", list(PRE_ISSUE_19_TIMING))
def test_scaled_and_rtl_timings_are_the_pre_issue_19_ones(name):
    cfg = load_config(name)
    scaled, rtl_changes, in_order = PRE_ISSUE_19_TIMING[name]
    assert {f: getattr(HardwareTiming.scaled(cfg), f) for f in scaled} == scaled
    rtl = rtl_timing(cfg)
    assert {f: getattr(rtl, f) for f in scaled | rtl_changes} == scaled | rtl_changes
    assert dataclasses.asdict(in_order_timing(cfg)) == in_order
