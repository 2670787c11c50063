"""Run a block's cocotb testbench on its Verilator build, inside pytest or outside it.

:func:`run` builds the design (or reuses the cache, :mod:`mozart.sim.build`), starts **one** simulator process
for the whole testbench module (or the ``testcase`` names given), and returns a :class:`CosimResult`: the test
counts from the results XML, the summary the testbench wrote, the log and the waveform. With ``check=True``
(the default) failed cocotb tests raise :class:`CosimFailure`, an ``AssertionError`` whose message names the
block, config, seed and the failing tests with their error lines, so pytest shows a readable failure instead of
the runner's bare ``SystemExit(1)``.

The testbench side reads its inputs from environment variables (:mod:`mozart.tb.env` wraps them):

``MOZART_CONFIG``   the config as TOML text (:func:`mozart.model.config.to_toml`)
``MOZART_SEED``     the seed (an int); also passed to cocotb as ``COCOTB_RANDOM_SEED``
``MOZART_SUMMARY``  where ``write_summary`` puts its JSON
``MOZART_DESIGN``   the block name
``MOZART_*``        anything given in ``extra_env`` (e.g. ``MOZART_PACKETS`` for a soak length)

Each run gets a folder of its own, ``<build folder>/runs/<testbench>[-<label>]-seed<N>-<date>-<time>-<4 hex>/``,
which holds ``results.xml``, ``sim.log``, ``summary.json`` and, with ``waves=True``, ``dump.vcd``; two runs never
share one (so a second run of a seed keeps the first one's log, and ``--compare --waves`` keeps one waveform per
variant). The newest :data:`KEEP_RUNS` runs of a testbench are kept; older ones are deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


from mozart.model.config import WaferConfig, to_toml
from mozart.model.cosim_options import ENV_CONFIG, ENV_DESIGN, ENV_SEED, ENV_SUMMARY
from mozart.model.errors import MozartError

from . import toolchain
from .build import Build, build
from .designs import Design

__all__ = ["CosimResult", "CosimFailure", "CosimError", "run", "ENV_CONFIG", "ENV_SEED", "ENV_SUMMARY",
           "ENV_DESIGN"]


#: Run folders kept per testbench module (the newest); older ones are deleted when a new run starts.
KEEP_RUNS = 12


class CosimError(MozartError, RuntimeError):
    """The simulator could not run (crash, timeout, no results); not a failed test."""


class CosimFailure(AssertionError):
    """One or more cocotb tests failed; the message names them and quotes their errors."""


@dataclass(frozen=True)
class CosimResult:
    """The outcome of one :func:`run`.

    Members
    -------
    design, config : str
        Block and config names.
    seed : int
        The seed the testbench used.
    tests, failed : int
        Counts from the results XML (errors count as failures).
    skipped : int
        Tests the testbench skipped (``cocotb.test(skip=...)`` or a ``SkipTest``): neither passed nor failed.
    failed_tests : tuple of str
        Names of the failing cocotb tests.
    summary : dict
        What the testbench passed to ``write_summary``: ``{test name: {key: value}}``.
    run_dir : Path
        The run folder; ``results_xml`` and ``log`` are in it.
    waveform : Path or None
        ``dump.vcd`` when the run recorded waves.
    seconds : float
        Wall time of the simulator process (start-up, imports and tests).
    sim_time_ns : float
        Simulated time over all tests, from the results XML.
    test_seconds : float
        Wall time spent inside the tests (results XML): the base of a cycles-per-second figure.
    """

    design: str
    config: str
    seed: int
    tests: int
    failed: int
    failed_tests: tuple[str, ...]
    summary: dict
    run_dir: Path
    waveform: Path | None
    seconds: float
    sim_time_ns: float = 0.0
    test_seconds: float = 0.0
    errors: tuple[str, ...] = field(default=(), repr=False)
    skipped: int = 0

    @property
    def passed(self) -> int:
        return self.tests - self.failed - self.skipped

    @property
    def ok(self) -> bool:
        return self.passed > 0 and self.failed == 0

    @property
    def results_xml(self) -> Path:
        return self.run_dir / "results.xml"

    @property
    def log(self) -> Path:
        return self.run_dir / "sim.log"

    def totals(self) -> dict[str, float]:
        """Numeric summary values added up over the tests (``cycles``, ``packets``, ...)."""
        out: dict[str, float] = {}
        for values in self.summary.values():
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] = out.get(key, 0) + value
        return out

    def report(self, waveform: bool = True) -> str:
        """A few human lines: what ran, what failed and why, where the log (and the waveform) is.

        ``waveform=False`` leaves out the waveform's path, for a caller that prints it last."""
        head = (f"cosim {self.design} (config {self.config}, seed {self.seed}): {self.passed} passed, "
                f"{self.failed} failed, {self.skipped} skipped (cocotb tests)")
        lines = [head]
        if self.failed_tests:
            lines.append("failed: " + ", ".join(self.failed_tests))
        lines += [f"  {e}" for e in self.errors]
        lines.append(f"log: {self.log}")
        if waveform and self.waveform:
            lines.append(f"waveform: {self.waveform}")
        return "\n".join(lines)

    def check(self) -> "CosimResult":
        """Raise :class:`CosimFailure` unless every test passed; return ``self`` otherwise."""
        if not self.ok:
            raise CosimFailure(self.report())
        return self


