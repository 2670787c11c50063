"""``mozart sweep SPEC --out FILE``: a design-space sweep on this machine or a Dask cluster, and its plots.

See ``docs/sweep.md`` for the spec format, the backends, resuming and the output columns.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from pathlib import Path

from mozart.model.sweep_spec import SweepError, SweepSpec, load_spec
from mozart.sim.sweep import STEP_TIME_COLUMN, run_sweep, read_rows

from ._common import add_out_argument, check_output_folder, positive

#: Cost axes of the Pareto plot, in order of preference: the first one the results have is the default (every
#: row of mozart.sim.sweep_eval has the chip area; ``chiplets`` is for results without it).
COST_COLUMNS = ("area_mm2", "energy_j", "power_w", "chiplets")
#: Numeric output columns of every point (mozart.sim.sweep_eval.evaluate_point), for checking --cost up front.
_NUMERIC_OUTPUTS = ("tokens", "chiplets", "experts_per_chiplet", "step_time_s", "step_cycles", "c_t",
                    "replicas_per_token", "area_mm2", "footprint_mm2", "energy_j", "power_w", "idle_s",
                    "link_busy_max_s", "link_utilisation_max")
_NUMERIC_OUTPUT_PATTERN = re.compile(r"(exposed|hidden)_[a-z]+_s|link_(bytes|busy_s)\..+|area_[a-z_]+_mm2"
                                     r"|energy_[a-z]+_j")
#: How many distinct errors of failed points the summary lists.
_ERRORS_LISTED = 5


def check_cost(cost: str, spec: SweepSpec) -> None:
    """``--cost`` names a numeric column a sweep writes (an output, or a numeric axis), checked before it runs."""
    numeric_axes = [a.key for a in spec.axes if all(_number(v) for v in a.values)]
    if cost in (*COST_COLUMNS, *_NUMERIC_OUTPUTS, *numeric_axes) or _NUMERIC_OUTPUT_PATTERN.fullmatch(cost):
        return
    raise SweepError(f"--cost must be a numeric column of the results (e.g. "
                     f"{', '.join([*_NUMERIC_OUTPUTS[1:3], *numeric_axes[:2]])}), not {cost!r}")


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="evaluate a design-space sweep with the performance model (locally or on Dask)",
        description="Evaluate every point of a sweep spec (TOML: configs, axes, trace, placement methods, "
        "variants, seed) with the performance model and write one row per point. An interrupted sweep "
        "resumes: rerun the same command. See docs/sweep.md.")
    parser.add_argument("spec", metavar="SPEC", help="the sweep spec (TOML)")
    add_out_argument(parser, required=True,
                     help="results: .parquet (pyarrow; CSV instead when it is missing) or .csv; its folder is "
                     "created if missing. When it holds this sweep's finished results, nothing is rerun; any "
                     "other existing file is refused unless --force")
    parser.add_argument("--workers", type=positive, metavar="N",
                        help="local worker processes, or LocalCluster workers with --cluster local "
                        "(default: the usable cores; 1 runs in this process)")
    parser.add_argument("--cluster", metavar="ADDRESS|local",
                        help="run on Dask: 'local' starts a LocalCluster on 127.0.0.1, tcp://HOST:PORT joins "
                        "a running scheduler (pip install 'mozart-wafer[cluster]')")
    parser.add_argument("--plot", metavar="DIR", help="write the Pareto front and per-axis sensitivity plots "
                        "(PNG) to DIR (created if missing)")
    parser.add_argument("--cost", metavar="COLUMN", help="the Pareto plot's cost axis (default: the first of "
                        + ", ".join(COST_COLUMNS) + " the results have)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    spec = load_spec(args.spec)
    if args.plot:  # every check before the computation, not after it
        check_output_folder(args.plot, "--plot")
    if args.cost is not None:
        if not args.plot:
            raise SweepError(f"--cost needs --plot DIR (it chooses the Pareto plot's cost axis), not only --cost "
                             f"{args.cost}")
        check_cost(args.cost, spec)
    result = run_sweep(spec, args.out, workers=args.workers, cluster=args.cluster, force=args.force)
    counts = (f"{result.path}: {result.points} points ({result.computed} computed, {result.resumed} resumed, "
              f"{result.failed} not ok)")
    if result.computed:
        rate = result.computed / result.seconds if result.seconds > 0 else 0.0
        print(f"{counts} in {result.seconds:.1f} s on {result.backend} ({rate:.1f} points/s, "
              f"{result.cpu_seconds:.1f} CPU s evaluating)")
    else:
        print(f"{counts}; nothing left to run")
    if result.same:
        print(f"{result.same} points were the same computation as another point (variant C is B on the point's "
              f"placement method): computed once, their rows copy it")
    rows = read_rows(result.path)
    _report_failures(rows)
    if args.plot:
        for path in plot_results(spec, rows, Path(args.plot), args.cost):
            print(f"wrote {path}")
    if result.points and result.failed == result.points:
        return 1  # nothing to show for the run: a script must notice
    return 0


def _report_failures(rows: list[dict]) -> None:
    """The failed points by error, most frequent first (they are in the results file, not in any plot)."""
    errors = Counter(str(r.get("error")) for r in rows if r.get("status") != "ok")
    if not errors:
        return
    print(f"{sum(errors.values())} points not ok (status and error are in the results; plots leave them out):")
    for error, count in errors.most_common(_ERRORS_LISTED):
        print(f"  {count:5d} x {error}")
    if len(errors) > _ERRORS_LISTED:
        print(f"  ... and {len(errors) - _ERRORS_LISTED} other errors")


# ---------------------------------------------------------------------------------------------------- plots

def plot_results(spec: SweepSpec, rows: list[dict], out_dir: Path, cost: str | None = None) -> list[Path]:
    """Write the Pareto front (step time against a cost column) and one sensitivity plot per axis.

    Parameters
    ----------
    spec : SweepSpec
        Names the axes (plus method and variant, and replicate when there are several).
    rows : list of dict
        The results (:func:`mozart.sim.sweep.read_rows`); only rows whose status is "ok" are plotted, and each
        plot says how many it left out. Axes of one value get no sensitivity plot.
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
    left_out = len(rows) - len(ok)
    written = [_plot_pareto(ok, cost, out_dir, left_out)] if cost else []
    inputs = [(a.key, a.values) for a in spec.axes] + [("method", spec.methods), ("variant", spec.variants)]
    if spec.replicates > 1:
        inputs.append(("replicate", tuple(range(spec.replicates))))
    # An axis of one value has nothing to compare: a plot of it would be a single dot.
    written += [_plot_sensitivity(ok, key, values, out_dir, left_out) for key, values in inputs if len(values) > 1]
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


