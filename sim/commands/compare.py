"""``mozart compare``: every placement method side by side on one trace, optionally with plots.

Per layer the statistics (V, C) are computed once and shared; each method's time is its own placement work
summed over the layers (the shared statistics time is printed separately). Metrics are averaged over the
layers (:func:`mozart.model.metrics.placement_metrics`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mozart.model.config import load_config
from mozart.model.errors import PlacementError
from mozart.model.metrics import PlacementMetrics, expected_distinct_chiplets, placement_metrics
from mozart.model.placement import Placement
from mozart.model.placers import PLACERS, LayerData, place_layer
from mozart.model.placers.exact import MAX_EXPERTS

from ._common import LayerProgress, add_json_argument, check_output_folder, non_negative, seed
from .allocate import add_trace_argument
from .config import add_config_argument

__all__ = ["MethodResult", "default_methods", "parse_methods", "compare", "format_table", "write_plots"]


@dataclass
class MethodResult:
    """One row of the comparison: the placement, its metrics and the time spent placing."""

    method: str
    placement: Placement
    metrics: PlacementMetrics
    seconds: float


def default_methods(cfg) -> list[str]:
    """Every method that can place this config (``exact`` only up to its size limit)."""
    return [m for m in PLACERS if m != "exact" or cfg.moe.experts <= MAX_EXPERTS]


def is_placement_file(entry: str) -> bool:
    """A ``--methods`` entry that names a placement file (as ``mozart allocate`` writes) rather than a method."""
    return entry.endswith(".json")


def parse_methods(text: str | None, cfg) -> list[str]:
    """``"a,b,c"`` -> validated method names and placement files (``None``: :func:`default_methods`)."""
    if text is None:
        return default_methods(cfg)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise PlacementError(f"--methods must name at least one of {', '.join(PLACERS)}, not {text!r}")
    for m in methods:
        if m not in PLACERS and not is_placement_file(m):
            raise PlacementError(f"--methods: each method must be one of {', '.join(PLACERS)} or a placement "
                                 f"file (.json, from 'mozart allocate'), not {m!r}")
    if "exact" in methods and cfg.moe.experts > MAX_EXPERTS:
        raise PlacementError(f"--methods: 'exact' needs at most {MAX_EXPERTS} experts, but config {cfg.name!r} "
                             f"has moe.experts = {cfg.moe.experts}")
    return list(dict.fromkeys(methods))


def load_placements(methods: list[str], cfg, layers: int) -> dict[str, Placement]:
    """The placement files among ``methods``, loaded and checked against ``cfg`` and the trace's layers."""
    from mozart.model.placement_io import load_placement  # noqa: PLC0415

    fixed = {}
    for m in methods:
        if is_placement_file(m):
            if not Path(m).is_file():
                raise PlacementError(f"--methods: a placement file must exist, not {m!r}")
            placement = load_placement(m, cfg)
            if placement.layers != layers:
                raise PlacementError(f"{m}: the placement must have the trace's {layers} layers, not "
                                     f"{placement.layers}")
            fixed[m] = placement
    return fixed


