"""The ``mozart`` command line.

Each module of :mod:`mozart.sim.commands` contributes one subcommand through ``register(subparsers)``, which
adds a parser and sets ``func`` (called with the parsed arguments; returns the exit status). Modules whose name
starts with ``_`` hold shared helpers and are not subcommands.

Exit status (documented in ``docs/cli.md``):

- 0: done, every check passed;
- 1: the run finished but a check failed (a cocotb test, a co-simulation check, every point of a sweep);
- 2: bad arguments or bad input (:class:`~mozart.model.errors.MozartError`, a missing toolchain): one line on
  stderr, before any work starts;
- 3: the tool failed after it started (:class:`~mozart.sim.build.BuildError`,
  :class:`~mozart.sim.cosim.CosimError`: a Verilator build failed, the simulator crashed or timed out);
- 130: interrupted (Ctrl-C); 141: stdout was closed early (``mozart ... | head``): quietly, as Unix tools do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import pkgutil
import sys

from mozart.model.errors import MozartError

from . import commands

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_TOOL_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other input error
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def version() -> str:
    return importlib.metadata.version("mozart-wafer")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mozart", description="Mozart: MoE training on 3.5D wafer-scale chiplets. "
                     "Reference model, Verilog generation and co-simulation. Every command: docs/cli.md.")
    parser.add_argument("--version", action="version", version=f"mozart {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def _tool_failed(exc: MozartError) -> bool:
    """A build or simulator failure (the tool broke after it started), not bad input."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    return bool(names & {"mozart.sim.build.BuildError", "mozart.sim.cosim.CosimError"})


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly; later flushes go nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture): nothing to redirect
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # --help, --version: their text must reach stdout, or the pipe is closed
            sys.stdout.flush()
            raise
    except BrokenPipeError:
        return _stdout_closed()
    prefix = f"mozart {args.command}"
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here when the output was short
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except MozartError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return EXIT_TOOL_FAILED if _tool_failed(exc) else EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError) as exc:
        print(f"{prefix}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a full disk, an I/O error: the tool failed while working
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prefix}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_TOOL_FAILED
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
