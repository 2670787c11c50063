"""The paper's comparisons on the performance model: Table 4, sequence length, HBM2 against SSD, tree against mesh.

:func:`run_sweep` times one training step for every (model, variant, sequence length, DRAM) and, at sequence
length 256 on HBM2, on the mesh too, in the "per-layer" reading of the paper's micro-batches; the
"per-micro-batch" reading (:mod:`.step`) at sequence length 256 for every model and at every length for
:data:`SENSITIVITY_MODELS`. Traces are synthetic and structured (:func:`mozart.model.synth.synthesize_for`)
unless a user trace is given: a *profiling* trace (step 0) places the experts of variant C with the paper's
method (``mozart.model.placers.place(..., "mozart")``) and the step itself runs on the next step's trace
(step 1), as the paper profiles once and trains afterwards. The other variants use the contiguous placement
(experts ``i * n / E`` on chiplet ``i``). Every variant's load order ("heavier clusters first") comes from
the profile too, not from the timed step's routing. A user trace is both the profile and the step.

Work is split in (model, sequence length, reading) jobs over a process pool; schedules are built once per job
and run on both DRAMs (and the mesh).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..config import load_config, override
from ..errors import ConfigError, TraceError
from ..placement import Placement
from ..schedule import Variant
from ..trace import Trace
from .energy import COMPONENTS, step_energy
from .parameters import load_params, model_names
from .step import WEIGHT_READINGS, micro_batch_passes, placement_c_t, simulate_passes, step_schedules
from .timing import DRAM_KINDS, HardwareTiming
from .workload import Workload

__all__ = ["Cell", "PAPER_TABLE4", "PAPER_SEQ", "PAPER_SSD", "VARIANT_LABELS", "SENSITIVITY_MODELS", "run_sweep",
           "prepare_trace", "placements_for",
           "SEQ_LENS"]

SEQ_LENS = (128, 256, 512)
VARIANT_LABELS = {"baseline": "Baseline", "A": "A", "B": "B", "C": "C"}

#: docs/paper.md, Table 4: normalised step latency (A, B, C), C_T (A, B, C) and speedup of C.
PAPER_TABLE4 = {
    "qwen3-30b-a3b": {"latency": (0.73, 0.59, 0.52), "c_t": (8, 6.58, 5.77), "speedup": 1.92},
    "olmoe-1b-7b": {"latency": (0.63, 0.48, 0.422), "c_t": (8, 6.84, 5.63), "speedup": 2.37},
    "deepseek-moe-16b": {"latency": (0.67, 0.56, 0.46), "c_t": (6, 5.56, 4.32), "speedup": 2.17},
}
#: docs/paper.md, sensitivity: Qwen3 Baseline step seconds and speedup of C per sequence length (256: the Baseline
#: seconds of the paper's HBM2/SSD figure, the speedup of Table 4).
PAPER_SEQ = {128: (3.88, 1.47), 256: (4.87, 1.92), 512: (7.64, 2.34)}
#: Models whose sensitivity studies (sequence length, SSD) are also run in the "per-micro-batch" reading: the
#: paper's are on Qwen3 only. The other models get that reading at sequence length 256 only, which keeps
#: ``mozart evaluate`` within its time budget (the reading streams every weight four times as often).
SENSITIVITY_MODELS = ("qwen3-30b-a3b",)
#: The paper's HBM2/SSD sensitivity figure: Qwen3 Baseline step seconds (HBM2, SSD) per sequence length.
PAPER_SSD = {128: (3.88, 7.61), 256: (4.87, 9.17), 512: (7.64, 13.03)}


@dataclass(frozen=True)
class Cell:
    """One timed step."""

    model: str
    variant: str
    seq_len: int
    dram: str
    network: str
    seconds: float
    replicas_per_token: float  # the schedule's forward replicas per token
    c_t: float                 # the placement's C_T (distinct chiplets per token); k without de-duplication
    reading: str = "per-layer"  # how often weights stream: once per layer per step, or per micro-batch (step.py)
    energy: tuple = ()          # joules per component of energy.COMPONENTS


def prepare_trace(trace: Trace, tokens: int) -> Trace:
    """The first ``tokens`` tokens of ``trace``, repeating it when it is shorter."""
    if trace.tokens == 0:
        raise TraceError(f"{trace.source}: a trace for the performance model must have tokens, not 0")
    if trace.tokens >= tokens:
        return trace.head(tokens)
    index = np.resize(np.arange(trace.tokens), tokens)
    return Trace(trace.experts[:, index], trace.weights[:, index], trace.num_experts,
                 f"{trace.source} (repeated to {tokens} tokens)")


def _contiguous(cfg) -> Placement:
    experts = cfg.moe.experts
    return Placement(np.arange(experts) // (experts // cfg.chiplets), cfg.chiplets_per_group, "contiguous")


def _trace(model: str, seq_len: int, seed: int, user: Trace | None, changes: dict, step: int) -> tuple:
    """(params, cfg, trace): the profiling trace (``step`` 0) or the timed step's (``step`` 1)."""
    from ..synth import synthesize_for  # noqa: PLC0415 (heavy only when synthesising)
    params = load_params(model)
    cfg = override(load_config(params.config), {**changes, "training.seq_len": seq_len})
    tokens = cfg.training.tokens_per_step
    if user is not None:
        user.check_fits(cfg)
        return params, cfg, prepare_trace(user, tokens)
    return params, cfg, synthesize_for(cfg, tokens, seed, step=step)


