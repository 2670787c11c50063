"""``mozart evaluate``: the paper's comparisons on the wafer performance model.

For each reading of the paper's micro-batches (weights streamed once per layer per step, or once per
micro-batch), prints Table 4 (normalised step latency of Baseline/A/B/C, C_T, speedup of C) next to the paper
with the deviation per cell, the sequence-length and HBM2/SSD sensitivity studies, with --mesh the NoP-Tree against a
2D mesh, and every check against the paper that the sweep allows (orderings and magnitudes within stated
bands), each marked holds or FAILS. A failing check is a finding about the model, not an error: the exit
status stays 0. Progress goes to stderr. With --plot DIR it writes the latency breakdown and one layer's
Gantt chart per model as PNGs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from mozart.model.errors import ConfigError
from mozart.model.perf.evaluation import SEQ_LENS, run_sweep
from mozart.model.perf.parameters import model_names
from mozart.model.perf.report import checks, sections, summary

from ._common import add_json_argument, check_output_folder, positive, progress_bar, seed


def register(sub) -> None:
    parser = sub.add_parser("evaluate", help="reproduce the paper's Table 4 and sensitivity studies on the "
                            "performance model", description=__doc__.split("\n\n")[1])
    parser.add_argument("--models", nargs="+", metavar="MODEL", default=None,
                        help=f"models to evaluate (default: all of {', '.join(model_names())})")
    parser.add_argument("--trace", metavar="FILE", help="a routing trace (any format mozart.model.trace_io reads) "
                        "instead of the synthetic structured traces; models it does not fit are skipped")
    parser.add_argument("--plot", metavar="DIR", help="write latency-breakdown and Gantt PNGs to DIR (created if "
                        "missing)")
    parser.add_argument("--mesh", action="store_true", help="add the NoP-Tree against a 2D mesh of equal link "
                        "budget (seq 256, HBM2)")
    parser.add_argument("--quick", action="store_true", help="only Table 4 (seq 256, HBM2): skip the sequence-length "
                        "and SSD sweeps")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the synthetic traces (default 0)")
    parser.add_argument("--workers", type=positive, default=None, help="worker processes (default: up to 2)")
    add_json_argument(parser, "every timed step and each check of the paper's trends")
    parser.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    models = args.models or model_names()
    for name in models:
        if name not in model_names():
            raise ConfigError(f"--models must name models of {', '.join(model_names())}, not {name!r}")
    if args.plot:
        check_output_folder(args.plot, "--plot")  # before the computation, not after it
    trace = None
    if args.trace:
        from mozart.model.trace_io import load_trace  # noqa: PLC0415 (only with --trace)
        trace = load_trace(args.trace)
    start = time.perf_counter()
    seqs = (256,) if args.quick else SEQ_LENS
    bar = progress_bar(len(models) * len(seqs), "evaluate", "job")  # one job per model and sequence length

    def progress(line: str) -> None:
        bar.write(f"[{time.perf_counter() - start:6.1f} s] {line}", file=sys.stderr)
        if line.endswith(": done"):
            bar.update(1)

    if trace is not None:
        # Say how a user trace is stretched or cut to a step, since the tables do not show it.
        progress(f"{trace.source}: {trace.layers} layers, {trace.tokens} tokens; each step uses its first "
                 f"sequences x seq_len tokens (repeating the trace when it is shorter) and times its "
                 f"{trace.layers} layers")
    drams = ("hbm2",) if args.quick else ("hbm2", "ssd")
    try:
        cells = run_sweep(models, seq_lens=seqs, drams=drams, mesh=args.mesh, seed=args.seed, trace=trace,
                          workers=args.workers, progress=progress)
    finally:
        bar.close()
    source = trace.source if trace is not None else f"synthetic structured traces (seed {args.seed})"
    if args.json:
        plots = _write_plots(args, models, trace, progress)
        print(json.dumps({"source": source, "cells": [dataclasses.asdict(c) for c in cells],
                          "checks": [dataclasses.asdict(c) for c in checks(cells)],
                          "plots": [str(p) for p in plots]}, indent=1, default=_plain))
        progress("done")
        return 0
    print(f"Mozart performance model, {source}; parameters: model/perf/params/*.toml, docs/performance.md\n")
    for lines in sections(cells):
        print("\n".join(lines) + "\n")
    print("\n".join(summary(checks(cells))))
    _write_plots(args, models, trace, progress)
    progress("done")
    return 0


def _plain(value):
    """numpy scalars (the model's numbers) as plain JSON numbers and booleans."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"evaluate --json must write plain values, not {type(value).__name__}")


def _write_plots(args, models, trace, progress) -> list[Path]:
    if not args.plot:
        return []
    from mozart.model.perf.plots import write_plots  # noqa: PLC0415 (matplotlib only with --plot)
    paths = list(write_plots(Path(args.plot), models, seed=args.seed, trace=trace, progress=progress))
    for path in paths:
        progress(f"wrote {path}")
    return paths
