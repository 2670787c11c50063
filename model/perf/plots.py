"""PNG charts of the performance model (matplotlib, Agg backend).

- ``<model>-breakdown.png``: per configuration (Baseline, A, B, C) a stacked bar of exposed time per category
  (it sums to the step latency) beside a bar of the hidden time (overlapped work), from
  :mod:`mozart.model.perf.breakdown`.
- ``<model>-gantt.png``: one layer of configuration C (the middle layer), forward and backward: weight
  streams, saves and write-backs on each group's DRAM, compute on each chiplet and on the root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import load_config, override
from ..errors import TraceError
from ..placement import Placement
from .breakdown import CATEGORIES, LABELS, breakdown
from .evaluation import VARIANT_LABELS, _trace, placements_for
from .parameters import load_params
from .step import simulate_step, step_schedules
from .timing import HardwareTiming
from .workload import Workload

__all__ = ["write_plots", "write_activity_plot", "COLOURS"]

COLOURS = {"attention": "#4c72b0", "expert": "#55a868", "dispatch": "#c44e52", "weights": "#8172b2",
           "saving": "#ccb974", "idle": "#dddddd"}


def _recorded_runs(model: str, seed: int, trace, changes: dict) -> dict:
    params, cfg, step = _trace(model, 256, seed, trace, changes, step=1)
    e2c, profile = placements_for(model, seed, trace, changes)
    timing, workload = HardwareTiming.full_size(params, cfg), Workload.full_size(params, cfg)
    runs = {}
    for variant in VARIANT_LABELS:
        schedules = step_schedules(cfg, Placement(e2c[variant], cfg.chiplets_per_group), step, variant,
                                   profile=profile)
        runs[variant] = simulate_step(schedules, step, timing, workload, cfg, record=True)
    return {"runs": runs, "timing": timing, "cfg": cfg}


def write_plots(directory: Path, models, *, seed: int = 0, trace=None, changes: dict | None = None,
                progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the breakdown and Gantt PNGs of every model to ``directory``; returns the paths."""
    import matplotlib  # noqa: PLC0415 (only when plotting)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in models:
        if trace is not None:
            try:
                trace.check_fits(override(load_config(load_params(model).config), changes or {}))
            except TraceError:  # a trace that does not fit this model: skip it, as the sweep does
                continue
        data = _recorded_runs(model, seed, trace, changes or {})
        if progress:
            progress(f"{model}: recorded runs for the plots")
        paths.append(_breakdown_png(plt, directory / f"{model}-breakdown.png", model, data))
        paths.append(_gantt_png(plt, directory / f"{model}-gantt.png", model, data))
    return paths


def _breakdown_png(plt, path: Path, model: str, data: dict) -> Path:
    timing = data["timing"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for x, (variant, result) in enumerate(data["runs"].items()):
        bd = breakdown(result.records, result.cycles)
        bottom = 0.0
        for cat in (*CATEGORIES, "idle"):
            value = timing.seconds(bd.idle if cat == "idle" else bd.exposed[cat]) * 1e3
            ax.bar(x - 0.18, value, 0.34, bottom=bottom, color=COLOURS[cat], label=LABELS[cat] if x == 0 else None)
            bottom += value
        bottom = 0.0
        for cat in CATEGORIES:
            value = timing.seconds(bd.hidden[cat]) * 1e3
            ax.bar(x + 0.18, value, 0.34, bottom=bottom, color=COLOURS[cat], hatch="//", alpha=0.6)
            bottom += value
    ax.set_xticks(range(len(data["runs"])), [f"{VARIANT_LABELS[v]}\nexposed | hidden" for v in data["runs"]])
    ax.set_ylabel("ms per training step")
    ax.set_title(f"{model}: latency breakdown (seq 256, HBM2, NoP-Tree)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _gantt_png(plt, path: Path, model: str, data: dict) -> Path:
    result, cfg, timing = data["runs"]["C"], data["cfg"], data["timing"]
    layer = cfg.moe.layers // 2
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.32 * (cfg.chiplets + 2 * cfg.groups + 1) + 1.5), sharey=True)
    rows = (["root"] + [f"DRAM {g}" for g in range(cfg.groups)]
            + [f"chiplet {g}.{c}" for g in range(cfg.groups) for c in range(cfg.chiplets_per_group)])
    index = {name: i for i, name in enumerate(rows)}
    for ax, phase in zip(axes, ("forward", "backward")):
        records = [r for r in result.records if r.layer == layer and r.phase == phase]
        t0 = min((r.start for r in records), default=0.0)
        for r in records:
            row = _row(r, cfg.chiplets_per_group)
            if row is None:
                continue
            ax.barh(index[row], timing.seconds(r.end - r.start) * 1e6, left=timing.seconds(r.start - t0) * 1e6,
                    color=COLOURS[r.category], height=0.8)
        ax.set_title(f"{model}, config C, layer {layer}: {phase}")
        ax.set_xlabel("microseconds from the layer's first command")
    axes[0].set_yticks(range(len(rows)), rows, fontsize=7)
    axes[0].invert_yaxis()
    shown = [c for c in CATEGORIES if c != "dispatch"]  # links are not rows of the chart
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[c]) for c in shown]
    axes[1].legend(handles, [LABELS[c] for c in shown], fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _row(record, per_group: int) -> str | None:
    kind = record.resource[0]
    if kind in ("root", "root-dram"):
        return "root"
    if kind == "dram":
        return f"DRAM {record.resource[1]}"
    if kind == "chip":
        g, c = divmod(record.resource[1], per_group)
        return f"chiplet {g}.{c}"
    return None  # links and reducers: in the breakdown, not in the Gantt chart


def write_activity_plot(path: Path, title: str, rows: list[tuple[str, dict, dict]]) -> Path:
    """A stacked bar of exposed cycles per category (summing to the run's cycles) for the RTL and the model side
    by side, per run: ``rows`` of (label, RTL activity, model activity), each activity a dict with ``exposed``
    (cycles per category of :data:`CATEGORIES`) and ``idle`` (the co-simulation's activity record and
    :func:`mozart.model.perf.rtl.predict_breakdown`'s, as ``tb/tb_wafer.py`` writes them)."""
    import matplotlib  # noqa: PLC0415 (only when plotting)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4.5))
    for x, (_, rtl, model) in enumerate(rows):
        for offset, activity in ((-0.18, rtl), (0.18, model)):
            bottom = 0.0
            for cat in (*CATEGORIES, "idle"):
                value = activity["idle"] if cat == "idle" else activity["exposed"][cat]
                ax.bar(x + offset, value, 0.34, bottom=bottom, color=COLOURS[cat],
                       hatch="//" if offset > 0 else None, label=LABELS[cat] if x == 0 and offset < 0 else None)
                bottom += value
    ax.set_xticks(range(len(rows)), [f"{label}\nRTL | model" for label, _, _ in rows], fontsize=8)
    ax.set_ylabel("cycles (exposed: each cycle to its first busy category)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
