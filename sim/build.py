"""Verilog generation and the Verilator build cache.

One build folder per (design, config, waves, profile)::

    $MOZART_BUILD_DIR (default ./.mozart-build)/
        <design>/<config name>-<sha256 of the config TOML, 12 hex>[-<profile>][-waves]/
            <design>.v            the Verilog (rewritten only when its text changes)
            verilog.key           what the Verilog was converted from (design, config, sources, Amaranth)
            <toplevel>            the Verilator executable (cocotb loads into it)
            mozart-build.json     the stamp: what the executable was built from, and its own SHA-256
            build.log             Verilator and make output of the last build
        <design>/<...>.lock       a file lock: concurrent builds of one folder wait for each other

**Conversion cache.** Converting a design to Verilog costs 1-40 s (the 4x4 wafer is the slow one), so it is
skipped when ``verilog.key`` matches: the key hashes the design's name, the config's TOML, every source file of
``mozart.hw`` and ``mozart.model`` and the Amaranth version, so any edit that could change the Verilog
converts again.

**Build cache.** The executable is rebuilt only when the stamp differs: the Verilog text, the build profile
(Verilator arguments, what is public, C++ optimisation), the timescale, the versions of Verilator and cocotb,
or the executable's own hash (a damaged or replaced binary is rebuilt). After a build the object files and
precompiled headers are deleted (ccache keeps the objects that a rebuild reuses), so a folder holds little
more than the executable.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

from mozart.model.config import WaferConfig, to_toml
from mozart.model.errors import MozartError

from . import toolchain
from .designs import Design, design as lookup_design

__all__ = ["Build", "BuildError", "BuildProfile", "DEFAULT_PROFILE", "build", "write_verilog", "verilog_text",
           "build_root", "build_dir_for", "config_key", "source_digest"]

#: Amaranth writes no `timescale; cocotb's clocks are given in ns.
TIMESCALE = ("1ns", "1ps")

_STAMP = "mozart-build.json"
_VERILOG_KEY = "verilog.key"

#: What a finished build no longer needs (ccache holds the objects a rebuild reuses).
_BUILD_LEFTOVERS = ("*.o", "*.a", "*.gch", "*.d", "*.cpp", "*.h", "*.dat")


class BuildError(MozartError, RuntimeError):
    """Verilog generation or the Verilator build of a design failed; the message has the log's tail."""


