"""``mozart cosim BLOCK --config PRESET [--seed N] [--waves]``: run a block's cocotb testbench on Verilator.

Every block is its own subcommand of ``cosim``, so each takes only its own options: ``mozart cosim wafer`` adds
the layer's (variant, placement, trace, tokens, ``--compare``; :mod:`._cosim_wafer`)."""

from __future__ import annotations

import json

from mozart.model.config import load_config
from mozart.model.errors import MozartError
from mozart.model.hardware_rules import check_hardware
from mozart.sim.designs import DESIGNS, design

from ._common import add_json_argument, seed, timeout
from ._cosim_results import result_json, say
from ._cosim_wafer import add_wafer_arguments, run_wafer
from .config import add_config_argument

_DESCRIPTION = ("Build the block for the config with Verilator (cached per block, config and --waves in "
                "$MOZART_BUILD_DIR, default ./.mozart-build), run its cocotb testbench in one simulator process "
                "and print a summary. Exit status 0 if every test passed, 1 if one failed, 2 for bad input or a "
                "missing toolchain, 3 if the build or the simulator failed (crash, timeout).")


def register(sub) -> None:
    parser = sub.add_parser("cosim", help="co-simulate a block's testbench on Verilator and print a summary",
                            description=_DESCRIPTION)
    blocks = parser.add_subparsers(dest="block", metavar="BLOCK", parser_class=type(parser))
    blocks.required = True
    for name, d in sorted(DESIGNS.items()):
        block = blocks.add_parser(name, help=d.summary, description=f"{d.summary}. {_DESCRIPTION}")
        _add_common_arguments(block)
        if name == "wafer":
            add_wafer_arguments(block)
        else:
            block.add_argument("--test", dest="testcase", action="append", metavar="NAME",
                               help="run only this cocotb test (repeatable; --list-tests names them)")
        block.set_defaults(func=_run)


def _add_common_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--seed", type=seed, default=1, metavar="N", help="random seed (default: 1)")
    parser.add_argument("--waves", action="store_true", help="record a VCD waveform (a separate, traced build)")
    parser.add_argument("--list-tests", action="store_true", help="print the block's cocotb tests and exit")
    parser.add_argument("--timeout", type=timeout, default=None, metavar="SECONDS",
                        help="kill the simulator after this many seconds (a positive number; exit 3)")
    add_json_argument(parser, "the summary")


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _check_tests(d, names: list[str] | None) -> None:
    if not names:
        return
    known = d.tests()
    for name in names:
        if name not in known:
            raise MozartError(f"--test must be a test of block {d.name!r} ({', '.join(known)}), not {name!r}")


def _run(args) -> int:
    from mozart.sim import cosim  # noqa: PLC0415 (imports Amaranth and cocotb only when used)
    from mozart.sim.build import build, stderr_progress  # noqa: PLC0415

    d = design(args.block)
    if args.list_tests:
        print("\n".join(d.tests()))
        return 0
    cfg = load_config(args.config)
    check_hardware(cfg)
    if d.name == "wafer":
        return run_wafer(args, cfg)
    _check_tests(d, args.testcase)
    out = say(args)
    progress = stderr_progress(d.name, cfg.name)
    built = build(d, cfg, waves=args.waves, progress=progress)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)", file=out)
    result = cosim.run(built, seed=args.seed, testcase=args.testcase, timeout=args.timeout, check=False,
                       progress=progress)
    print(result.report(), file=out)
    for test, values in sorted(result.summary.items()):
        print(f"  {test}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()), file=out)
    totals = result.totals()
    cycles = totals.get("cycles")
    line = f"total: {result.sim_time_ns:.0f} ns simulated in {result.seconds:.1f} s"
    if cycles:
        line += (f", {cycles:.0f} cycles ({cycles / max(result.test_seconds, 1e-9):.0f} cycles/s "
                 f"inside the tests)")
    if "packets" in totals:
        line += f", {totals['packets']:.0f} packets"
    print(line, file=out)
    if args.json:
        print(json.dumps(result_json(result), indent=1))
    return 0 if result.ok else 1
