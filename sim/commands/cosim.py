"""``mozart cosim BLOCK --config PRESET [--seed N] [--waves]``: run a block's cocotb testbench on Verilator."""

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
    parser.set_defaults(func=_run)


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