def _parse_results(path: Path) -> tuple[int, list[str], float, float, int]:
    root = ET.parse(path).getroot()
    tests, failed, sim_ns, wall, skipped = 0, [], 0.0, 0.0, 0
    for case in root.iter("testcase"):
        tests += 1
        skipped += case.find("skipped") is not None
        try:
            wall += float(case.get("time", 0))
        except ValueError:
            pass
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
        for prop in case.iter("property"):
            if prop.get("name") == "sim_time_duration":
                try:
                    sim_ns += float(prop.get("value", 0))
                except ValueError:
                    pass
    return tests, failed, sim_ns, wall, skipped


# A cocotb log line that carries the error of a failed test: the last line of a traceback.
_ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception|Failure|Timeout\w*)\b.*|^\s*ProtocolError.*")


def _error_lines(log: Path, limit: int = 12) -> list[str]:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in text:
        if " failed" in line and "FAIL" in line.upper() and "**" not in line:
            found.append(line.strip())
        elif _ERROR_LINE.match(line):
            found.append(line.strip())
    return list(dict.fromkeys(found))[:limit]  # drop repeats, keep order


def _module_short(testbench: str) -> str:
    return testbench.rsplit(".", 1)[-1]


def _new_run_dir(runs: Path, module: str, label: str | None, seed: int) -> Path:
    """A fresh run folder; the oldest beyond :data:`KEEP_RUNS` of the same module are deleted."""
    prefix = f"{module}-{label}-" if label else f"{module}-"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in runs.glob(f"{module}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        folder = runs / f"{prefix}seed{seed}-{stamp}-{os.urandom(2).hex()}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def run(design: Design | str | Build, cfg: WaferConfig | None = None, *, seed: int, waves: bool = False,
        testcase: str | Sequence[str] | None = None, extra_env: Mapping[str, str] | None = None,
        timeout: float | None = None, check: bool = True, test_module: str | None = None,
        label: str | None = None, progress=None) -> CosimResult:
    """Co-simulate ``design``'s testbench module for ``cfg`` in one simulator process.

    Parameters
    ----------
    design : Design, str or Build
        A registry entry, its name, or a :class:`~mozart.sim.build.Build` from :func:`~mozart.sim.build.build`
        (then ``cfg`` and ``waves`` come from it).
    cfg : WaferConfig
        The config (required unless ``design`` is a ``Build``).
    seed : int
        Seeds cocotb and every random choice of the testbench.
    waves : bool
        Record ``dump.vcd`` (uses the design's separate traced build).
    testcase : str or list of str, optional
        Run only these cocotb tests of the module.
    extra_env : mapping, optional
        More environment variables for the testbench (``MOZART_*`` by convention).
    timeout : float, optional
        Seconds after which the simulator is killed (:class:`CosimError`).
    check : bool
        Raise :class:`CosimFailure` if a test failed (pytest's usual want); ``False`` just returns the result.
    test_module : str, optional
        Another cocotb module to run on the build (default: the design's testbench), e.g. ``mozart.tb.tb_clock``.
    label : str, optional
        Part of the run folder's name (e.g. the variant of a wafer run).
    progress : callable, optional
        Called with a phase description (the build's phases, then ``simulating ...``); see
        :func:`mozart.sim.build.stderr_progress`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CosimError(f"seed must be a non-negative integer, not {seed!r}")
    if isinstance(design, Build):
        built = design
        if cfg is not None and cfg != built.cfg:
            raise CosimError(f"cfg must be the config the Build was made for ({built.cfg.name!r}) or None, "
                             f"not {cfg.name!r}")
    else:
        if cfg is None:
            raise CosimError("cfg must be a WaferConfig when design is not a Build, not None")
        built = build(design, cfg, waves=waves, progress=progress)
    d, cfg = built.design, built.cfg
    module = test_module or d.testbench
    run_dir = _new_run_dir(built.build_dir / "runs", _module_short(module), label, seed)
    results, summary_path, log = run_dir / "results.xml", run_dir / "summary.json", run_dir / "sim.log"
    env = {ENV_CONFIG: to_toml(cfg), ENV_SEED: str(seed), ENV_SUMMARY: str(summary_path), ENV_DESIGN: d.name,
           "COCOTB_LOG_LEVEL": "INFO", "COCOTB_ANSI_OUTPUT": "0",
           # cocotb's default "*.py" makes pytest rewrite the asserts of every module imported, numpy and
           # networkx included, which costs seconds per run; testbench modules are the ones worth rewriting.
           "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"}
    env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    if timeout is not None:
        # The runner has no timeout; coreutils 'timeout' as its command prefix kills a hung simulator.
        env["SIM_CMD_PREFIX"] = f"timeout -k 5 {max(1, int(timeout))}"
    if progress is not None:
        progress(f"simulating{f' {label}' if label else ''} (log {log})")
    start = time.perf_counter()
    exit_code = 0
    # The runner lets os.environ override extra_env, so everything goes in through activated().
    with toolchain.activated(env):
        try:
            built.runner.test(test_module=module, hdl_toplevel=d.sim_toplevel, hdl_toplevel_lang="verilog",
                              testcase=testcase, seed=seed, build_dir=built.build_dir, test_dir=run_dir,
                              results_xml=str(results), waves=built.waves, timescale=None, log_file=log)
        except SystemExit as exc:  # the runner exits when the simulator process fails...
            exit_code = exc.code if isinstance(exc.code, int) else 1
        except RuntimeError as exc:  # ...or raises "Command failed with return code: N"
            found = re.search(r"return code: (-?\d+)", str(exc))
            exit_code = int(found.group(1)) if found else 1
    seconds = time.perf_counter() - start
    if timeout is not None and exit_code in (124, 137):
        raise CosimError(f"cosim {d.name} (config {cfg.name}, seed {seed}) must finish within {timeout} s, "
                         f"but was killed; log {log}")
    if not results.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else ""
        raise CosimError(f"cosim {d.name} (config {cfg.name}, seed {seed}) must write {results}, but the "
                         f"simulator stopped (exit status {exit_code}) without results; log {log} (if the "
                         f"executable is "
                         f"damaged, 'mozart clean' or deleting {built.build_dir} rebuilds it):\n{tail}")
    from cocotb_tools.check_results import get_results  # noqa: PLC0415 (cocotb's own count of the XML)
    tests, n_failed = get_results(results)
    _, failed, sim_ns, test_seconds, skipped = _parse_results(results)
    if n_failed and not failed:  # keep the count authoritative even if no failing case could be named
        failed = ["(unnamed)"] * n_failed
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    except ValueError:
        summary = {}
    waveform = run_dir / "dump.vcd" if built.waves and (run_dir / "dump.vcd").is_file() else None
    result = CosimResult(d.name, cfg.name, seed, tests, max(n_failed, len(failed)), tuple(failed), summary, run_dir,
                         waveform,
                         seconds, sim_ns, test_seconds, tuple(_error_lines(log)) if failed else (), skipped)
    if check and tests == 0:
        raise CosimError(f"cosim {d.name} must run at least one test of {module}"
                         + (f" matching {testcase!r}" if testcase else "") + f", not none; log {log}")
    return result.check() if check else result