@dataclass(frozen=True)
class BuildProfile:
    """How Verilator builds a design: its arguments, what cocotb may see, and the C++ optimisation levels.

    Members
    -------
    name : str
        Part of the build folder's name, except for :data:`DEFAULT_PROFILE`.
    verilator_args : tuple of str
        Extra Verilator arguments.
    public : str
        ``"ports"``: only the top module's ports are visible to cocotb (``--public-depth 1``), so Verilator may
        inline and optimise everything below them; ``"all"``: every signal (cocotb's own ``--public-flat-rw``).
        The testbenches read and drive top-level ports only; a waveform (``--trace``) needs no public signals.
    make_vars : tuple of (str, str)
        ``verilated.mk`` variables: ``OPT_FAST`` compiles the per-cycle evaluation code, ``OPT_SLOW`` the code run
        once (constructors, symbol tables), ``OPT_GLOBAL`` Verilator's runtime library.
    """

    name: str
    verilator_args: tuple[str, ...] = toolchain.VERILATOR_WARNINGS
    public: str = "ports"
    make_vars: tuple[tuple[str, str], ...] = (("OPT_FAST", "-O1"), ("OPT_SLOW", "-O1"), ("OPT_GLOBAL", "-O1"))

    def __post_init__(self):
        if self.public not in ("ports", "all"):
            raise BuildError(f"BuildProfile.public must be 'ports' or 'all', not {self.public!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise BuildError(f"BuildProfile.name must be letters, digits, '_', '.' or '-', not {self.name!r}")

    def stamp(self) -> dict:
        return {"args": list(self.verilator_args), "public": self.public, "make": [list(v) for v in self.make_vars]}


#: Every build's profile unless a benchmark asks for another: ports public, everything at -O1 (docs/cosim.md, "Build
#: flags": the 4x4 wafer simulates as fast as with -O2 and compiles in half the CPU time).
DEFAULT_PROFILE = BuildProfile("default")


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
        Wall time of this call (conversion unless cached, and the build when ``rebuilt``).
    profile : BuildProfile
        How it was built.
    converted : bool
        ``True`` if this call converted the design to Verilog, ``False`` if the conversion cache had it.
    """

    design: Design
    cfg: WaferConfig
    waves: bool
    verilog: Path
    build_dir: Path
    rebuilt: bool
    seconds: float
    profile: BuildProfile = DEFAULT_PROFILE
    converted: bool = True

    @property
    def toplevel(self) -> str:
        """The Verilog top module that was built (the design's harness, if it has one)."""
        return self.design.sim_toplevel

    @property
    def executable(self) -> Path:
        return self.build_dir / self.toplevel

    @property
    def runner(self):
        """A fresh cocotb Verilator runner (runners keep per-call state, so do not share one across threads)."""
        return _runner_class()(self.profile)


@functools.lru_cache(maxsize=1)
def _runner_class():
    """cocotb's Verilator runner with a :class:`BuildProfile` applied to its build commands."""
    from cocotb_tools.runner import Verilator  # noqa: PLC0415 (cocotb_tools is only needed to build and simulate)

    class ProfiledVerilator(Verilator):
        def __init__(self, profile: BuildProfile):
            super().__init__()
            self.profile = profile
            self.progress: Callable[[str], None] = _silent

        def _build_command(self):
            verilate, make = super()._build_command()
            if self.profile.public == "ports":
                verilate = [a for a in verilate if a != "--public-flat-rw"]
                verilate[1:1] = ["--public-depth", "1"]
            return [verilate, [*make, *(f"{k}={v}" for k, v in self.profile.make_vars)]]

        def _execute_cmds(self, cmds, cwd, stdout=None):
            # Verilating and compiling get a line each on the progress channel; while make compiles, a bar counts
            # the C++ files it has started (drawn only on a terminal).
            for i, cmd in enumerate(cmds):
                compiling = len(cmds) == 2 and i == 1
                if len(cmds) == 2:
                    self.progress("verilating" if i == 0 else f"compiling C++ ({_cpp_files(Path(cwd))} files)")
                if compiling and stdout is not None:
                    returncode = _run_counting_compiles(cmd, cwd, self.env, stdout, _cpp_files(Path(cwd)))
                else:
                    returncode = subprocess.run(cmd, cwd=cwd, env=self.env, check=False, stdout=stdout,
                                                stderr=None if stdout is None else subprocess.STDOUT).returncode
                if returncode != 0:
                    raise RuntimeError(f"Command failed with return code: {returncode}")

    return ProfiledVerilator


def _cpp_files(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.cpp"))


def _run_counting_compiles(cmd, cwd, env, log, total: int) -> int:
    """Run make with its output copied to ``log``, and a tqdm bar of the ``.cpp`` files it compiles (on stderr,
    only when stderr is a terminal)."""
    from tqdm import tqdm  # noqa: PLC0415 (only a build draws it)
    with tqdm(total=total, desc="compiling C++", unit="file", file=sys.stderr, disable=None, leave=False) as bar:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if " -c " in line and ".cpp" in line and bar.n < total:
                bar.update(1)
        return proc.wait()


def _silent(_: str) -> None:
    pass


def stderr_progress(design: str, config: str) -> Callable[[str], None]:
    """A progress channel printing ``mozart: <design> (<config>): <phase>`` lines on stderr, with the time."""
    start = time.perf_counter()

    def say(phase: str) -> None:
        print(f"mozart: {design} ({config}): {phase} [{time.perf_counter() - start:.0f} s]", file=sys.stderr,
              flush=True)
    return say


def _design(design: Design | str) -> Design:
    return design if isinstance(design, Design) else lookup_design(design)


def build_root() -> Path:
    """``$MOZART_BUILD_DIR``, or ``.mozart-build`` in the current directory, as an absolute path.

    A path that exists and is not a folder is a :class:`BuildError` naming it."""
    given = os.environ.get("MOZART_BUILD_DIR")
    root = Path(given or ".mozart-build").absolute()
    if root.exists() and not root.is_dir():
        name = f"MOZART_BUILD_DIR ({given})" if given else str(root)
        raise BuildError(f"{name} must be a folder for Verilator builds, not a file")
    return root


def config_key(cfg: WaferConfig) -> str:
    """``<name>-<12 hex of sha256(TOML)>``: equal configs share a folder, any changed field gets its own."""
    return f"{cfg.name}-{hashlib.sha256(to_toml(cfg).encode()).hexdigest()[:12]}"


def build_dir_for(design: Design | str, cfg: WaferConfig, *, waves: bool = False,
                  profile: BuildProfile = DEFAULT_PROFILE) -> Path:
    d = _design(design)
    suffix = ("" if profile == DEFAULT_PROFILE else f"-{profile.name}") + ("-waves" if waves else "")
    return build_root() / d.name / (config_key(cfg) + suffix)


def verilog_text(design: Design | str, cfg: WaferConfig, *, simulation: bool = False) -> str:
    """The Verilog of ``design`` for ``cfg`` (no source locations, so the text is stable across checkouts); with
    ``simulation``, of the design inside its test harness if it has one (what co-simulation builds)."""
    from amaranth.back import verilog  # noqa: PLC0415 (keep 'import mozart.sim.build' light)
    d = _design(design)
    try:
        component = d.build(cfg, simulation=simulation)
    except MozartError:
        raise
    except Exception as exc:  # an elaboration bug: say which block and config
        raise BuildError(f"block {d.name!r} must elaborate for config {cfg.name!r}, but {d.component}(cfg) "
                         f"raised {type(exc).__name__}: {exc}") from exc
    top = d.sim_toplevel if simulation else d.toplevel
    _leave_out_zero_init()
    token = _ZERO_INIT_LEFT_OUT.set(True)
    try:
        return compact_zero_init(verilog.convert(component, name=top, emit_src=False))
    finally:
        _ZERO_INIT_LEFT_OUT.reset(token)


#: Set while ``verilog_text`` converts: a memory whose initial value is all zero gets no ``$meminit_v2`` cell.
#: Amaranth 0.5 emits one net per initial bit and Yosys then writes one line per word: for a DRAM model of
#: 655,360 words, 1 minute in Python and over 1 in Yosys, for each of a wafer's memory controllers. The
#: memory comes out of Yosys with no initial block, and ``compact_zero_init`` writes the zeroes back as the same
#: loop it makes of Yosys's per-word lines, so the Verilog is the same as with the cell.
_ZERO_INIT_LEFT_OUT: contextvars.ContextVar[bool] = contextvars.ContextVar("mozart_zero_init_left_out", default=False)


def _leave_out_zero_init() -> None:
    """Wrap Amaranth's memory-initialisation emitter once (per process) to honour ``_ZERO_INIT_LEFT_OUT``."""
    from amaranth.back import rtlil  # noqa: PLC0415 (keep 'import mozart.sim.build' light)
    emitter = rtlil.ModuleEmitter
    if getattr(emitter.emit_memory, "mozart_zero_init", False):
        return
    emit_memory = emitter.emit_memory

    def emit_memory_unless_zero(self, cell_idx, cell):
        if not (_ZERO_INIT_LEFT_OUT.get() and not any(cell.init)):
            emit_memory(self, cell_idx, cell)

    emit_memory_unless_zero.mozart_zero_init = True
    emitter.emit_memory = emit_memory_unless_zero


# An `initial` block that zeroes a whole memory element by element, as Yosys writes it for lib.memory.Memory's
# all-zero init: one line per word (8,192 for one DRAM model; 18% of the 2x2 wafer's Verilog).
_ZERO_INIT = re.compile(r"^( *)initial begin\n((?:\1  (?:\\\S+ |[A-Za-z_][\w$]*)\[\d+\] = \d+'(?:h0+|d0);\n)+)\1end\n",
                        re.MULTILINE)
_ZERO_LINE = re.compile(r"^ *(\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'(?:h0+|d0);$")


# A memory declaration with no initial block after it: one whose all-zero init ``verilog_text`` left out.
_UNINITIALISED = re.compile(r"^( *)reg (?:\[(\d+):0\] )?(\\\S+ |[A-Za-z_][\w$]*) \[(\d+):0\];\n"
                            r"(?!\1(?:initial |integer mozart_zero_init_))",
                            re.MULTILINE)


def compact_zero_init(text: str) -> str:
    """``text`` with every element-by-element zero initialisation of a whole memory written as one ``for`` loop,
    and every memory declared without an initial block (``_ZERO_INIT_LEFT_OUT``) given the same loop.

    The same initial values in any Verilog simulator, in a few lines instead of one per word. A block that
    initialises anything else (a non-zero word, several memories, a gap in the indices) is left as it is."""
    counter = 0

    def zero_loop(indent: str, name: str, words: int, width: str) -> str:
        nonlocal counter
        counter += 1
        var = f"mozart_zero_init_{counter}"
        return (f"{indent}integer {var};\n{indent}initial for ({var} = 0; {var} < {words}; {var} = {var} + 1) "
                f"{name}[{var}] = {width}'h0;\n")

    def declared(match: re.Match) -> str:
        indent, high, name, last = match.groups()
        return match.group(0) + zero_loop(indent, name, int(last) + 1, str(int(high or 0) + 1))

    def loop(match: re.Match) -> str:
        lines = [_ZERO_LINE.match(line) for line in match.group(2).splitlines()]
        names = {m.group(1) for m in lines}
        if len(names) != 1 or [int(m.group(2)) for m in lines] != list(range(len(lines))):
            return match.group(0)
        return zero_loop(match.group(1), names.pop(), len(lines), lines[0].group(3))

    return _UNINITIALISED.sub(declared, _ZERO_INIT.sub(loop, text))


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over every ``.py`` file of ``mozart.hw`` and ``mozart.model`` (but the formal harnesses, which no
    design imports) and the Amaranth version: what the Verilog of any design can depend on. Computed once per
    process (about 10 ms)."""
    import mozart.hw  # noqa: PLC0415
    import mozart.model  # noqa: PLC0415
    h = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for package in (mozart.hw, mozart.model):
        base = Path(package.__file__).parent
        for path in sorted(p for p in base.rglob("*.py") if "formal" not in p.relative_to(base).parts):
            h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _verilog_key(d: Design, cfg: WaferConfig) -> str:
    text = f"{d.name}\0{d.component}\0{d.harness}\0{d.toplevel}\0{to_toml(cfg)}\0{source_digest()}"
    return hashlib.sha256(text.encode()).hexdigest()


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


def _file_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def _stamp(text: str, waves: bool, profile: BuildProfile) -> dict:
    return {
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "waves": waves,
        "profile": profile.stamp(),
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


def _cached_verilog(d: Design, cfg: WaferConfig, folder: Path, progress) -> tuple[str, bool]:
    """The design's Verilog from the folder if its key matches, else converted now: (text, converted)."""
    key = _verilog_key(d, cfg)
    key_path, verilog_path = folder / _VERILOG_KEY, folder / f"{d.name}.v"
    try:
        if key_path.read_text().strip() == key:
            return verilog_path.read_text(), False
    except OSError:
        pass
    progress("converting to Verilog")
    text = verilog_text(d, cfg, simulation=True)
    folder.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)
    _write_if_changed(verilog_path, text)
    key_path.write_text(key + "\n")
    return text, True


def _lock(folder: Path, progress) -> FileLock:
    lock = FileLock(str(folder) + ".lock")
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        progress(f"waiting for lock on {folder} (another process builds it)")
        lock.acquire()
    return lock


def _remove_leftovers(folder: Path) -> None:
    for pattern in _BUILD_LEFTOVERS:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def build(design: Design | str, cfg: WaferConfig, *, waves: bool = False, profile: BuildProfile = DEFAULT_PROFILE,
          progress: Callable[[str], None] | None = None) -> Build:
    """Build ``design`` for ``cfg`` with Verilator into its cache folder, or reuse the cached executable.

    Parameters
    ----------
    design : Design or str
        A registry entry or its name (``"fifo"``).
    cfg : WaferConfig
        The config; its TOML text keys the folder.
    waves : bool
        Build with VCD tracing (a separate folder: a traced model is slower).
    profile : BuildProfile
        Verilator arguments and optimisation (a non-default profile gets its own folder).
    progress : callable, optional
        Called with a short phase description (converting, waiting for a lock, verilating, compiling, done);
        :func:`stderr_progress` prints them.

    Raises
    ------
    ToolchainError
        Verilator, a C++ compiler or make is missing.
    BuildError
        Elaboration or the Verilator build failed, or the build folder cannot be used.
    """
    start = time.perf_counter()
    say = progress or _silent
    d = _design(design)
    tc = toolchain.find_toolchain()
    folder = build_dir_for(d, cfg, waves=waves, profile=profile)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BuildError(f"build folder {folder.parent} must be a folder, not a file") from None
    with _lock(folder, say):
        text, converted = _cached_verilog(d, cfg, folder, say)
        verilog_path = folder / f"{d.name}.v"
        stamp_path = folder / _STAMP
        executable = folder / d.sim_toplevel
        stamp = _stamp(text, waves, profile)
        try:
            cached = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            cached = None
        if (isinstance(cached, dict) and cached.pop("executable_sha256", None) == _file_sha256(executable)
                and cached == stamp):
            return Build(d, cfg, waves, verilog_path, folder, False, time.perf_counter() - start, profile, converted)
        stamp_path.unlink(missing_ok=True)  # a failed build must not leave a stamp of the old one
        executable.unlink(missing_ok=True)
        log = folder / "build.log"
        runner = Build(d, cfg, waves, verilog_path, folder, True, 0.0, profile).runner
        runner.progress = say
        with toolchain.activated(toolchain=tc):
            try:
                runner.build(sources=[verilog_path], hdl_toplevel=d.sim_toplevel, build_dir=folder,
                             build_args=list(profile.verilator_args), timescale=TIMESCALE, waves=waves,
                             always=True, log_file=log)
            except (RuntimeError, SystemExit) as exc:
                raise BuildError(f"Verilator build of block {d.name!r} for config {cfg.name!r} must succeed, "
                                 f"but failed ({exc}); log {log}:\n{_log_tail(log)}") from None
        if not executable.is_file():
            raise BuildError(f"Verilator build of block {d.name!r} must produce {executable}, but did not; "
                             f"log {log}:\n{_log_tail(log)}")
        _remove_leftovers(folder)
        stamp["executable_sha256"] = _file_sha256(executable)
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    say(f"built in {time.perf_counter() - start:.0f} s")
    return Build(d, cfg, waves, verilog_path, folder, True, time.perf_counter() - start, profile, converted)
