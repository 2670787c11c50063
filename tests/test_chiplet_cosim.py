"""Co-simulation of the expert chiplet on Verilator against the golden model, for two sizes and two lane counts.

Each config is built once (module-scoped fixture) and its whole testbench module runs in one simulator process:
2,000 random tokens with reloads, extreme values, and heavy output backpressure (``tb/tb_chiplet.py``).
"""

import pytest

from mozart.model.config import load_config, override
from mozart.sim import cosim
from mozart.sim.build import build

pytestmark = pytest.mark.cosim

TINY = load_config("tiny")
CONFIGS = {
    # d_model 8, d_ff 16, 4 lanes, 64-bit flits, one DRAM word per flit
    "d8-f16-l4": TINY,
    # d_model 16, d_ff 64, 16 lanes on 128-bit flits: two DRAM words per flit, multi-flit tokens and partials
    "d16-f64-l16": override(TINY, {"moe.d_model": 16, "moe.d_ff": 64, "hardware.flit_bits": 128,
                                   "hardware.mac_lanes": 16, "dram.rows": 256}),
    # the 4x4 preset: one expert per chiplet and two slots (reloads replace the same expert)
    "wafer4x4": load_config("wafer4x4"),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def chiplet_build(request):
    return build("chiplet", CONFIGS[request.param])


def test_chiplet_is_bit_exact_under_random_traffic(chiplet_build):
    result = cosim.run(chiplet_build, seed=11)   # raises CosimFailure naming the failed tests
    assert result.tests == 3 and result.failed == 0
    random = result.summary["test_random_traffic"]
    assert random["tokens"] >= 2000 and random["combine"] == random["tokens"]
    assert random["mem_write"] > 0 and random["loaded"] > 2
    assert result.summary["test_output_backs_up"]["mem_write"] > 0


@pytest.mark.soak
@pytest.mark.parametrize("seed", [101, 102])
def test_chiplet_soak(chiplet_build, seed):
    """20,000 random tokens per config and seed (run with --soak)."""
    result = cosim.run(chiplet_build, seed=seed, testcase="test_random_traffic",
                       extra_env={"MOZART_TOKENS": "20000"})
    assert result.summary["test_random_traffic"]["tokens"] >= 20000
