"""The wafer config: presets load, round-trip through TOML, and every invalid field is named."""

import pytest

from mozart.model.config import (WaferConfig, config_from_dict, load_config, override, preset_names, preset_text,
                                 to_dict, to_toml)
from mozart.model.errors import ConfigError

PAPER_MODELS = {"qwen3-30b-a3b": (128, 8, 2048, 768, 48), "olmoe-1b-7b": (64, 8, 2048, 1024, 16),
                "deepseek-moe-16b": (64, 6, 2048, 1408, 28)}


def test_presets_are_shipped():
    assert set(preset_names()) >= {"tiny", "wafer4x4", *PAPER_MODELS}


@pytest.mark.parametrize("name", preset_names())
def test_preset_round_trips_through_toml(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / f"{name}.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg
    assert load_config(name) == config_from_dict(__import__("tomllib").loads(preset_text(name)))


def test_tiny_and_wafer4x4_shapes():
    tiny, w = load_config("tiny"), load_config("wafer4x4")
    assert (tiny.groups, tiny.chiplets_per_group, tiny.moe.experts, tiny.moe.top_k) == (2, 2, 8, 2)
    assert (w.groups, w.chiplets_per_group, w.moe.experts, w.moe.top_k) == (4, 4, 16, 4)


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_paper_models_on_the_paper_tree(name):
    cfg = load_config(name)
    assert (cfg.groups, cfg.chiplets_per_group) == (4, 4)
    assert (cfg.moe.experts, cfg.moe.top_k, cfg.moe.d_model, cfg.moe.d_ff, cfg.moe.layers) == PAPER_MODELS[name]
    assert (cfg.training.sequences, cfg.training.seq_len, cfg.training.micro_batches) == (32, 256, 4)
    assert cfg.dram.bytes == 8 * 2**30  # one 8 GiB HBM2 stack per group


BAD = [
    ({"moe.experts": 9}, "moe.experts must be a multiple of the chiplet count"),
    ({"moe.top_k": 9}, "moe.top_k must be at most moe.experts (8), not 9"),
    ({"moe.top_k": 0}, "moe.top_k must be positive, not 0"),
    ({"moe.d_model": 0}, "moe.d_model must be positive, not 0"),
    ({"tree.groups": 0}, "tree.groups must be between 1 and 32, not 0"),
    ({"hardware.flit_bits": 0}, "hardware.flit_bits must be between 16 and 4096, not 0"),
    ({"hardware.flit_bits": 36}, "hardware.flit_bits must be a multiple of 8, not 36"),
    ({"hardware.flit_bits": 32, "dram.word_bits": 32}, "hardware.flit_bits must hold the"),
    ({"hardware.buffer_depth": 0}, "hardware.buffer_depth must be between 1 and 4096, not 0"),
    ({"hardware.sram_slots": 1}, "hardware.sram_slots must be between 2 and 256, not 1"),
    ({"moe.top_k": "2"}, "moe.top_k must be an integer, not '2'"),
    ({"moe.top_k": True}, "moe.top_k must be an integer, not True"),
    ({"numerics.activation": "tanh"}, "numerics.activation must be one of relu, silu, gelu, not 'tanh'"),
    ({"numerics.acc_bits": 12}, "numerics.acc_bits must be at least act_bits + weight_bits (16), not 12"),
    ({"dram.word_bits": 48}, "dram.word_bits must divide hardware.flit_bits (64), not 48"),
    ({"dram.row_words": 1, "dram.rows": 16}, "dram.rows must be at least 64, not 16"),   # 2 layers' images
    ({"dram.refresh_interval": 100}, "dram.refresh_cycles must be 0 exactly when dram.refresh_interval is 0"),
    ({"training.micro_batches": 3}, "training.micro_batches must be a divisor of training.sequences (8), not 3"),
]


@pytest.mark.parametrize("changes,message", BAD,
                         ids=[next(iter(c)) + "=" + repr(next(iter(c.values()))) for c, _ in BAD])
def test_invalid_fields_are_named(changes, message):
    with pytest.raises(ConfigError, match="^.*" + __import__("re").escape(message)):
        override(load_config("tiny"), changes)


def test_unknown_and_missing_keys(tmp_path):
    data = to_dict(load_config("tiny"))
    data["moe"]["topk"] = 2
    with pytest.raises(ConfigError, match=r"unknown key moe\.topk; known keys of \[moe\] are"):
        config_from_dict(data)
    data = to_dict(load_config("tiny"))
    del data["tree"]["groups"]
    with pytest.raises(ConfigError, match=r"\[tree\] is missing tree\.groups"):
        config_from_dict(data)
    with pytest.raises(ConfigError, match="section \\[moe\\] is missing"):
        config_from_dict({"tree": {"groups": 1, "chiplets_per_group": 1}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[tree\ngroups = 2")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_config_is_frozen_and_derives_counts():
    cfg = load_config("wafer4x4")
    with pytest.raises(AttributeError):
        cfg.name = "x"
    assert cfg.chiplets == 16 and cfg.experts_per_chiplet == 1 and cfg.experts_per_group == 4
    assert isinstance(cfg, WaferConfig)
