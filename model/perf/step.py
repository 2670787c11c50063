"""One training step on a wafer: every layer's schedule, forward 0..L-1 then backward L-1..0, on one engine.

:func:`step_schedules` builds the schedules (cache them: they do not depend on the timing or the network);
:func:`simulate_step` runs them and returns a :class:`StepResult`.

The paper's "32 sequences in 4 micro-batches of 8, one transformer block's weights on chip at a time" reads
two ways (:data:`WEIGHT_READINGS`):

- ``"per-layer"``: the micro-batches stream through a layer one after another while its weights are on chip,
  then the next layer's weights come; each layer's weights are streamed once per step (forward and backward).
  One schedule per layer with ``micro_batches`` micro-batches: :func:`step_schedules`.
- ``"per-micro-batch"``: each micro-batch passes through the whole model (forward then backward) before the
  next one starts, as in gradient accumulation; the weights are streamed once per micro-batch.
  :func:`micro_batch_passes` builds one pass per micro-batch (its tokens, one micro-batch per schedule) and
  :func:`simulate_passes` runs them one after another on one engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics import layer_c_t
from ..schedule import Schedule, build_schedule
from ..trace import Trace
from .energy import Traffic
from .engine import Engine, Record
from .network import make_network

__all__ = ["StepResult", "step_schedules", "simulate_step", "simulate_passes", "micro_batch_passes",
           "WEIGHT_READINGS"]

WEIGHT_READINGS = ("per-layer", "per-micro-batch")


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
    traffic : Traffic
        MACs and bytes moved (:mod:`.energy` prices them).
    layer_spans : list of (layer, phase, start, end)
    """

    cycles: float
    seconds: float
    replicas_per_token: float
    records: list[Record] = field(default_factory=list)
    layer_spans: list[tuple[int, str, float, float]] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)


def step_schedules(cfg, placement, trace, variant: str, *, slots: int | None = None,
                   micro_batches: int | None = None, profile: Trace | None = None) -> list[Schedule]:
    """The schedule of every layer of ``trace`` for ``variant``; loads ordered by ``profile`` (default: the
    trace itself, see :func:`~mozart.model.schedule.build_schedule`)."""
    return [build_schedule(cfg, placement, trace, layer, variant, slots=slots, micro_batches=micro_batches,
                           profile=profile) for layer in range(trace.layers)]


def micro_batch_passes(cfg, placement, trace, variant: str, *,
                       profile: Trace | None = None) -> list[tuple[list[Schedule], Trace]]:
    """The ``"per-micro-batch"`` reading: one (schedules, trace) pass per micro-batch of ``trace``."""
    bounds = np.linspace(0, trace.tokens, cfg.training.micro_batches + 1).astype(int)
    passes = []
    for start, stop in zip(bounds, bounds[1:]):
        part = Trace(trace.experts[:, start:stop], trace.weights[:, start:stop], trace.num_experts,
                     f"{trace.source} tokens {start}..{stop - 1}")
        passes.append((step_schedules(cfg, placement, part, variant, micro_batches=1, profile=profile), part))
    return passes


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
    return simulate_passes([(schedules, trace)], timing, workload, cfg, network=network, mode=mode, record=record)


def simulate_passes(passes: list[tuple[list[Schedule], Trace]], timing, workload, cfg, *, network: str = "tree",
                    mode: str = "aggregate", record: bool = False) -> StepResult:
    """Run the (schedules, trace) ``passes`` one after another on one engine (each as :func:`simulate_step`
    runs one); the step ends when the last pass ends. ``replicas_per_token`` averages every pass's layers."""
    engine = Engine(timing, make_network(network, cfg, timing), workload, mode, record)
    spans = []
    for schedules, trace in passes:
        order = [(s, "forward") for s in schedules] + [(s, "backward") for s in reversed(schedules)]
        for schedule, phase in order:
            start = min(engine.inputs) if engine.inputs else 0.0
            engine.run(schedule, phase, trace.experts[schedule.layer])
            spans.append((schedule.layer, phase, start, max(engine.inputs)))
    replicas = float(np.mean([s.replicas_per_token() for schedules, _ in passes for s in schedules]))
    return StepResult(engine.end, timing.seconds(engine.end), replicas, engine.records, spans, engine.traffic)


def placement_c_t(trace, placement) -> float:
    """The paper's C_T of a placement: distinct destination chiplets per token, averaged over layers."""
    e2c = placement.expert_to_chiplet
    return float(np.mean([layer_c_t(trace.experts[layer], e2c[layer if len(e2c) > 1 else 0])
                          for layer in range(trace.layers)]))