def placements_for(model: str, seed: int = 0, user: Trace | None = None, changes: dict | None = None
                   ) -> tuple[dict[str, np.ndarray], Trace]:
    """The expert_to_chiplet arrays per variant (C: the paper's method on the profiling trace at seq 256), and
    that profile (every variant's load order comes from it: no schedule knows its step's routing in advance)."""
    from ..placers import place  # noqa: PLC0415
    params, cfg, profile = _trace(model, 256, seed, user, changes or {}, step=0)
    clustered = place(profile, cfg, "mozart", seed=seed)
    contiguous = _contiguous(cfg)
    return {v: (clustered if v == "C" else contiguous).expert_to_chiplet for v in VARIANT_LABELS}, profile


def _swept(model: str, seq_len: int, reading: str) -> bool:
    """Whether the sweep times ``reading`` at ``seq_len`` for ``model`` (see :data:`SENSITIVITY_MODELS`)."""
    return reading == "per-layer" or seq_len == 256 or model in SENSITIVITY_MODELS


def _job(model: str, seq_len: int, reading: str, drams: tuple[str, ...], mesh: bool, seed: int,
         user: Trace | None, placed: tuple[dict[str, np.ndarray], Trace], changes: dict) -> list[Cell]:
    """Every variant of ``model`` at ``seq_len`` in ``reading``, on every DRAM (and the mesh at 256, per-layer);
    the schedules are built once and run on each."""
    params, cfg, step = _trace(model, seq_len, seed, user, changes, step=1)
    e2c, profile = placed
    workload = Workload.full_size(params, cfg)
    # The mesh comparison is made on the per-layer reading only (seq 256, HBM2).
    runs = [(d, "tree") for d in drams] + ([("hbm2", "mesh")] if mesh and seq_len == 256
                                           and reading == "per-layer" else [])
    cells = []
    for variant in VARIANT_LABELS:
        placement = Placement(e2c[variant], cfg.chiplets_per_group, variant)
        c_t = placement_c_t(step, placement) if Variant(variant).dedup else float(cfg.moe.top_k)
        if reading == "per-layer":
            passes = [(step_schedules(cfg, placement, step, variant, profile=profile), step)]
        else:
            passes = micro_batch_passes(cfg, placement, step, variant, profile=profile)
        for dram, network in runs:
            timing = HardwareTiming.full_size(params, cfg, dram, reading)
            result = simulate_passes(passes, timing, workload, cfg, network=network)
            energy = step_energy(result.traffic, params, dram)
            cells.append(Cell(model, variant, seq_len, dram, network, result.seconds, result.replicas_per_token,
                              c_t, reading, tuple(energy[k] for k in COMPONENTS)))
    return cells


def run_sweep(models: Iterable[str] | None = None, *, seq_lens: Iterable[int] = SEQ_LENS,
              drams: Iterable[str] = DRAM_KINDS, mesh: bool = True, seed: int = 0, trace: Trace | None = None,
              changes: dict | None = None, workers: int | None = None,
              readings: Iterable[str] = WEIGHT_READINGS,
              progress: Callable[[str], None] | None = None) -> list[Cell]:
    """Time every (model, variant, sequence length, DRAM) and the mesh at 256 on HBM2.

    Parameters
    ----------
    models : iterable of str, optional
        Default: every model with a parameter file.
    trace : Trace, optional
        A user trace for every model it fits (the others are skipped); default synthetic traces.
    changes : dict, optional
        Config overrides applied to every model (``{"moe.layers": 4}`` for a quick, reduced sweep).
    workers : int, optional
        Processes; default ``min(2, cpu count)``. 1 runs in this process.
    readings : iterable of str, optional
        How often the weights stream (:data:`~mozart.model.perf.step.WEIGHT_READINGS`); default both.
    progress : callable, optional
        Called with one line per finished job.
    """
    models = list(models or model_names())
    seq_lens, drams, changes, readings = tuple(seq_lens), tuple(drams), dict(changes or {}), tuple(readings)
    for reading in readings:
        if reading not in WEIGHT_READINGS:
            raise ConfigError(f"reading must be one of {', '.join(WEIGHT_READINGS)}, not {reading!r}")
    for model in models:
        load_params(model)  # fail early on an unknown name
    if trace is not None:
        fitting = []
        for model in models:
            try:
                trace.check_fits(override(load_config(load_params(model).config), changes))
                fitting.append(model)
            except TraceError:
                pass
        if not fitting:
            raise TraceError(f"{trace.source}: the trace ({trace.num_experts} experts, top-{trace.top_k}) must fit one "
                             f"of the models {', '.join(models)}, not none")
        models = fitting
    workers = workers or min(2, os.cpu_count() or 1)
    say = progress or (lambda line: None)
    jobs = [(m, s, r) for m in models for s in seq_lens for r in readings if _swept(m, s, r)]
    cells: list[Cell] = []
    if workers == 1:
        placements = {m: placements_for(m, seed, trace, changes) for m in models}
        for m, s, r in jobs:
            cells += _job(m, s, r, drams, mesh, seed, trace, placements[m], changes)
            say(f"{m} seq {s} {r}: done")
        return cells
    with ProcessPoolExecutor(workers) as pool:
        placed = {m: pool.submit(placements_for, m, seed, trace, changes) for m in models}
        placements = {}
        for m in models:
            placements[m] = placed[m].result()
            say(f"{m}: placed")
        # Longest jobs first keeps both workers busy to the end (the second reading streams 4x the weights).
        jobs.sort(key=lambda msr: -msr[1] * load_config(load_params(msr[0]).config).moe.layers
                  * (1 if msr[2] == "per-layer" else 3))
        futures = {pool.submit(_job, m, s, r, drams, mesh, seed, trace, placements[m], changes): (m, s, r)
                   for m, s, r in jobs}
        for future, (m, s, r) in futures.items():
            cells += future.result()
            say(f"{m} seq {s} {r}: done")
    return cells
