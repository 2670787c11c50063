"""Shared pytest setup: the --soak switch for long random runs (CI does not pass it), and the longest test files
first."""

from pathlib import Path

import pytest

#: Test files that take minutes (Verilator builds of the big wafers), longest first: they start at once, so that
#: under ``-n 2`` (``--dist loadfile``) the other files fill the other worker meanwhile instead of one of these
#: running alone at the end.
LONGEST_FIRST = ("test_paper4x4_cosim.py", "test_readme.py", "test_wafer_cosim.py")


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long random soak tests (marked 'soak'); CI does not")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))   # stable: the rest keep order
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak run: pass --soak to run it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
