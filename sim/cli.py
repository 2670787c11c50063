"""The ``mozart`` command line.

Each module of :mod:`mozart.sim.commands` contributes one subcommand through ``register(subparsers)``, which
adds a parser and sets ``func`` (called with the parsed arguments; returns the exit status). Bad arguments and
bad input exit with status 2 and one line on stderr; an interrupted run exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from mozart.model.errors import MozartError

from . import commands


def _quiet_unused_blocks() -> None:
    """A config rejected while a composed design (the wafer) was being built leaves its already-built blocks
    unelaborated; Amaranth would warn about each at exit, burying the one-line error."""
    from amaranth.hdl import UnusedElaboratable  # noqa: PLC0415 (only on this error path)
    warnings.simplefilter("ignore", UnusedElaboratable)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other input error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mozart", description="Mozart: MoE training on 3.5D wafer-scale chiplets. "
                     "Reference model, Verilog generation and co-simulation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MozartError as exc:
        print(f"mozart {args.command}: error: {exc}", file=sys.stderr)
        _quiet_unused_blocks()
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"mozart {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mozart {args.command}: interrupted", file=sys.stderr)
        return 130
