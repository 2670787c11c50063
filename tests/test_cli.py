"""The mozart command line: help, presets, and one-line errors with exit status 2."""

import subprocess
import sys

import pytest

from mozart.sim.cli import main

from cli_run import run


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "config" in capsys.readouterr().out


def test_config_show_prints_loadable_toml(capsys, tmp_path):
    assert main(["config", "show", "tiny"]) == 0
    path = tmp_path / "mine.toml"
    path.write_text(capsys.readouterr().out.replace('name = "tiny"', 'name = "mine"'))
    assert main(["config", "check", str(path)]) == 0
    assert "mine: valid" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["config", "show", "nope"], "config must be a preset name"),
    (["config", "check", "/no/such.toml"], "or an existing TOML file, not '/no/such.toml'"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mozart.sim", "config", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "wafer4x4" in out.stdout


@pytest.mark.parametrize("argv,message", [
    (["cosim", "wafer", "--variant", "D"], "--variant must be one of baseline, A, B, C, not 'D'"),
    (["cosim", "wafer", "--placement", "nope"], "--placement must be one of"),
    (["cosim", "wafer", "--trace", "/no/such.npz"], "--trace must be an existing trace file"),
    (["cosim", "wafer", "--tokens", "2"], "tokens must be an integer of at least"),
    (["cosim", "wafer", "--idle", "1.5"], "--idle must be a probability"),
    (["cosim", "wafer", "--layers", "0"], "--layers: must be a positive integer"),
    (["cosim", "wafer", "--config", "tiny", "--layers", "3"], "layers must be between 1 and moe.layers (2"),
    (["cosim", "wafer", "--config", "tiny", "--layer", "1", "--layers", "2"], "layer must be in 0..0"),
    (["cosim", "wafer", "--plot", "breakdown.pdf"], "--plot must name a .png file, not 'breakdown.pdf'"),
    (["cosim", "wafer", "--config", "tiny", "--variant", "baseline", "--tokens", "3000"],
     "the host program must fit the harness's 8192 flits"),
    (["cosim", "wafer", "--compare", "--variant", "C"], "--compare runs every variant"),
    (["cosim", "fifo", "--variant", "C"], "unrecognized arguments: --variant C"),   # a wafer-only option
    (["cosim", "bogus"], "argument BLOCK: invalid choice: 'bogus'"),
])
def test_wafer_cosim_bad_arguments_exit_2_before_building(argv, message, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_config_a_wafer_block_rejects_is_one_line_without_warnings(tmp_path):
    """The chiplet rejects the full-size preset's lanes: the one-line error, no Amaranth warning about blocks
    built and never elaborated (no warning filter hides them: the wafer checks every block's contract before any
    component exists)."""
    out = subprocess.run([sys.executable, "-m", "mozart.sim", "verilog", "wafer", "--config", "qwen3-30b-a3b",
                          "-o", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("mozart verilog: error: qwen3-30b-a3b: hardware.mac_lanes must divide")
    assert out.stderr.count("\n") == 1 and "never used" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_wafer_rejected_by_a_block_leaves_no_unused_component(recwarn):
    import gc
    from mozart.hw.wafer import Wafer
    from mozart.model.config import load_config
    from mozart.model.errors import ConfigError
    gc.collect()
    recwarn.clear()
    with pytest.raises(ConfigError, match="hardware.mac_lanes must divide"):
        Wafer(load_config("qwen3-30b-a3b"))
    gc.collect()
    assert not [w for w in recwarn if "never used" in str(w.message)]
