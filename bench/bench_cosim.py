"""Co-simulation speed and Verilator build time, per build profile (``docs/cosim.md`` has the measured table).

Prints numbers, asserts nothing (timing belongs in a benchmark, not in a test)::

    python bench/bench_cosim.py                                  # fifo: cycles/s of its random-packet test
    python bench/bench_cosim.py --design wafer --config tiny     # clock-only limit vs the full wafer testbench
    python bench/bench_cosim.py --design wafer --config tiny,wafer4x4 --profiles default,old,O0,O1,O2,Os,threads2

For each (config, profile): a cold build (fresh build folder, ccache off) timed, then the simulator's limit,
``tb_clock``'s clock-only test (no Python per cycle), and for the wafer the full testbench (``tb_wafer``, one
256-token layer of variant C, no idle or backpressure) with the ratio of the two. Rates are given per wall second
and per CPU second of the simulator process (the tests measure their own process time, which other load on a shared
machine skews far less than wall time).

Profiles (:class:`mozart.sim.build.BuildProfile`): ``default`` (ports public, every part at -O1); ``fast-O2``
(ports public, OPT_FAST=-O2, OPT_SLOW=-O0, OPT_GLOBAL=-O1: the first default, measured in docs/cosim.md); ``old``
(every signal public, ``-CFLAGS -O0``: the project's builds before); ``O0``/``O2`` (every part at that level, ports
public); ``Os`` (Verilator's own defaults, ports public); ``threads2`` (``default`` with ``--threads 2``).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from mozart.model.config import load_config
from mozart.sim import build as build_module
from mozart.sim import cosim
from mozart.sim.build import DEFAULT_PROFILE, BuildProfile
from mozart.sim.toolchain import VERILATOR_WARNINGS


def _children_cpu() -> float:
    """CPU seconds of finished child processes (Verilator, make, the compiler): robust on a loaded machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _all(level: str) -> tuple[tuple[str, str], ...]:
    return (("OPT_FAST", level), ("OPT_SLOW", level), ("OPT_GLOBAL", level))


PROFILES = {
    "default": DEFAULT_PROFILE,
    "old": BuildProfile("old", (*VERILATOR_WARNINGS, "-CFLAGS", "-O0"), public="all", make_vars=()),
    "fast-O2": BuildProfile("fast-O2", make_vars=(("OPT_FAST", "-O2"), ("OPT_SLOW", "-O0"), ("OPT_GLOBAL", "-O1"))),
    "O0": BuildProfile("O0", make_vars=_all("-O0")),
    "O2": BuildProfile("O2", make_vars=_all("-O2")),
    "Os": BuildProfile("Os", make_vars=()),
    "threads2": BuildProfile("threads2", (*VERILATOR_WARNINGS, "--threads", "2")),
}


def clock_only(built, cycles: int) -> dict:
    result = cosim.run(built, seed=1, test_module="mozart.tb.tb_clock", testcase="test_clock_only",
                       extra_env={"MOZART_CYCLES": str(cycles)})
    return result.summary["test_clock_only"]


def wafer_layer(built) -> dict:
    from mozart.sim import wafer  # noqa: PLC0415
    r = wafer.run_layer(built.cfg, variant="C", built=built, tokens=256, seed=1)
    if not r.ok:
        raise SystemExit(r.cosim.report())
    s = r.summary
    return {"cycles": s["cycles"], "per_s": s["cycles"] / s["sim_seconds"],
            "per_cpu_s": s["cycles"] / max(s["sim_cpu_seconds"], 1e-9), "run_s": r.cosim.seconds}


def fifo_packets(built, packets: int) -> dict:
    result = cosim.run(built, seed=1, testcase="test_random_packets", extra_env={"MOZART_PACKETS": str(packets)})
    s = result.summary["test_random_packets"]
    return {"cycles": s["cycles"], "per_s": s["cycles"] / max(result.test_seconds, 1e-9)}


def bench(design: str, config: str, profile: BuildProfile, *, cold: bool, cycles: int, packets: int) -> None:
    cfg = load_config(config)
    with tempfile.TemporaryDirectory() as root:
        if cold:
            os.environ["MOZART_BUILD_DIR"] = root
            os.environ["CCACHE_DISABLE"] = "1"   # measure the compiler, not the cache
        start, cpu = time.perf_counter(), _children_cpu()
        built = build_module.build(design, cfg, profile=profile)
        build_s, build_cpu = time.perf_counter() - start, _children_cpu() - cpu
        os.environ.pop("CCACHE_DISABLE", None)
        lines = built.verilog.read_text().count("\n")
        limit = clock_only(built, cycles)
        line = (f"{design:6s} {config:9s} {profile.name:9s} build {build_s:6.1f} s, {build_cpu:6.1f} CPU-s of "
                f"Verilator and the compiler "
                f"({'cold' if cold else 'built' if built.rebuilt else 'cached'}, {lines} lines)  clock-only "
                f"{limit['cycles_per_second']:7.0f}/s {limit['cycles_per_cpu_second']:7.0f}/CPU-s")
        if design == "wafer":
            full = wafer_layer(built)
            line += (f"  testbench {full['per_s']:7.0f}/s {full['per_cpu_s']:7.0f}/CPU-s  ratio "
                     f"{full['per_cpu_s'] / limit['cycles_per_cpu_second']:.2f} (CPU)  {full['cycles']} cycles, "
                     f"run {full['run_s']:.1f} s")
        elif design == "fifo":
            full = fifo_packets(built, packets)
            line += f"  random packets {full['per_s']:7.0f}/s"
        print(line, flush=True)
    if cold:
        os.environ.pop("MOZART_BUILD_DIR", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--design", default="fifo", choices=["fifo", "wafer", "switch", "chiplet", "memctrl", "root"])
    parser.add_argument("--config", default="tiny", help="comma-separated configs")
    parser.add_argument("--profiles", default="default", help=f"comma-separated, of {', '.join(PROFILES)}")
    parser.add_argument("--cached", action="store_true", help="reuse ./.mozart-build instead of cold builds")
    parser.add_argument("--cycles", type=int, default=200_000, help="clock-only cycles")
    parser.add_argument("--packets", type=int, default=2000, help="fifo: random packets")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for config in args.config.split(","):
        for name in args.profiles.split(","):
            if name not in PROFILES:
                raise SystemExit(f"--profiles must name profiles of {', '.join(PROFILES)}, not {name!r}")
            bench(args.design, config, PROFILES[name], cold=not args.cached, cycles=args.cycles,
                  packets=args.packets)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
