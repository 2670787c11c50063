"""Every block's testbench runs on every shipped preset the hardware accepts (``tiny``, ``wafer4x4`` and
``paper4x4``; the full-size presets are for the performance model and break the hardware's rules,
``mozart config check``).

Short runs: the long ones per block live in the block's own test module. The wafer on ``tiny`` and ``wafer4x4``
is ``tests/test_wafer_cosim.py``'s, on ``paper4x4`` ``tests/test_paper4x4_cosim.py``'s; the switch and the chiplet
on ``tiny`` and ``wafer4x4`` are their modules' too, so this module covers the rest.
"""

from __future__ import annotations

import pytest

from mozart.model.config import load_config, preset_names
from mozart.model.hardware_rules import hardware_problems


pytestmark = pytest.mark.cosim

HARDWARE_PRESETS = [name for name in preset_names() if not hardware_problems(load_config(name))]
#: Blocks whose own modules already run them on both presets.
COVERED = {("switch", p) for p in ("tiny", "wafer4x4")} | {("chiplet", p) for p in ("tiny", "wafer4x4")} \
    | {("wafer", p) for p in ("tiny", "wafer4x4")} | {("fifo", "tiny")}
SHORT = {"MOZART_PACKETS": "200", "MOZART_REQUESTS": "500", "MOZART_TOKENS": "200"}
#: Blocks that run one of their tests on a preset: each memory-controller test preloads and reads back the whole
#: DRAM through the backdoor, a word a cycle (paper4x4's 1.3M words: about 50 s a test); this one streams the
#: preset's expert images beside activation saves, and all four run on tiny and wafer4x4.
ONE_TEST = {("memctrl", "paper4x4"): "test_weight_streams_with_activation_writes"}


def test_the_hardware_presets_are_the_scaled_ones():
    assert HARDWARE_PRESETS == ["paper4x4", "tiny", "wafer4x4"]


@pytest.mark.parametrize("block,preset", [(b, p) for b in ("fifo", "memctrl", "root", "switch", "chiplet")
                                          for p in HARDWARE_PRESETS
                                          if (b, p) not in COVERED])
def test_block_testbench_runs_on_preset(block, preset):
    from mozart.sim.build import build
    from mozart.sim.cosim import run
    result = run(build(block, load_config(preset)), seed=7, extra_env=SHORT, testcase=ONE_TEST.get((block, preset)))
    assert result.passed == result.tests - result.skipped and result.passed > 0 and result.failed == 0
