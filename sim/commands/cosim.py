"""``mozart cosim BLOCK --config PRESET [--seed N] [--waves]``: run a block's cocotb testbench on Verilator.

``mozart cosim wafer`` takes more options (variant, placement, trace, tokens, ``--compare``): one MoE layer
end to end on the RTL wafer against the model (:mod:`mozart.sim.wafer`)."""

from __future__ import annotations

import argparse
import json
import sys

from mozart.model.config import load_config
from mozart.model.errors import MozartError
from mozart.model.hardware_rules import check_hardware
from mozart.sim.designs import DESIGNS, design

from ._common import add_json_argument, non_negative, non_negative_float, positive, seed, timeout
from .config import add_config_argument
from .verilog import blocks_help


def register(sub) -> None:
    parser = sub.add_parser("cosim", help="co-simulate a block's testbench on Verilator and print a summary",
                            description="Build the block for the config with Verilator (cached per block, config "
                            "and --waves in $MOZART_BUILD_DIR, default ./.mozart-build), run its cocotb testbench "
                            "in one simulator process and print a summary. Exit status 0 if every test passed, 1 "
                            "if one failed, 2 for bad input or a missing toolchain, 3 if the build or the "
                            "simulator failed (crash, timeout).",
                            epilog=blocks_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("block", metavar="BLOCK", help="one of: " + ", ".join(sorted(DESIGNS)))
    add_config_argument(parser)
    parser.add_argument("--seed", type=seed, default=1, metavar="N", help="random seed (default: 1)")
    parser.add_argument("--waves", action="store_true", help="record a VCD waveform (a separate, traced build)")
    parser.add_argument("--test", dest="testcase", action="append", metavar="NAME",
                        help="run only this cocotb test (repeatable; --list-tests names them)")
    parser.add_argument("--list-tests", action="store_true", help="print the block's cocotb tests and exit")
    parser.add_argument("--timeout", type=timeout, default=None, metavar="SECONDS",
                        help="kill the simulator after this many seconds (a positive number; exit 3)")
    add_json_argument(parser, "the summary")
    wafer = parser.add_argument_group("wafer options (block 'wafer' only)")
    wafer.add_argument("--variant", default=None, metavar="V", help="baseline, A, B or C (default: C)")
    wafer.add_argument("--placement", default=None, metavar="METHOD|FILE",
                       help="placement method, or a placement file (.json) from 'mozart allocate' (default: "
                       "mozart for C, contiguous otherwise)")
    wafer.add_argument("--trace", default=None, metavar="FILE", help="routing trace (default: synthetic from --seed)")
    wafer.add_argument("--tokens", type=positive, default=None, metavar="N", help="tokens of the layer (default: 256)")
    wafer.add_argument("--layer", type=non_negative, default=None, metavar="L", help="layer of the trace (default: 0)")
    wafer.add_argument("--slots", type=positive, default=None, metavar="S",
                       help="weight slots the schedule uses per chiplet (fewer than its experts: reloads)")
    wafer.add_argument("--skew", type=non_negative_float, default=None, metavar="X",
                       help="Zipf exponent of the synthetic trace's expert popularity (hot experts)")
    wafer.add_argument("--idle", type=float, default=None, metavar="P", help="host input idle probability (0)")
    wafer.add_argument("--backpressure", type=float, default=None, metavar="P",
                       help="host output backpressure probability (0)")
    wafer.add_argument("--compare", action="store_true",
                       help="run baseline, A, B and C on the same trace; print RTL and model speedups")
    parser.set_defaults(func=_run)


_WAFER_OPTIONS = ("variant", "placement", "trace", "tokens", "layer", "slots", "skew", "idle", "backpressure")


def _say(args):
    """Where human lines go: stdout, or stderr when stdout carries the --json document."""
    return sys.stderr if args.json else sys.stdout


def _counts(result) -> dict:
    """Passed, skipped and failed tests apart (the result's own counts where it has them)."""
    skipped = getattr(result, "skipped", 0)
    passed = getattr(result, "passed", result.tests - result.failed - skipped)
    return {"tests": result.tests, "passed": passed, "skipped": skipped, "failed": result.failed,
            "failed_tests": list(result.failed_tests)}


def _result_json(result) -> dict:
    return {"block": result.design, "config": result.config, "seed": result.seed, "ok": result.ok,
            **_counts(result), "summary": result.summary, "run_dir": str(result.run_dir), "log": str(result.log),
            "waveform": str(result.waveform) if result.waveform else None, "seconds": result.seconds,
            "sim_time_ns": result.sim_time_ns}


def _layer_json(r) -> dict:
    return {"variant": r.variant, **_result_json(r.cosim)}


def _run_wafer(args, cfg) -> int:
    from mozart.sim import wafer  # noqa: PLC0415
    from mozart.model.schedule import VARIANTS  # noqa: PLC0415
    from mozart.sim.build import build, stderr_progress  # noqa: PLC0415

    if args.testcase:
        raise MozartError("--test is not an option of the wafer (it has one test); leave it out")
    if args.compare and args.variant:
        raise MozartError("--compare runs every variant: leave out --variant")
    options = {k: getattr(args, k) for k in _WAFER_OPTIONS if getattr(args, k) is not None and k != "variant"}
    for variant in (VARIANTS if args.compare else [args.variant or "C"]):
        wafer.validate(cfg, variant=variant, seed=args.seed, **options)   # bad input: exit 2 before building
    say = _say(args)
    progress = stderr_progress("wafer", cfg.name)
    built = build("wafer", cfg, waves=args.waves, progress=progress)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)", file=say)
    common = dict(seed=args.seed, built=built, timeout=args.timeout, progress=progress, **options)
    if args.compare:
        results = wafer.compare(cfg, **common)
        print(wafer.format_compare(results), file=say)
        for r in results:
            if not r.ok:
                print(r.cosim.report(), file=say)
        for r in results:
            if r.cosim.waveform:
                print(f"waveform {r.variant}: {r.cosim.waveform}", file=say)
        if args.json:
            print(json.dumps({"ok": all(r.ok for r in results), "variants": [_layer_json(r) for r in results]},
                             indent=1))
        return 0 if all(r.ok for r in results) else 1
    result = wafer.run_layer(cfg, variant=args.variant or "C", **common)
    print(wafer.format_layer(cfg, result), file=say)
    sim_s = result.summary.get("sim_seconds") or result.cosim.test_seconds
    print(f"simulator: {result.cosim.seconds:.1f} s wall in all, the layer's {result.cycles} cycles in {sim_s:.1f} s "
          f"({result.cycles / max(sim_s, 1e-9):.0f} cycles/s)", file=say)
    if result.cosim.waveform:
        print(f"waveform: {result.cosim.waveform}", file=say)
    if args.json:
        print(json.dumps(_layer_json(result), indent=1))
    return 0 if result.ok else 1


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
        return _run_wafer(args, cfg)
    used = [k for k in _WAFER_OPTIONS if getattr(args, k) is not None] + (["compare"] if args.compare else [])
    if used:
        raise MozartError(f"--{used[0]} is an option of 'mozart cosim wafer', not of block {d.name!r}")
    _check_tests(d, args.testcase)
    say = _say(args)
    progress = stderr_progress(d.name, cfg.name)
    built = build(d, cfg, waves=args.waves, progress=progress)
    print(f"build: {built.build_dir} ({'built' if built.rebuilt else 'cached'}, {built.seconds:.1f} s)", file=say)
    result = cosim.run(built, seed=args.seed, testcase=args.testcase, timeout=args.timeout, check=False,
                       progress=progress)
    print(result.report(), file=say)
    for test, values in sorted(result.summary.items()):
        print(f"  {test}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()), file=say)
    totals = result.totals()
    cycles = totals.get("cycles")
    line = f"total: {result.sim_time_ns:.0f} ns simulated in {result.seconds:.1f} s"
    if cycles:
        line += (f", {cycles:.0f} cycles ({cycles / max(result.test_seconds, 1e-9):.0f} cycles/s "
                 f"inside the tests)")
    if "packets" in totals:
        line += f", {totals['packets']:.0f} packets"
    print(line, file=say)
    if args.json:
        print(json.dumps(_result_json(result), indent=1))
    return 0 if result.ok else 1
