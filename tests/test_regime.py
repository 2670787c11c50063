"""The regime ratios (``mozart.model.perf.regime``) and the derived preset ``paper4x4`` (docs/regime.md).

The ratios are recomputed here by hand from the configs and the blocks' contracts, as docs/regime.md derives
them, and checked against the module; then ``paper4x4`` must land within a factor of two of the full-size
Qwen3-30B-A3B layer on every quantity the derivation matches, and must share its critical resource. The
mutants (``wafer4x4``, ``paper4x4`` with a DRAM word as wide as a flit or without its two weight rounds) fail.
"""

from __future__ import annotations

import math

import pytest

from mozart.model.blocks import ChipletContract, MemoryControllerContract
from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.perf.regime import RATIOS, regime
from mozart.model.protocol import Protocol

from cli_run import run

#: The quantities docs/regime.md matches to the full-size Qwen3 layer within a factor of two (the others cannot
#: be: see the doc); the weight rounds and the critical resource must be the same.
MATCHED = ("weights/compute", "dedup_saving")
FACTOR = 2.0


def within(value: float, reference: float, factor: float = FACTOR) -> bool:
    return reference / factor <= value <= reference * factor


def mismatches(cfg, reference) -> list[str]:
    """The matched quantities of ``cfg``'s regime that are not within a factor of two of ``reference``'s, then
    "rounds" and "critical" when the weight rounds or the resource that bounds the layer differ."""
    mine = regime(cfg)
    bad = [q for q in MATCHED if not within(mine.quantities()[q], reference.quantities()[q])]
    return bad + [what for what, a, b in (("rounds", mine.rounds, reference.rounds),
                                          ("critical", mine.critical, reference.critical)) if a != b]


@pytest.fixture(scope="module")
def qwen3():
    return regime(load_config("qwen3-30b-a3b"))


def test_qwen3_layer_by_hand(qwen3):
    """docs/regime.md's arithmetic for the full-size layer (per-layer reading, HBM2, layer 0)."""
    cfg = load_config("qwen3-30b-a3b")
    expert_bytes = 3 * 2048 * 768 * 2                     # SwiGLU, FP16
    # 2 rounds x 4 micro-batches x 4 resident experts, each bound by its SRAM read: 64 tiles x 32 B per cycle
    assert qwen3.cycles["compute"] == 2 * 4 * 4 * (expert_bytes / (64 * 32))
    # the group's 32 experts from HBM2 at 256 B per cycle (4 channels of one 64 B link each), 100 cycles latency
    assert qwen3.cycles["weights"] == pytest.approx(100 + 32 * expert_bytes / 256)
    # the Baseline: 8192 tokens x 8 replicas over 4 root links, a packet = header + 2048 x 2 B in 64 B flits
    assert qwen3.cycles["dispatch"] == 8192 * 8 / 4 * (1 + 2048 * 2 / 64)
    assert qwen3.quantities()["tokens/expert/micro-batch"] == 2048 * 8 / 128
    assert (qwen3.rounds, qwen3.critical) == (2, "weights")
    assert cfg.hardware.sram_slots == 4 and cfg.experts_per_chiplet == 8


def test_paper4x4_layer_by_hand():
    """docs/regime.md's arithmetic for the scaled layer, from the RTL blocks' contracts."""
    cfg = load_config("paper4x4")
    chiplet, memctrl, proto = ChipletContract(cfg), MemoryControllerContract(cfg), Protocol(cfg)
    assert chiplet.cycles_per_expert == 2 * 32 * 32 // 32 + (4 - 32 // 32)   # issue + the W1->W2 stall
    assert proto.image_words == 2 * (32 * 32 // 32) * 32                  # 2 matrices x 32 flits x 32 bytes
    assert memctrl.load_efficiency == 1.0                                 # the DRAM (1 byte/cycle) limits
    r = regime(cfg)
    pairs_per_expert = 256 * 8 / 128                                      # tokens x top-k / experts
    assert r.cycles["compute"] == 8 * pairs_per_expert * chiplet.cycles_per_expert == 8576
    assert r.cycles["weights"] == memctrl.dram.miss_latency + 32 * proto.image_words == 65549
    assert r.cycles["combine_port"] == 256 * 8 * (1 + proto.partial_flits)
    assert math.isclose(r.quantities()["dedup_saving"], 1 - 16 * (1 - math.comb(120, 8) / math.comb(128, 8)) / 8)


def test_paper4x4_is_within_a_factor_of_two_of_qwen3(qwen3):
    assert mismatches(load_config("paper4x4"), qwen3) == []


@pytest.mark.parametrize("name,changes,expected", [
    ("wafer4x4", {}, ["weights/compute", "dedup_saving", "rounds", "critical"]),
    ("tiny", {}, ["weights/compute", "dedup_saving", "rounds", "critical"]),
    # the DRAM word as wide as the flit: weights/compute falls 32-fold, the root's combine port becomes critical
    ("paper4x4", {"dram.word_bits": 256}, ["weights/compute", "critical"]),
    # one round: as many slots as experts
    ("paper4x4", {"hardware.sram_slots": 8}, ["rounds"]),
    # top-2: de-duplication saves 3% of the replicas, not 17.5%
    ("paper4x4", {"moe.top_k": 2}, ["weights/compute", "dedup_saving"]),
])
def test_mutants_fail_the_match(qwen3, name, changes, expected):
    assert mismatches(override(load_config(name), changes), qwen3) == expected


def test_paper4x4_keeps_the_hardware_rules():
    from mozart.model.hardware_rules import hardware_problems
    assert hardware_problems(load_config("paper4x4")) == []


def test_every_quantity_is_reported():
    assert set(regime(load_config("tiny")).quantities()) == set(RATIOS)


@pytest.mark.parametrize("kwargs,message", [
    ({"dram": "flash"}, "dram must be one of hbm2, ssd, not 'flash'"),
    ({"layer": 2}, "layer must be in 0..1, not 2"),
    ({"layer": True}, "layer must be in 0..1, not True"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        regime(load_config("tiny"), **kwargs)


def test_cli_prints_the_table(capsys):
    code, out, err = run(["config", "regime", "qwen3-30b-a3b", "paper4x4"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[1:3] == ["qwen3-30b-a3b", "(full"] and "paper4x4 (RTL, layer 0)" in lines[0]
    assert lines[1].split() == ["weights/compute", "8", "7.64"]
    assert lines[-1].split() == ["critical", "resource", "weights", "weights"]


@pytest.mark.parametrize("argv,message", [
    (["paper4x4", "--layer", "4"], "layer must be in 0..3, not 4"),
    (["nope"], "config must be a preset name"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    code, out, err = run(["config", "regime", *argv], capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_host_attention_stand_in_keeps_qwen3s_attention_to_compute_ratio():
    """The host's attention per token on a scaled wafer: Qwen3's root_feed/compute (5.23) times the scaled
    layer's compute over its tokens, 175 cycles on paper4x4 (docs/regime.md §3); a full-size model has its own."""
    from mozart.model.perf.regime import host_attention_cycles_per_token
    cfg = load_config("paper4x4")
    per_token = host_attention_cycles_per_token(cfg)
    qwen3 = regime(load_config("qwen3-30b-a3b")).ratio("root_feed")
    assert per_token * cfg.training.tokens_per_step / regime(cfg).cycles["compute"] == pytest.approx(qwen3)
    assert 175 < per_token < 176
    with pytest.raises(ConfigError, match="full-size model with its own attention chiplet"):
        host_attention_cycles_per_token(load_config("qwen3-30b-a3b"))
