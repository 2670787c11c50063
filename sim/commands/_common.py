"""What the subcommands share: argument types, the ``-o/--out`` and ``--force`` options, progress bars.

Not a subcommand (the leading underscore keeps :func:`mozart.sim.cli.build_parser` from registering it).
Every argument type raises ``argparse.ArgumentTypeError`` with "must be <rule>, not <value>", which argparse
prints as one line and exit status 2 before any work starts.
"""

from __future__ import annotations

import argparse
import math
import sys

from mozart.model.files import check_output_file, check_output_folder

__all__ = ["integer", "number", "positive", "non_negative", "seed", "fraction", "non_negative_float", "timeout",
           "add_out_argument", "add_force_argument", "add_json_argument", "check_output_file",
           "check_output_folder", "progress_bar", "LayerProgress"]


def integer(lowest: int, rule: str):
    """An argparse type: an integer >= ``lowest``, else a one-line error stating ``rule``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lowest - 1
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value
    return parse


def number(lowest: float, highest: float, rule: str, *, above_lowest: bool = False):
    """An argparse type: a finite number in ``[lowest, highest]`` (``(lowest, highest]`` with
    ``above_lowest``), else a one-line error stating ``rule``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low_ok = value > lowest if above_lowest else value >= lowest
        if not (math.isfinite(value) and low_ok and value <= highest):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value
    return parse


positive = integer(1, "a positive integer")
non_negative = integer(0, "a non-negative integer")
seed = non_negative
fraction = number(0.0, 1.0, "a number between 0 and 1")
non_negative_float = number(0.0, math.inf, "a finite number >= 0")
timeout = number(0.0, math.inf, "a positive number of seconds", above_lowest=True)


def add_out_argument(parser: argparse.ArgumentParser, *, required: bool, help: str, metavar: str = "FILE",
                     default: str | None = None) -> None:
    """``-o/--out``: the one spelling of an output option across the commands, with ``--force``."""
    parser.add_argument("-o", "--out", required=required, default=default, metavar=metavar, help=help)
    add_force_argument(parser)


def add_force_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite output files that exist")


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout (messages stay on stderr)")


def progress_bar(total: int, desc: str, unit: str = "it"):
    """A tqdm bar on stderr, drawn only when stderr is a terminal (logs and pipes stay clean); never stdout."""
    from tqdm import tqdm  # noqa: PLC0415 (only commands with long work load it)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=sys.stderr, disable=None,
                leave=False, dynamic_ncols=True)


class LayerProgress:
    """A ``progress(done, total)`` callback drawing a :func:`progress_bar` (created at the first call)."""

    def __init__(self, desc: str, unit: str = "layer") -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = progress_bar(total, self.desc, self.unit)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
