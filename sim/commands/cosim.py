"""``mozart cosim BLOCK --config PRESET [--seed N] [--waves]``: run a block's cocotb testbench on Verilator.

``mozart cosim wafer`` takes more options (variant, placement, trace, tokens, ``--compare``): one MoE layer
end to end on the RTL wafer against the model (:mod:`mozart.sim.wafer`)."""

from __future__ import annotations

import argparse

from mozart.model.config import load_config
from mozart.sim.designs import DESIGNS, design

from .config import add_config_argument
from .verilog import blocks_help


def register(sub) -> None:
    parser = sub.add_parser("cosim", help="co-simulate a block's testbench on Verilator and print a summary",
                            description="Build the block for the config with Verilator (cached per block, config "
                            "and --waves in $MOZART_BUILD_DIR, default ./.mozart-build), run its cocotb testbench "
                            "in one simulator process and print a summary. Exit status 0 if every test passed, 1 "
                            "if one failed, 2 for bad input or a missing toolchain.",
                            epilog=blocks_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("block", metavar="BLOCK", help="one of: " + ", ".join(sorted(DESIGNS)))
    add_config_argument(parser)
    parser.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (default: 1)")
    parser.add_argument("--waves", action="store_true", help="record a VCD waveform (a separate, traced build)")
    parser.add_argument("--test", dest="testcase", action="append", metavar="NAME",
                        help="run only this cocotb test (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="kill the simulator after this long")
    wafer = parser.add_argument_group("wafer options (block 'wafer' only)")
    wafer.add_argument("--variant", default=None, metavar="V", help="baseline, A, B or C (default: C)")
    wafer.add_argument("--placement", default=None, metavar="METHOD",
                       help="placement method (default: mozart for C, contiguous otherwise)")
    wafer.add_argument("--trace", default=None, metavar="FILE", help="routing trace (default: synthetic from --seed)")
    wafer.add_argument("--tokens", type=int, default=None, metavar="N", help="tokens of the layer (default: 256)")
    wafer.add_argument("--layer", type=int, default=None, metavar="L", help="layer of the trace (default: 0)")
    wafer.add_argument("--slots", type=int, default=None, metavar="S",
                       help="weight slots the schedule uses per chiplet (fewer than its experts: reloads)")
    wafer.add_argument("--skew", type=float, default=None, metavar="X",
                       help="Zipf exponent of the synthetic trace's expert popularity (hot experts)")
    wafer.add_argument("--idle", type=float, default=None, metavar="P", help="host input idle probability (0)")
    wafer.add_argument("--backpressure", type=float, default=None, metavar="P",
                       help="host output backpressure probability (0)")
    wafer.add_argument("--compare", action="store_true",
                       help="run baseline, A, B and C on the same trace; print RTL and model speedups")
    parser.set_defaults(func=_run)


_WAFER_OPTIONS = ("variant", "placement", "trace", "tokens", "layer", "slots", "skew", "idle", "backpressure")


def _run_wafer(args, cfg) -> int:
    from mozart.model.errors import MozartError  # noqa: PLC0415
    from mozart.sim import wafer  # noqa: PLC0415
    from mozart.model.schedule import VARIANTS  # noqa: PLC0415
    from mozart.sim.build import build  # noqa: PLC0415

    if args.testcase:
        raise MozartError("--test is not an option of the wafer (it has one test); leave it out")
    if args.compare and args.variant:
        raise MozartError("--compare runs every variant: leave out --variant")
    options = {k: getattr(args, k) for k in _WAFER_OPTIONS if getattr(args, k) is not None and k != "variant"}
    if options.get("tokens") is not None and options["tokens"] < 1:
        raise MozartError(f"--tokens must be a positive integer, not {options['tokens']}")
    for variant in (VARIANTS if args.compare else [args.variant or "C"]):
        wafer.validate(cfg, variant=variant, seed=args.seed, **options)   # bad input: exit 2 before building
    built = build("wafer", cfg, waves=args.waves)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)")
    common = dict(seed=args.seed, built=built, timeout=args.timeout, **options)
    if args.compare:
        results = wafer.compare(cfg, **common)
        print(wafer.format_compare(results))
        for r in results:
            if not r.ok:
                print(r.cosim.report())
        return 0 if all(r.ok for r in results) else 1
    result = wafer.run_layer(cfg, variant=args.variant or "C", **common)
    print(wafer.format_layer(cfg, result))
    sim_s = result.summary.get("sim_seconds") or result.cosim.test_seconds
    print(f"simulator: {result.cosim.seconds:.1f} s wall in all, the layer's {result.cycles} cycles in {sim_s:.1f} s "
          f"({result.cycles / max(sim_s, 1e-9):.0f} cycles/s)")
    if result.cosim.waveform:
        print(f"waveform: {result.cosim.waveform}")
    return 0 if result.ok else 1


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _run(args) -> int:
    from mozart.model.errors import MozartError  # noqa: PLC0415
    from mozart.sim import cosim  # noqa: PLC0415 (imports Amaranth and cocotb only when used)
    from mozart.sim.build import build  # noqa: PLC0415

    d = design(args.block)
    cfg = load_config(args.config)
    if args.seed < 0:
        raise MozartError(f"--seed must be a non-negative integer, not {args.seed}")
    if d.name == "wafer":
        return _run_wafer(args, cfg)
    used = [k for k in _WAFER_OPTIONS if getattr(args, k) is not None] + (["compare"] if args.compare else [])
    if used:
        raise MozartError(f"--{used[0]} is an option of 'mozart cosim wafer', not of block {d.name!r}")
    built = build(d, cfg, waves=args.waves)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)")
    result = cosim.run(built, seed=args.seed, testcase=args.testcase, timeout=args.timeout, check=False)
    print(result.report())
    for test, values in sorted(result.summary.items()):
        print(f"  {test}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))
    totals = result.totals()
    cycles = totals.get("cycles")
    line = f"total: {result.sim_time_ns:.0f} ns simulated in {result.seconds:.1f} s"
    if cycles:
        line += (f", {cycles:.0f} cycles ({cycles / max(result.test_seconds, 1e-9):.0f} cycles/s "
                 f"inside the tests)")
    if "packets" in totals:
        line += f", {totals['packets']:.0f} packets"
    print(line)
    return 0 if result.ok else 1
