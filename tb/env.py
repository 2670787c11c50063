"""The cocotb side of :mod:`mozart.sim.cosim`: the config, seed and summary a testbench gets from its runner.

:func:`mozart.sim.cosim.run` passes them as environment variables (``MOZART_CONFIG``: TOML text,
``MOZART_SEED``, ``MOZART_SUMMARY``: a JSON path). Outside a run (a testbench started by hand) the config
falls back to the ``tiny`` preset and the seed to cocotb's ``RANDOM_SEED``.
"""

from __future__ import annotations

import json
import os
import tomllib
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mozart.model.config import WaferConfig, config_from_dict, load_config
from mozart.model.cosim_options import ENV_CONFIG, ENV_SEED, ENV_SUMMARY

__all__ = ["test_config", "test_seed", "rng", "env_int", "write_summary", "Clocking",
           "clock_and_reset"]



def test_config() -> WaferConfig:
    """The config the runner passed (``MOZART_CONFIG``), else the ``tiny`` preset."""
    text = os.environ.get(ENV_CONFIG)
    if not text:
        return load_config("tiny")
    return config_from_dict(tomllib.loads(text), "MOZART_CONFIG")


def test_seed() -> int:
    """The run's seed (``MOZART_SEED``), else cocotb's ``RANDOM_SEED``, else 0."""
    value = os.environ.get(ENV_SEED)
    if value is not None:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"MOZART_SEED must be an integer, not {value!r}") from None
    try:
        import cocotb  # noqa: PLC0415
        return int(getattr(cocotb, "RANDOM_SEED", 0) or 0)
    except ImportError:
        return 0


def env_int(name: str, default: int) -> int:
    """An integer testbench option from the environment (``MOZART_PACKETS=20000``), checked."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


def rng(*streams: str | int) -> np.random.Generator:
    """A numpy Generator seeded by :func:`test_seed` and ``streams`` (e.g. a port name).

    Each named stream gets its own independent sequence, so adding a port or a random choice in one place
    does not shift the random numbers everywhere else.
    """
    key = [test_seed()] + [s if isinstance(s, int) else zlib.crc32(str(s).encode()) for s in streams]
    return np.random.default_rng(key)


def write_summary(data: Mapping[str, Any], *, test: str) -> None:
    """Record ``data`` (JSON-able) under the name of the cocotb ``test`` that made it, in the run's summary file.

    Several tests of one module each add their entry; :class:`mozart.sim.cosim.CosimResult` reads them back
    (``summary``) and adds up numeric values (``totals()``). Without ``MOZART_SUMMARY`` this does nothing.
    """
    target = os.environ.get(ENV_SUMMARY)
    if not target:
        return
    path = Path(target)
    try:
        current = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        current = {}
    current[test] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in data.items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


class Clocking:
    """The clock a testbench started: converts simulated time to cycles for summaries."""

    def __init__(self, clock_handle, period_ns: float):
        self.clk = clock_handle
        self.period_ns = period_ns
        from cocotb.utils import get_sim_time  # noqa: PLC0415 (needs a running simulator)
        self._now = lambda: get_sim_time(unit="ns")
        self.start_ns = self._now()

    @property
    def cycle(self) -> int:
        """Cycles since the clock started."""
        return int((self._now() - self.start_ns) // self.period_ns)


async def clock_and_reset(dut, *, period_ns: float = 10, reset_cycles: int = 2) -> Clocking:
    """Start ``dut.clk`` and hold ``dut.rst`` high for ``reset_cycles`` cycles (Amaranth's sync domain ports).

    Returns a :class:`Clocking` whose ``cycle`` counts from the end of reset. The clock task belongs to the
    running test, so every test calls this once.
    """
    from cocotb.clock import Clock  # noqa: PLC0415
    from cocotb.triggers import ClockCycles  # noqa: PLC0415
    Clock(dut.clk, period_ns, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst.value = 0
    return Clocking(dut.clk, period_ns)
