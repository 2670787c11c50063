"""``mozart cosim wafer``: MoE layers end to end on the RTL wafer against the model (:mod:`mozart.sim.wafer`).

Its own subcommand of ``cosim``, with its own options (variant, placement, trace, tokens, layers, ``--compare``); the
other blocks' subcommands run their cocotb testbench (:mod:`.cosim`). Not a top-level command (the leading
underscore keeps :func:`mozart.sim.cli.build_parser` from registering it).
"""

from __future__ import annotations

import argparse
import json

from mozart.model.errors import MozartError
from mozart.model.schedule import Variant

from ._common import non_negative, non_negative_float, positive
from ._cosim_results import layer_json, say


def add_wafer_arguments(parser) -> None:
    options = parser.add_argument_group("wafer options")
    options.add_argument("--variant", default=None, metavar="V", help="baseline, A, B or C (default: C)")
    options.add_argument("--placement", default=None, metavar="METHOD|FILE",
                         help="placement method, or a placement file (.json) from 'mozart allocate' (default: "
                         "mozart for C, contiguous otherwise)")
    options.add_argument("--trace", default=None, metavar="FILE", help="routing trace (default: synthetic from "
                         "--seed)")
    options.add_argument("--tokens", type=positive, default=None, metavar="N",
                         help="tokens per layer (default: 256)")
    options.add_argument("--layer", type=non_negative, default=None, metavar="L",
                         help="first layer of the trace (default: 0)")
    options.add_argument("--layers", type=positive, default=None, metavar="N",
                         help="consecutive MoE layers in one run: a layer's tokens are the previous one's outputs "
                         "(default: 1; at most moe.layers)")
    options.add_argument("--attention", action=argparse.BooleanOptionalAction, default=None,
                         help="the host stands in for attention between layers, spacing each micro-batch's tokens "
                         "by the attention time derived from Qwen3 (default: on with --layers above 1)")
    options.add_argument("--slots", type=positive, default=None, metavar="S",
                         help="weight slots the schedule uses per chiplet (fewer than its experts: reloads)")
    options.add_argument("--skew", type=non_negative_float, default=None, metavar="X",
                         help="Zipf exponent of the synthetic trace's expert popularity (hot experts)")
    options.add_argument("--idle", type=float, default=None, metavar="P", help="host input idle probability (0)")
    options.add_argument("--backpressure", type=float, default=None, metavar="P",
                         help="host output backpressure probability (0)")
    options.add_argument("--train", action="store_true", default=None,
                         help="one training step: forward through the layers, backward through them in reverse, "
                         "the weight updates and write-backs, all checked bit-exact")
    options.add_argument("--plot", default=None, metavar="FILE.png",
                         help="write the RTL's and the model's cycle breakdown of every run as a bar chart")
    options.add_argument("--compare", action="store_true",
                         help="run baseline, A, B and C on the same trace, and C on mozart+balance; print RTL, model "
                         "and paper speedups")


_LAYER_OPTIONS = ("placement", "trace", "tokens", "layer", "layers", "attention", "slots", "skew", "idle",
                  "backpressure", "train")


def run_wafer(args, cfg) -> int:
    from mozart.sim import wafer  # noqa: PLC0415 (imports Amaranth and cocotb only when used)
    from mozart.sim.build import build, stderr_progress  # noqa: PLC0415

    if args.compare and args.variant:
        raise MozartError("--compare runs every variant: leave out --variant")
    if args.plot is not None and not args.plot.endswith(".png"):
        raise MozartError(f"--plot must name a .png file, not {args.plot!r}")
    options = {k: getattr(args, k) for k in _LAYER_OPTIONS if getattr(args, k) is not None}
    for variant in (list(Variant) if args.compare else [args.variant or Variant.C]):
        wafer.validate(cfg, variant=variant, seed=args.seed, **options)   # bad input: exit 2 before building
    out = say(args)
    progress = stderr_progress("wafer", cfg.name)
    built = build("wafer", cfg, waves=args.waves, progress=progress)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)", file=out)
    common = dict(seed=args.seed, built=built, timeout=args.timeout, progress=progress, **options)
    if args.compare:
        return _compare(args, cfg, wafer, common, out)
    result = wafer.run_layer(cfg, variant=args.variant or Variant.C, **common)
    print(wafer.format_layer(cfg, result), file=out)
    print(wafer.format_activity([result]), file=out)
    _plot(args, cfg, wafer, [result], out)
    sim_s = result.summary.get("sim_seconds") or result.cosim.test_seconds
    print(f"simulator: {result.cosim.seconds:.1f} s wall in all, the layer's {result.cycles} cycles in {sim_s:.1f} s "
          f"({result.cycles / max(sim_s, 1e-9):.0f} cycles/s)", file=out)
    if result.cosim.waveform:
        print(f"waveform: {result.cosim.waveform}", file=out)
    if args.json:
        print(json.dumps(layer_json(result), indent=1))
    return 0 if result.ok else 1


def _compare(args, cfg, wafer, common: dict, out) -> int:
    results = wafer.compare(cfg, **common)
    print(wafer.format_compare(results), file=out)
    print(wafer.format_activity(results), file=out)
    _plot(args, cfg, wafer, results, out)
    for r in results:
        if not r.ok:
            print(r.cosim.report(), file=out)
    for r in results:
        if r.cosim.waveform:
            print(f"waveform {r.variant}: {r.cosim.waveform}", file=out)
    if args.json:
        print(json.dumps({"ok": all(r.ok for r in results), "variants": [layer_json(r) for r in results]},
                         indent=1))
    return 0 if all(r.ok for r in results) else 1



def _plot(args, cfg, wafer, results, out) -> None:
    if args.plot and any(r.summary for r in results):
        layers = results[0].summary.get("layers", 1)
        path = wafer.plot_activity(results, args.plot, f"{cfg.name}, {layers} layer(s), seed {args.seed}: where the "
                                   "cycles go (RTL activity record | model)")
        print(f"plot: {path}", file=out)
