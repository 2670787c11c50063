"""Verilog generation and the Verilator build cache.

One build folder per (design, config, waves)::

    $MOZART_BUILD_DIR (default ./.mozart-build)/
        <design>/<config name>-<sha256 of the config TOML, 12 hex>[-waves]/
            <design>.v            the Verilog (rewritten only when its text changes)
            <toplevel>            the Verilator executable (cocotb loads into it)
            mozart-build.json     the stamp: what the executable was built from
            build.log             Verilator and make output of the last build
        <design>/<...>.lock       a file lock: concurrent builds of one folder wait for each other

The executable is rebuilt only when the stamp differs: the Verilog text, the Verilator arguments, or the
versions of Verilator and cocotb. An unchanged design costs one Verilog conversion and a file comparison.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from mozart.model.config import WaferConfig, to_toml
from mozart.model.errors import MozartError

from . import toolchain
from .designs import Design, design as lookup_design

__all__ = ["Build", "BuildError", "build", "write_verilog", "verilog_text", "build_root", "build_dir_for",
           "config_key", "BUILD_ARGS"]

#: Extra Verilator arguments of every build. -O0: the C++ of a wide design compiles about 4x faster, and these
#: small models simulate barely slower (bench/bench_cosim.py measures both).
BUILD_ARGS = (*toolchain.VERILATOR_WARNINGS, "-CFLAGS", "-O0")

#: Amaranth writes no `timescale; cocotb's clocks are given in ns.
TIMESCALE = ("1ns", "1ps")

_STAMP = "mozart-build.json"


class BuildError(MozartError, RuntimeError):
    """Verilog generation or the Verilator build of a design failed; the message has the log's tail."""


@dataclass(frozen=True)
class Build:
    """A built design, ready for :func:`mozart.sim.cosim.run`.

    Members
    -------
    design : Design
        The registry entry that was built.
    cfg : WaferConfig
        The config it was built for.
    waves : bool
        Whether the executable records a VCD (``dump.vcd`` in the run folder).
    verilog : Path
        The generated Verilog.
    build_dir : Path
        The build folder (holds the executable).
    rebuilt : bool
        ``True`` if this call ran Verilator, ``False`` if the cached executable was up to date.
    seconds : float
        Wall time of this call (conversion, and the build when ``rebuilt``).
    """

    design: Design
    cfg: WaferConfig
    waves: bool
    verilog: Path
    build_dir: Path
    rebuilt: bool
    seconds: float

    @property
    def toplevel(self) -> str:
        return self.design.toplevel

    @property
    def executable(self) -> Path:
        return self.build_dir / self.toplevel

    @property
    def runner(self):
        """A fresh cocotb Verilator runner (runners keep per-call state, so do not share one across threads)."""
        from cocotb_tools.runner import get_runner  # noqa: PLC0415 (cocotb_tools is only needed to simulate)
        return get_runner("verilator")


def _design(design: Design | str) -> Design:
    return design if isinstance(design, Design) else lookup_design(design)


def build_root() -> Path:
    """``$MOZART_BUILD_DIR``, or ``.mozart-build`` in the current directory, as an absolute path."""
    return Path(os.environ.get("MOZART_BUILD_DIR") or ".mozart-build").absolute()


def config_key(cfg: WaferConfig) -> str:
    """``<name>-<12 hex of sha256(TOML)>``: equal configs share a folder, any changed field gets its own."""
    return f"{cfg.name}-{hashlib.sha256(to_toml(cfg).encode()).hexdigest()[:12]}"


def build_dir_for(design: Design | str, cfg: WaferConfig, *, waves: bool = False) -> Path:
    d = _design(design)
    return build_root() / d.name / (config_key(cfg) + ("-waves" if waves else ""))


def verilog_text(design: Design | str, cfg: WaferConfig) -> str:
    """The Verilog of ``design`` for ``cfg`` (no source locations, so the text is stable across checkouts)."""
    from amaranth.back import verilog  # noqa: PLC0415 (keep 'import mozart.sim.build' light)
    d = _design(design)
    try:
        component = d.build(cfg)
    except MozartError:
        raise
    except Exception as exc:  # an elaboration bug: say which block and config
        raise BuildError(f"block {d.name!r} must elaborate for config {cfg.name!r}, but {d.component}(cfg) "
                         f"raised {type(exc).__name__}: {exc}") from exc
    return verilog.convert(component, name=d.toplevel, emit_src=False)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return True


def write_verilog(design: Design | str, cfg: WaferConfig, out_dir: str | Path) -> Path:
    """Write ``out_dir/<design>.v`` (only if its text changed, so timestamps stay put) and return its path."""
    d = _design(design)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{d.name}.v"
    _write_if_changed(path, verilog_text(d, cfg))
    return path


def _stamp(text: str, waves: bool) -> dict:
    return {
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "waves": waves,
        "args": list(BUILD_ARGS),
        "timescale": list(TIMESCALE),
        "verilator": importlib.metadata.version("verilator"),
        "cocotb": importlib.metadata.version("cocotb"),
    }


def _log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no build log)"
    return "\n".join(text[-lines:])


def build(design: Design | str, cfg: WaferConfig, *, waves: bool = False) -> Build:
    """Build ``design`` for ``cfg`` with Verilator into its cache folder, or reuse the cached executable.

    Parameters
    ----------
    design : Design or str
        A registry entry or its name (``"fifo"``).
    cfg : WaferConfig
        The config; its TOML text keys the folder.
    waves : bool
        Build with VCD tracing (a separate folder: a traced model is slower).

    Raises
    ------
    ToolchainError
        Verilator, a C++ compiler or make is missing.
    BuildError
        Elaboration or the Verilator build failed.
    """
    start = time.perf_counter()
    d = _design(design)
    tc = toolchain.find_toolchain()
    text = verilog_text(d, cfg)  # outside the lock: it is pure and the slow part of a cache hit
    folder = build_dir_for(d, cfg, waves=waves)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(text, waves)
    with FileLock(str(folder) + ".lock"):
        folder.mkdir(exist_ok=True)
        verilog_path = folder / f"{d.name}.v"
        _write_if_changed(verilog_path, text)
        stamp_path = folder / _STAMP
        executable = folder / d.toplevel
        try:
            cached = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            cached = None
        if cached == stamp and executable.is_file():
            return Build(d, cfg, waves, verilog_path, folder, False, time.perf_counter() - start)
        stamp_path.unlink(missing_ok=True)  # a failed build must not leave a stamp of the old one
        log = folder / "build.log"
        runner = Build(d, cfg, waves, verilog_path, folder, True, 0.0).runner
        with toolchain.activated(toolchain=tc):
            try:
                runner.build(sources=[verilog_path], hdl_toplevel=d.toplevel, build_dir=folder,
                             build_args=list(BUILD_ARGS), timescale=TIMESCALE, waves=waves, always=True,
                             log_file=log)
            except (RuntimeError, SystemExit) as exc:
                raise BuildError(f"Verilator build of block {d.name!r} for config {cfg.name!r} must succeed, "
                                 f"but failed ({exc}); log {log}:\n{_log_tail(log)}") from None
        if not executable.is_file():
            raise BuildError(f"Verilator build of block {d.name!r} must produce {executable}, but did not; "
                             f"log {log}:\n{_log_tail(log)}")
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    return Build(d, cfg, waves, verilog_path, folder, True, time.perf_counter() - start)
