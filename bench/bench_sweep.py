"""Sweep benchmark: prints numbers, asserts nothing about time.

Runs one sweep spec (default ``docs/sweep-example.toml``: 1,000 points over the ``wafer4x4`` and
``olmoe-1b-7b`` shapes) with the shipped evaluator (the performance model), three or four times, each into
a fresh output file:

1. the local process pool with 1 worker (in this process) and with 2 workers: wall time, points/s and the
   CPU seconds spent evaluating of each; the scaling efficiency ``rate(2) / (2 x rate(1))`` and the work
   efficiency ``cpu(1) / cpu(2)`` (how much extra work two workers do; it does not depend on the load);
2. a Dask ``LocalCluster`` of 2 workers on 127.0.0.1 (``--cluster local``): its wall time, and whether its
   rows are identical to the local pool's (the files are compared byte for byte, then row by row).

Wall times are of :func:`mozart.sim.sweep.run_sweep` as a whole: spec expansion, starting the workers
(spawned interpreters that import numpy, the placers and the model; the Dask scheduler), every evaluation,
and writing the Parquet file. Nothing is cached between runs except the OS's file cache. Around every run the
load average and the CPU time other processes took meanwhile are printed: on a shared machine they take
cores, and the numbers say so.

Run: ``python bench/bench_sweep.py [SPEC] [--skip-dask]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from mozart.model.sweep_spec import load_spec
from mozart.sim.sweep import read_rows, run_sweep

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "docs" / "sweep-example.toml"


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed_run(spec, out: Path, **backend) -> tuple[float, object]:
    """Run the sweep; its wall time, and how much CPU other processes took meanwhile (they share the cores)."""
    before, busy = os.getloadavg()[0], machine_busy_seconds()
    start, own = time.perf_counter(), time.process_time()
    result = run_sweep(spec, out, progress=None, **backend)
    seconds, own = time.perf_counter() - start, time.process_time() - own
    line = f"    (1-minute load average {before:.1f} before, {os.getloadavg()[0]:.1f} after"
    if busy is not None:
        # The machine's busy time minus this process's and the workers' evaluation time: roughly what
        # everything else used (worker start-up and Dask's own processes count as "else" too).
        others = max(0.0, machine_busy_seconds() - busy - own
                     - (result.cpu_seconds if backend.get("workers", 1) > 1 or "cluster" in backend else 0.0))
        line += f"; other processes used about {others:.0f} CPU s, {others / seconds:.0%} of a core"
    print(line + ")")
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC))
    parser.add_argument("--skip-dask", action="store_true", help="only the local backend")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    cores = len(os.sched_getaffinity(0))
    print(f"sweep {spec.name}: {spec.size} points ({', '.join(n for n, _ in spec.configs)}; "
          f"{len(spec.axes)} axes, {len(spec.methods)} methods, {len(spec.variants)} variants); "
          f"{cores} usable cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp = Path(tmp)
        rates, cpu = {}, {}
        for workers in (1, 2):
            seconds, result = timed_run(spec, tmp / f"local{workers}.parquet", workers=workers)
            rates[workers], cpu[workers] = result.points / seconds, result.cpu_seconds
            share = result.cpu_seconds / (seconds * workers)
            print(f"local backend, {workers} worker{'s' if workers > 1 else ' '}: {seconds:7.1f} s  "
                  f"{rates[workers]:7.1f} points/s  ({result.cpu_seconds:.1f} CPU s evaluating, {share:.0%} of "
                  f"{workers} core{'s' if workers > 1 else ''} over the run; {result.failed} points not ok, "
                  f"{result.backend})")
        print(f"scaling efficiency on 2 cores: {rates[2] / (2 * rates[1]):.0%} (wall clock: rate with 2 workers / "
              f"twice the rate with 1; meaningful only if the load average stayed low)")
        print(f"work efficiency: {cpu[1] / cpu[2]:.0%} (CPU seconds of 1 worker / of 2 workers: the extra work "
              f"of two workers, each building its own traces, placements and schedules)")
        same_local = (tmp / "local1.parquet").read_bytes() == (tmp / "local2.parquet").read_bytes()
        print(f"1 worker and 2 workers wrote identical files: {same_local}")
        if args.skip_dask:
            return 0 if same_local else 1
        seconds, result = timed_run(spec, tmp / "dask.parquet", cluster="local", workers=2)
        print(f"Dask LocalCluster, 2 workers on 127.0.0.1: {seconds:7.1f} s  {result.points / seconds:7.1f} "
              f"points/s ({result.cpu_seconds:.1f} CPU s evaluating, {result.cpu_seconds / (2 * seconds):.0%} of "
              f"2 cores; scheduler and worker start-up included)")
        same_bytes = (tmp / "dask.parquet").read_bytes() == (tmp / "local2.parquet").read_bytes()
        dask_rows, local_rows = read_rows(tmp / "dask.parquet"), read_rows(tmp / "local2.parquet")
        same_rows = dask_rows == local_rows
        print(f"Dask rows identical to the local pool's: {same_rows} (files byte-identical: {same_bytes})")
        if not same_rows:
            differ = [(a["index"], k) for a, b in zip(dask_rows, local_rows) for k in a if a.get(k) != b.get(k)]
            print(f"    {len(differ)} differing cells, e.g. (index, column): {differ[:5]}")
        return 0 if same_local and same_rows else 1


if __name__ == "__main__":
    sys.exit(main())
