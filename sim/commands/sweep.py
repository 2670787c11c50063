"""``mozart sweep SPEC --out FILE``: a design-space sweep on this machine or a Dask cluster, and its plots.

See ``docs/sweep.md`` for the spec format, the backends, resuming and the output columns.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from mozart.model.sweep_spec import SweepError, SweepSpec, load_spec
from mozart.sim.sweep import STEP_TIME_COLUMN, run_sweep, read_rows

#: Cost axes of the Pareto plot, in order of preference: the first one the results have is the default.
COST_COLUMNS = ("area_mm2", "power_w", "chiplets")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="evaluate a design-space sweep with the performance model (locally or on Dask)",
        description="Evaluate every point of a sweep spec (TOML: configs, axes, trace, placement methods, "
        "variants, seed) with the performance model and write one row per point. An interrupted sweep "
        "resumes: rerun the same command. See docs/sweep.md.")
    parser.add_argument("spec", metavar="SPEC", help="the sweep spec (TOML)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="results: .parquet (pyarrow; CSV instead when it is missing) or .csv")
    parser.add_argument("--workers", type=_positive_int, metavar="N",
                        help="local worker processes, or LocalCluster workers with --cluster local "
                        "(default: the usable cores; 1 runs in this process)")
    parser.add_argument("--cluster", metavar="ADDRESS|local",
                        help="run on Dask: 'local' starts a LocalCluster on 127.0.0.1, tcp://HOST:PORT joins "
                        "a running scheduler (pip install 'mozart-wafer[cluster]')")
    parser.add_argument("--plot", metavar="DIR", help="write the Pareto front and per-axis sensitivity plots "
                        "(PNG) to DIR")
    parser.add_argument("--cost", metavar="COLUMN", help="the Pareto plot's cost axis (default: the first of "
                        + ", ".join(COST_COLUMNS) + " the results have)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    spec = load_spec(args.spec)
    result = run_sweep(spec, args.out, workers=args.workers, cluster=args.cluster)
    counts = (f"{result.path}: {result.points} points ({result.computed} computed, {result.resumed} resumed, "
              f"{result.failed} not ok)")
    if result.computed:
        rate = result.computed / result.seconds if result.seconds > 0 else 0.0
        print(f"{counts} in {result.seconds:.1f} s on {result.backend} ({rate:.1f} points/s, "
              f"{result.cpu_seconds:.1f} CPU s evaluating)")
    else:
        print(f"{counts}; nothing left to run")
    if args.plot:
        for path in plot_results(spec, read_rows(result.path), Path(args.plot), args.cost):
            print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------------- plots

def plot_results(spec: SweepSpec, rows: list[dict], out_dir: Path, cost: str | None = None) -> list[Path]:
    """Write the Pareto front (step time against a cost column) and one sensitivity plot per axis.

    Parameters
    ----------
    spec : SweepSpec
        Names the axes (plus method and variant, and replicate when there are several).
    rows : list of dict
        The results (:func:`mozart.sim.sweep.read_rows`); only rows whose status is "ok" are plotted.
    out_dir : Path
    cost : str, optional
        A numeric output column; default: the first of :data:`COST_COLUMNS` present.

    Returns
    -------
    list of Path
        The PNG files written.
    """
    ok = [r for r in rows if r.get("status") == "ok" and _number(r.get(STEP_TIME_COLUMN))]
    if not ok:
        raise SweepError(f"--plot needs at least one point with status 'ok' and a {STEP_TIME_COLUMN}, not "
                         f"{len(rows)} rows without one")
    columns = set().union(*(r.keys() for r in ok))
    if cost is None:
        cost = next((c for c in COST_COLUMNS if c in columns), None)
    elif cost not in columns or not any(_number(r.get(cost)) for r in ok):
        raise SweepError(f"--cost must be a numeric column of the results (e.g. "
                         f"{', '.join(c for c in COST_COLUMNS if c in columns)}), not {cost!r}")
    import matplotlib  # noqa: PLC0415 (plots are optional; a sweep without --plot never loads matplotlib)
    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_plot_pareto(ok, cost, out_dir)] if cost else []
    inputs = [(a.key, a.values) for a in spec.axes] + [("method", spec.methods), ("variant", spec.variants)]
    if spec.replicates > 1:
        inputs.append(("replicate", tuple(range(spec.replicates))))
    written += [_plot_sensitivity(ok, key, values, out_dir) for key, values in inputs]
    return written


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both coordinates (both minimised), by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(set(points)):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _by_config(rows: list[dict]) -> dict[str, list[dict]]:
    # Models differ by orders of magnitude in step time: each gets its own panel.
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["config"], []).append(row)
    return groups


def _panels(count: int):
    import matplotlib.pyplot as plt  # noqa: PLC0415
    fig, axes = plt.subplots(1, count, figsize=(5 * count, 4), squeeze=False)
    return fig, axes[0]


def _scale(ax, values: list[float]) -> None:
    # Step times of one model span orders of magnitude over sequence length and size: log keeps both ends.
    low = min(values, default=0.0)
    if low > 0 and max(values) / low > 20:
        ax.set_yscale("log")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # noqa: PLC0415
    plt.close(fig)
    return path


def _plot_pareto(rows: list[dict], cost: str, out_dir: Path) -> Path:
    groups = _by_config(rows)
    fig, axes = _panels(len(groups))
    for ax, (name, group) in zip(axes, groups.items()):
        xy = [(r[cost], r[STEP_TIME_COLUMN]) for r in group if _number(r.get(cost))]
        ax.scatter([x for x, _ in xy], [y for _, y in xy], s=10, alpha=0.4, label="points")
        front = pareto_front(xy)
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="C3", marker="o",
                label=f"Pareto front ({len(front)})")
        ax.set(title=name, xlabel=cost, ylabel=STEP_TIME_COLUMN)
        _scale(ax, [y for _, y in xy])
        ax.legend()
    return _save(fig, out_dir / "pareto.png")


def _plot_sensitivity(rows: list[dict], key: str, order: tuple, out_dir: Path) -> Path:
    """Median step time per value of ``key`` (over all other inputs), with the min-max range as a band.

    Values appear in the spec's order; a value without an ``ok`` point of a config is left out of its panel.
    """
    groups = _by_config(rows)
    fig, axes = _panels(len(groups))
    for ax, (name, group) in zip(axes, groups.items()):
        values = [v for v in order if any(r.get(key) == v for r in group)]
        at = [[r[STEP_TIME_COLUMN] for r in group if r.get(key) == v] for v in values]
        ticks = range(len(values))
        ax.plot(ticks, [statistics.median(t) for t in at], marker="o", label="median")
        ax.fill_between(ticks, [min(t) for t in at], [max(t) for t in at], alpha=0.2, label="min-max")
        ax.set_xticks(list(ticks), [str(v) for v in values], rotation=30 if len(values) > 6 else 0)
        ax.set(title=name, xlabel=key, ylabel=STEP_TIME_COLUMN)
        _scale(ax, [y for t in at for y in t])
        ax.legend()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return _save(fig, out_dir / f"sensitivity-{safe}.png")