def compare(trace, cfg, methods: list[str], *, seed: int = 0, progress=None,
            eval_trace=None, fixed: dict[str, Placement] | None = None) -> tuple[list[MethodResult], float]:
    """Place ``trace`` with every method and measure it.

    Parameters
    ----------
    trace : Trace
        The tokens the methods place from.
    cfg : WaferConfig
    methods : list of str
    seed : int
    progress : callable, optional
        Called as ``progress(layers_done, layers)`` after each layer.
    fixed : dict of str to Placement, optional
        Placements given rather than computed (files from ``mozart allocate``), by their entry in ``methods``.
    eval_trace : Trace, optional
        Measure on these tokens instead (same layers): a held-out estimate. Measured on ``trace`` itself,
        co-activation methods also fit the noise of its tokens, which flatters them (on uniform routing by
        10-20 standard errors at 4k tokens).

    Returns
    -------
    results : list of MethodResult
        In the order of ``methods``.
    stats_seconds : float
        Time spent computing the shared per-layer statistics.
    """
    trace.check_fits(cfg)
    measured = trace if eval_trace is None else eval_trace
    measured.check_fits(cfg)
    if measured.layers != trace.layers:
        raise PlacementError(f"the evaluation trace must have the placed trace's {trace.layers} layers, "
                             f"not {measured.layers}")
    e2c = {m: np.empty((trace.layers, trace.num_experts), dtype=np.int32) for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    stats_seconds = 0.0
    for layer in range(trace.layers):
        data = LayerData(trace, layer)
        start = time.perf_counter()
        data.coactivation, data.frequency  # noqa: B018 (computed once, shared by the methods)
        stats_seconds += time.perf_counter() - start
        for m in methods:
            if fixed and m in fixed:
                e2c[m][layer] = fixed[m].expert_to_chiplet[layer]
                continue
            start = time.perf_counter()
            e2c[m][layer] = place_layer(data, cfg, m, seed=seed)
            seconds[m] += time.perf_counter() - start
        if progress:
            progress(layer + 1, trace.layers)
    results = []
    for m in methods:
        placement = Placement(e2c[m], cfg.chiplets_per_group, fixed[m].method if fixed and m in fixed else m)
        results.append(MethodResult(m, placement, placement_metrics(measured, placement, cfg), seconds[m]))
    return results, stats_seconds


def format_table(results: list[MethodResult]) -> str:
    """The comparison as an aligned text table, one row per method."""
    head = ("method", "C_T", "root", "chip imb", "group imb", "x-chiplet", "x-group", "time s")
    rows = [(r.method, f"{r.metrics.c_t:.3f}", f"{r.metrics.root_replicas:.3f}",
             f"{r.metrics.chiplet_imbalance:.3f}", f"{r.metrics.group_imbalance:.3f}",
             f"{r.metrics.cross_chiplet_fraction:.3f}", f"{r.metrics.cross_group_fraction:.3f}",
             f"{r.seconds:.2f}") for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def write_plots(trace, cfg, results: list[MethodResult], out_dir: str | Path, layer: int, order_by: str) -> list[Path]:
    """PNG plots of ``layer``: the co-activation heat map reordered by ``order_by``'s chiplets, and the load
    (replicas received) per chiplet and per group of every method. Returns the files written."""
    import matplotlib  # noqa: PLC0415 (plots are optional; keep the command fast without them)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from mozart.model.stats import coactivation_counts, coactivation_probability  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_name = {r.method: r for r in results}
    prob = coactivation_probability(coactivation_counts(trace, layer))
    np.fill_diagonal(prob, 0.0)  # the diagonal is activation, not co-activation
    e2c = by_name[order_by].placement.expert_to_chiplet[layer]
    order = np.lexsort((np.arange(len(e2c)), e2c))  # by chiplet, then expert id
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, idx, title in ((axes[0], np.arange(len(e2c)), "expert id order"),
                           (axes[1], order, f"grouped by {order_by} chiplets")):
        im = ax.imshow(prob[np.ix_(idx, idx)], cmap="viridis", interpolation="nearest")
        ax.set_title(f"co-activation P, layer {layer}: {title}")
        ax.set_xlabel("expert")
        ax.set_ylabel("expert")
    for b in range(cfg.experts_per_chiplet, cfg.moe.experts, cfg.experts_per_chiplet):
        width = 1.2 if b % cfg.experts_per_group == 0 else 0.4
        axes[1].axhline(b - 0.5, color="white", lw=width)
        axes[1].axvline(b - 0.5, color="white", lw=width)
    fig.colorbar(im, ax=axes, shrink=0.8)
    heat = out / f"coactivation_layer{layer}.png"
    fig.savefig(heat, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(max(8, cfg.chiplets * 0.6), 8))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        axes[0].bar(np.arange(cfg.chiplets) + i * width, r.metrics.chiplet_tokens[layer], width, label=r.method)
        axes[1].bar(np.arange(cfg.groups) + i * width, r.metrics.group_tokens[layer], width, label=r.method)
    for ax, what, n in ((axes[0], "chiplet", cfg.chiplets), (axes[1], "group", cfg.groups)):
        ax.set_xticks(np.arange(n) + 0.4 - width / 2, [str(j) for j in range(n)])
        ax.set_xlabel(what)
        ax.set_ylabel("replicas received (tokens)")
        ax.set_title(f"load per {what}, layer {layer}")
    axes[0].legend(fontsize=8, ncol=min(4, len(results)))
    fig.tight_layout()
    load = out / f"load_layer{layer}.png"
    fig.savefig(load, dpi=110)
    plt.close(fig)
    return [heat, load]


def register(sub) -> None:
    parser = sub.add_parser(
        "compare", help="compare placement methods on a routing trace",
        description="Place a trace with every method (or --methods) and print one table: C_T (replicas per "
        "token at dispatch, one per destination chiplet), root-link replicas (one per destination group), "
        "chiplet and group load imbalance (max/mean replicas received), the fraction of co-activated pairs "
        "split across chiplets and groups, and placement time; all averaged over layers.")
    add_config_argument(parser, default=None)
    add_trace_argument(parser)
    parser.add_argument("--methods", metavar="A,B,...",
                        help="comma-separated methods (default: all; 'exact' only up to 16 experts): "
                        + ", ".join(PLACERS) + "; an entry ending in .json is a placement file from "
                        "'mozart allocate', measured as it is")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random methods (default: 0)")
    parser.add_argument("--eval-trace", metavar="FILE",
                        help="measure on this trace instead of --trace (held-out tokens, same layers): an "
                        "honest estimate, since methods fitted to --trace also fit its noise")
    parser.add_argument("--plot", metavar="DIR", help="write PNG plots (heat map, loads) into DIR (created if "
                        "missing)")
    parser.add_argument("--plot-layer", type=non_negative, default=0, metavar="L", help="layer to plot (default: 0)")
    add_json_argument(parser, "the table")
    parser.set_defaults(func=_compare)


def _compare(args) -> int:
    from mozart.model.trace_io import load_trace  # noqa: PLC0415

    cfg = load_config(args.config)
    methods = parse_methods(args.methods, cfg)
    if args.plot:
        check_output_folder(args.plot, "--plot")
    trace = load_trace(args.trace)
    trace.check_fits(cfg)
    fixed = load_placements(methods, cfg, trace.layers)
    eval_trace = load_trace(args.eval_trace) if args.eval_trace else None
    if args.plot and not 0 <= args.plot_layer < trace.layers:
        raise PlacementError(f"--plot-layer must be in 0..{trace.layers - 1}, not {args.plot_layer}")
    start = time.perf_counter()
    progress = LayerProgress("compare")
    try:
        results, stats_seconds = compare(trace, cfg, methods, seed=args.seed, progress=progress,
                                         eval_trace=eval_trace, fixed=fixed)
    finally:
        progress.close()
    chance = expected_distinct_chiplets(cfg.moe.experts, trace.top_k, cfg.chiplets)
    plots = []
    if args.plot:
        order_by = next((m for m in ("mozart+refine", "mozart", "metis", "exact") if m in methods), methods[0])
        plots = write_plots(trace, cfg, results, args.plot, args.plot_layer, order_by)
    if args.json:
        print(json.dumps(_as_json(cfg, trace, eval_trace, results, chance, plots), indent=1))
        return 0
    print(f"{cfg.name}: {trace.layers} layers x {trace.tokens} tokens, {cfg.moe.experts} experts top-{trace.top_k} "
          f"on {cfg.groups} groups x {cfg.chiplets_per_group} chiplets ({trace.source})")
    print(f"measured on {eval_trace.tokens} held-out tokens of {eval_trace.source}" if eval_trace else
          "measured on the same tokens (in-sample; --eval-trace FILE measures on held-out tokens)")
    print(format_table(results))
    print(f"C_T without de-duplication = {trace.top_k}; uniform-routing expectation with de-duplication = "
          f"{chance:.3f}. Statistics {stats_seconds:.2f} s (shared), total {time.perf_counter() - start:.2f} s.")
    for path in plots:
        print(f"wrote {path}")
    return 0


def _as_json(cfg, trace, eval_trace, results: list[MethodResult], chance: float, plots: list[Path]) -> dict:
    """The comparison for scripts: what ``format_table`` prints, as numbers."""
    return {
        "config": cfg.name, "trace": trace.source, "layers": trace.layers, "tokens": trace.tokens,
        "top_k": trace.top_k, "measured_on": eval_trace.source if eval_trace else trace.source,
        "uniform_c_t": chance,
        "methods": [{"method": r.method, "c_t": r.metrics.c_t, "root_replicas": r.metrics.root_replicas,
                     "chiplet_imbalance": r.metrics.chiplet_imbalance,
                     "group_imbalance": r.metrics.group_imbalance,
                     "cross_chiplet_fraction": r.metrics.cross_chiplet_fraction,
                     "cross_group_fraction": r.metrics.cross_group_fraction, "seconds": r.seconds}
                    for r in results],
        "plots": [str(p) for p in plots],
    }