def _save(fig, path: Path, left_out: int = 0) -> Path:
    fig.tight_layout()
    if left_out:  # failed points have no step time: say so where the reader looks
        fig.text(0.99, 0.01, f"{left_out} failed points not drawn (see the results' status and error)",
                 ha="right", va="bottom", fontsize=8, color="C3")
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # noqa: PLC0415
    plt.close(fig)
    return path


def _plot_pareto(rows: list[dict], cost: str, out_dir: Path, left_out: int = 0) -> Path:
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
    return _save(fig, out_dir / "pareto.png", left_out)


def _plot_sensitivity(rows: list[dict], key: str, order: tuple, out_dir: Path, left_out: int = 0) -> Path:
    """Step time per value of ``key`` (over all other inputs).

    A numeric axis is drawn as a line of medians with the min-max range as a band, at the values' positions;
    a categorical one (method, variant, a string axis) as one box of the step times per category, with no line
    joining categories. Values appear in the spec's order; a value without an ``ok`` point of a config is left
    out of its panel.
    """
    groups = _by_config(rows)
    numeric = all(_number(v) for v in order)
    fig, axes = _panels(len(groups))
    for ax, (name, group) in zip(axes, groups.items()):
        values = [v for v in order if any(r.get(key) == v for r in group)]
        at = [[r[STEP_TIME_COLUMN] for r in group if r.get(key) == v] for v in values]
        if numeric:
            ax.plot(values, [statistics.median(t) for t in at], marker="o", label="median")
            ax.fill_between(values, [min(t) for t in at], [max(t) for t in at], alpha=0.2, label="min-max")
            ax.legend()
        else:
            ax.boxplot(at, positions=range(len(values)), widths=0.6)
            ax.set_xticks(list(range(len(values))), [str(v) for v in values],
                          rotation=30 if len(values) > 6 else 0)
        ax.set(title=name, xlabel=key, ylabel=STEP_TIME_COLUMN)
        _scale(ax, [y for t in at for y in t])
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return _save(fig, out_dir / f"sensitivity-{safe}.png", left_out)
