"""Issue 13: results depend on a config's content, never on its name (the full-size parameters are found by
the model's expert shape)."""

import dataclasses

from mozart.model.config import load_config, override
from mozart.model.perf import load_params, model_names, params_for
from mozart.sim import sweep_eval
from mozart.model import perf


def test_every_paper_preset_finds_its_own_parameters_and_small_presets_none():
    for model in model_names():
        cfg = load_config(load_params(model).config)
        assert params_for(cfg).model == model
        assert params_for(override(cfg, {"moe.layers": 2, "moe.top_k": 4, "training.sequences": 8})).model == model
    assert params_for(load_config("tiny")) is None and params_for(load_config("wafer4x4")) is None


def test_a_renamed_preset_is_timed_exactly_as_the_original():
    cfg = load_config("olmoe-1b-7b")
    renamed = dataclasses.replace(cfg, name="my-own-moe")
    assert params_for(renamed) == params_for(cfg)
    def timing(config):
        return sweep_eval._timing(perf, config, sweep_eval._full_size_params(perf, config, {}), False, "hbm2", {})

    original = timing(cfg)
    assert timing(renamed) == original
    # The mutant, the pre-fix lookup by name, misses the renamed config (it was timed as a scaled RTL config).
    assert sweep_eval._perf_models().get(renamed.name) is None
    assert perf.HardwareTiming.scaled(renamed) != original[0]
