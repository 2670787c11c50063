"""Co-simulation of the expert chiplet on Verilator against the golden model, for two sizes and two lane counts.

Each config is built once (module-scoped fixture) and its whole testbench module runs in one simulator process:
2,000 random tokens with reloads, extreme values, heavy output backpressure, and a whole training step (forward,
backward, update) with the model's memory behind the chiplet, at 30% idle and 30% backpressure and at 90%
backpressure (``tb/tb_chiplet.py``). Two broken environments show that the training step's checks catch them.
"""

import pytest

from mozart.model.config import load_config, override
from mozart.sim import cosim
from mozart.sim.cosim import CosimFailure
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
    assert result.tests == 5 and result.failed == 0
    random = result.summary["test_random_traffic"]
    assert random["tokens"] >= 2000 and random["combine"] == random["tokens"]
    assert random["mem_write"] > 0 and random["loaded"] > 2
    assert result.summary["test_output_backs_up"]["mem_write"] > 0
    for test, forward_tokens in (("test_training_step", 40), ("test_training_step_backs_up", 24)):
        step = result.summary[test]
        assert step["forward_tokens"] == forward_tokens and step["backward_tokens"] >= 10, step
        assert step["gate_grad"] == step["backward_tokens"] and step["mem_read"] >= step["backward_tokens"], step
        assert step["updated"] == min(chiplet_build.cfg.hardware.sram_slots, chiplet_build.cfg.experts_per_chiplet)


def test_training_step_without_the_backward_credit_stalls_and_the_watchdog_names_it():
    """Mutant environment: backward DISPATCHes sent without the root's credit fill the chiplet at 90%
    backpressure and block the restores' MEM_DATA behind them on the one input link."""
    result = cosim.run(build("chiplet", TINY), seed=11, testcase="test_training_step_backs_up",
                       extra_env={"MOZART_TRAIN_FAULT": "no-credit"}, check=False)
    assert result.failed_tests == ("test_training_step_backs_up",)
    with pytest.raises(CosimFailure, match=r"(?s)DeadlockError: chiplet watchdog: no flit moved .* while work is "
                       r"pending: .*memory: \d+ answers waiting, the first a MEM_DATA .*next a backward DISPATCH "
                       r"\(tag \d+\), 5 backward tokens in flight of the credit 4"):
        result.check()


def test_training_step_with_a_memory_that_forgets_writes_fails_on_the_gradients():
    """Mutant environment: a memory that keeps no write, so the restores read zeros instead of the saved
    activations; the first backward's input-gradient COMBINE is wrong."""
    result = cosim.run(build("chiplet", TINY), seed=11, testcase="test_training_step",
                       extra_env={"MOZART_TRAIN_FAULT": "drop-writes"}, check=False)
    assert result.failed_tests == ("test_training_step",)
    with pytest.raises(CosimFailure, match=r"chiplet scoreboard \(test_training_step\): port port_out must emit "
                       r"only expected packets, but emitted (COMBINE|GATE_GRAD)\(dst=0"):
        result.check()


@pytest.mark.soak
@pytest.mark.parametrize("seed", [101, 102])
def test_chiplet_soak(chiplet_build, seed):
    """20,000 random tokens per config and seed (run with --soak)."""
    result = cosim.run(chiplet_build, seed=seed, testcase="test_random_traffic",
                       extra_env={"MOZART_TOKENS": "20000"})
    assert result.summary["test_random_traffic"]["tokens"] >= 20000


@pytest.mark.soak
@pytest.mark.parametrize("seed", [103, 104])
def test_chiplet_training_soak(chiplet_build, seed):
    """A training step of 2,000 forward tokens per config and seed (run with --soak); the saves reuse the
    activation region's records, so a few hundred distinct tokens go backward."""
    result = cosim.run(chiplet_build, seed=seed, testcase="test_training_step",
                       extra_env={"MOZART_TRAIN_TOKENS": "2000"})
    step = result.summary["test_training_step"]
    assert step["forward_tokens"] == 2000 and step["gate_grad"] == step["backward_tokens"] >= 200, step
