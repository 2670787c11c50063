"""The sim <-> testbench contract: one typed options object, serialised once and parsed once."""

import pytest

from mozart.model.cosim_options import ENV_WAFER, WaferOptions
from mozart.model.errors import ConfigError


def test_options_round_trip_through_the_environment(tmp_path):
    trace = tmp_path / "t.npz"
    options = WaferOptions(variant="B", trace=str(trace), tokens=32, slots=1, skew=1.5, idle=0.1, timeline=True)
    assert WaferOptions.from_env(options.to_env()) == options
    assert options.trace == str(trace.absolute())
    assert WaferOptions.from_env({}) == WaferOptions()


@pytest.mark.parametrize("text,rule", [("{", "must be the JSON"), ('{"tokenz": 3}', "must hold only the fields"),
                                       ("[1]", "must hold only the fields")])
def test_bad_options_name_the_variable(text, rule):
    with pytest.raises(ConfigError, match=f"{ENV_WAFER} {rule}"):
        WaferOptions.from_env({ENV_WAFER: text})


def test_a_probability_out_of_range_is_rejected():
    with pytest.raises(ConfigError, match=r"probability must be in \[0, 1\), not 1.5"):
        WaferOptions(idle=1.5)
