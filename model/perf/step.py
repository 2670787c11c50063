"""One training step on a wafer: every layer's schedule, forward 0..L-1 then backward L-1..0, on one engine.

:func:`step_schedules` builds the schedules (cache them: they do not depend on the timing or the network);
:func:`simulate_step` runs them and returns a :class:`StepResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics import layer_c_t
from ..schedule import Schedule, build_schedule
from .engine import Engine, Record
from .network import make_network

__all__ = ["StepResult", "step_schedules", "simulate_step"]


@dataclass
class StepResult:
    """Members
    -------
    cycles, seconds : float
        Step latency (the last command of the step ends).
    replicas_per_token : float
        Forward dispatch replicas per token, averaged over layers (the schedule's C_T).
    records : list of Record
        Busy intervals, when the step was recorded.
    layer_spans : list of (layer, phase, start, end)
    """

    cycles: float
    seconds: float
    replicas_per_token: float
    records: list[Record] = field(default_factory=list)
    layer_spans: list[tuple[int, str, float, float]] = field(default_factory=list)


def step_schedules(cfg, placement, trace, variant: str, *, slots: int | None = None) -> list[Schedule]:
    """The schedule of every layer of ``trace`` for ``variant``."""
    return [build_schedule(cfg, placement, trace, layer, variant, slots=slots) for layer in range(trace.layers)]


def simulate_step(schedules: list[Schedule], trace, timing, workload, cfg, *, network: str = "tree",
                  mode: str = "aggregate", record: bool = False) -> StepResult:
    """Run one step of ``schedules`` (one per layer of ``trace``) and time it.

    Parameters
    ----------
    schedules : list of Schedule
    trace : Trace
        The routing the schedules were built from (token mode reads it).
    timing : HardwareTiming
    workload : Workload
    cfg : WaferConfig
        The tree shape (groups, chiplets per group).
    network : {"tree", "mesh"}
    mode : {"aggregate", "token"}
    record : bool
        Keep every busy interval (for breakdowns and plots).
    """
    engine = Engine(timing, make_network(network, cfg, timing), workload, mode, record)
    spans = []
    order = [(s, "forward") for s in schedules] + [(s, "backward") for s in reversed(schedules)]
    for schedule, phase in order:
        start = min(engine.inputs) if engine.inputs else 0.0
        engine.run(schedule, phase, trace.experts[schedule.layer])
        spans.append((schedule.layer, phase, start, max(engine.inputs)))
    replicas = float(np.mean([s.replicas_per_token() for s in schedules]))
    return StepResult(engine.end, timing.seconds(engine.end), replicas, engine.records, spans)


def placement_c_t(trace, placement) -> float:
    """The paper's C_T of a placement: distinct destination chiplets per token, averaged over layers."""
    e2c = placement.expert_to_chiplet
    return float(np.mean([layer_c_t(trace.experts[l], e2c[l if len(e2c) > 1 else 0]) for l in range(trace.layers)]))
