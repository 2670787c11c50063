"""Co-simulation of the switch's Verilog on Verilator against its transaction model (``tb/tb_switch.py``).

Two switch sizes (2 and 4 chiplets per group: ``tiny`` and ``wafer4x4``) times two flit widths (64 and 128
bits); the 128-bit variants also shrink the reduction table to one entry, so the forward-progress test runs at
table size 1 on both sizes. One Verilator build per config (module-scoped fixture), one simulator process per
pytest test. The default run does a seeded random run of 1500 packets and one of 5,000 per config; ``--soak``
adds the 20,000-packet soaks.
"""

from __future__ import annotations

import pytest

from mozart.model.config import load_config, override

pytestmark = pytest.mark.cosim

CONFIGS = {
    "tiny": ("tiny", {}),
    "tiny-f128-e1": ("tiny", {"hardware.flit_bits": 128, "hardware.reduction_entries": 1}),
    "wafer4x4": ("wafer4x4", {}),
    "wafer4x4-f128-e1": ("wafer4x4", {"hardware.flit_bits": 128, "hardware.reduction_entries": 1}),
}

DIRECTED = ["test_every_kind_every_port_pair", "test_multicast_every_subset", "test_back_to_back_max_length",
            "test_reduction_table_pressure", "test_random_soak"]
SEED = 20261123


def config(name: str):
    preset, changes = CONFIGS[name]
    return override(load_config(preset), {"name": name, **changes})


@pytest.fixture(scope="module", params=list(CONFIGS))
def built(request):
    from mozart.sim.build import build
    from mozart.sim.designs import design
    return build(design("switch"), config(request.param))


def test_directed_and_random(built):
    """Directed tests (every kind and port pair, multicast and reduction 1..C, back-to-back maximum-length
    packets, table pressure) and a 1500-packet seeded random run, in one simulator process."""
    from mozart.sim.cosim import run
    result = run(built, seed=SEED, testcase=DIRECTED)
    assert result.tests == len(DIRECTED)
    totals = result.totals()
    assert totals["packets"] > 1500 and totals["reduced"] > 0


def test_random_5k(built):
    """5,000 random packets of mixed kinds with random idle and backpressure on every port (in CI; the 20,000-packet
    soak below runs with --soak)."""
    from mozart.sim.cosim import run
    result = run(built, seed=SEED + 2, testcase="test_random_soak", extra_env={"MOZART_PACKETS": "5000"})
    assert result.totals()["packets_in"] >= 5000 and result.skipped == 0


@pytest.mark.soak
def test_soak_20k(built):
    """At least 20,000 random packets of mixed kinds with random idle and backpressure on every port."""
    from mozart.sim.cosim import run
    result = run(built, seed=SEED + 1, testcase="test_random_soak", extra_env={"MOZART_PACKETS": "20000"})
    assert result.totals()["packets_in"] >= 20000
