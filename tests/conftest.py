"""Shared pytest setup: the --soak switch for long random runs (CI does not pass it)."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long random soak tests (marked 'soak'); CI does not")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak run: pass --soak to run it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
