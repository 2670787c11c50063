"""Memory controller on Verilator (cocotb, ``mozart.tb.tb_memctrl``) for three DRAM configs: few banks with slow rows
and refresh (strict order, and with a reorder window of 4), and many banks with two words per flit. One build per
config, shared by the module's tests.

By default the random mix runs ``DEFAULT_REQUESTS`` requests per config (a few seconds); ``--soak`` adds the full
run of ``SOAK_REQUESTS`` (>= 50,000) random reads and writes per config."""

import pytest

from mozart.model.config import load_config, override
from mozart.sim import cosim
from mozart.sim.build import build

pytestmark = pytest.mark.cosim

TINY = load_config("tiny")
# 2 banks, 24 rows (1536 words: addresses past the end exist), slow rows, refresh every 300 cycles
SLOW_ROWS = override(TINY, {"name": "memctrl-slow-rows", "dram.banks": 2, "dram.rows": 24, "dram.row_words": 32,
                            "dram.t_rcd": 9, "dram.t_cl": 7, "dram.t_rp": 8, "dram.refresh_interval": 300,
                            "dram.refresh_cycles": 12, "dram.max_outstanding": 3})
CONFIGS = {
    "slow-rows": SLOW_ROWS,
    # the same with a reorder window of 4: row hits first; the scoreboard checks each source's order
    "slow-rows-w4": override(SLOW_ROWS, {"name": "memctrl-slow-rows-w4", "dram.reorder_window": 4}),
    # 16 banks of short rows, 32-bit words (2 per flit), 3 chiplets (a LOAD can name a missing one)
    "many-banks": override(TINY, {"name": "memctrl-many-banks", "tree.chiplets_per_group": 3, "moe.experts": 12,
                                  "dram.word_bits": 32, "dram.banks": 16, "dram.rows": 5, "dram.row_words": 16,
                                  "dram.t_rcd": 3, "dram.t_cl": 3, "dram.t_rp": 3, "dram.max_outstanding": 8}),
}
DEFAULT_REQUESTS = 4000
SOAK_REQUESTS = 50_000


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def memctrl_build(request):
    """One Verilator build per config (cached across runs by the build folder)."""
    return build("memctrl", CONFIGS[request.param])


def test_memctrl_testbench(memctrl_build):
    """Every cocotb test of the module in one simulator run: random mix, weight streams with activation saves,
    every bad request, bandwidth (data checked in all of them)."""
    result = cosim.run(memctrl_build, seed=1, extra_env={"MOZART_REQUESTS": str(DEFAULT_REQUESTS)})
    assert result.tests == 4 and result.failed == 0
    summary = result.summary
    assert summary["test_random_mix"]["requests"] == DEFAULT_REQUESTS
    assert summary["test_every_bad_request"]["errors"] == 3 * summary["test_every_bad_request"]["bad_kinds"]
    assert summary["test_weight_streams_with_activation_writes"]["saves"] > 0


@pytest.mark.soak
def test_memctrl_soak(memctrl_build):
    """The full random mix: >= 50,000 reads and writes with random sizes, addresses, idle and backpressure."""
    result = cosim.run(memctrl_build, seed=2, testcase="test_random_mix",
                       extra_env={"MOZART_REQUESTS": str(SOAK_REQUESTS)})
    assert result.summary["test_random_mix"]["requests"] == SOAK_REQUESTS
