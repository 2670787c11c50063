"""The command line's contract with its users, walked over every subcommand.

Every subcommand answers ``--help``; every argument has a bad value that is refused with exit status 2, one
line on stderr, no traceback and no file left behind; an output file that exists is refused (``--force``
overwrites); missing output folders are created; a closed stdout ends a command quietly. Then one test per
item of the contract (docs/cli.md): exit codes, --json, placement files, hardware rules, sweep plots.
Commands run in-process through :func:`mozart.sim.cli.main`; only the closed-stdout checks need a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mozart.model.config import load_config, override, to_toml
from mozart.model.errors import ConfigError
from mozart.model.synth import synthesize_for
from mozart.model.trace_io import save_trace
from mozart.sim.cli import EXIT_BROKEN_PIPE, build_parser, main

from cli_run import run

SWEEP_SPEC = """
[sweep]
name = "contract"
configs = ["tiny"]
methods = ["contiguous"]
variants = ["B", "C"]
seed = 0
[axes]
"moe.layers" = [1]
"training.sequences" = [4]
"training.seq_len" = [8, 16]
"""

#: A sweep whose every point is invalid: 8 or 16 chiplets per group do not fit tiny's 8 experts... with 2 groups.
FAILING_SPEC = SWEEP_SPEC.replace('"training.seq_len" = [8, 16]', '"tree.chiplets_per_group" = [8, 16]')


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input files the commands read: a trace, a sweep spec, a placement, an existing output file."""
    folder = tmp_path_factory.mktemp("inputs")
    save_trace(synthesize_for(load_config("tiny"), 64, seed=1), folder / "t.npz")
    (folder / "spec.toml").write_text(SWEEP_SPEC)
    (folder / "failing.toml").write_text(FAILING_SPEC)
    (folder / "existing.txt").write_text("keep me\n")
    assert main(["allocate", "--config", "tiny", "--trace", str(folder / "t.npz"), "--method", "contiguous",
                 "-o", str(folder / "p.json")]) == 0
    return folder


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder (the build cache inside it) where commands may write."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOZART_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line_error(code, err, message):
    assert code == 2, err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------- --help

def _commands(parser=None, path=()):
    """(command path, parser) of every leaf subcommand."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for name, sub in subs[0].choices.items() for leaf in _commands(sub, (*path, name))]


COMMANDS = [path for path, _ in _commands()]


@pytest.mark.parametrize("path", [" ".join(p) for p in COMMANDS])
def test_every_subcommand_answers_help(path, capsys):
    code, out, err = run([*path.split(), "--help"], capsys)
    assert code == 0 and out.startswith("usage: mozart " + path) and err == ""


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("mozart ") and out.split()[1][0].isdigit()


# ----------------------------------------------------------------------------- one bad value per argument

#: (command, argument, argv, message): argv's {T} is the trace, {S} the sweep spec, {X} an existing file,
#: {P} the placement file. Every value-taking argument of every command has a row (checked below).
BAD = [
    ("allocate", "--config", "allocate --config nope --trace {T} -o p.json", "config must be a preset name"),
    ("allocate", "--trace", "allocate --config tiny --trace missing.npz -o p.json", "'missing.npz'"),
    ("allocate", "--method", "allocate --config tiny --trace {T} -o p.json --method bogus", "invalid choice"),
    ("allocate", "--seed", "allocate --config tiny --trace {T} -o p.json --seed -1",
     "--seed: must be a non-negative integer, not '-1'"),
    ("allocate", "--out", "allocate --config tiny --trace {T} -o .", "-o/--out must be a file name, not the folder"),
    ("allocate", "--ep-rank", "allocate --config tiny --trace {T} -o p.json --ep-rank .",
     "--ep-rank must be a file name, not the folder '.'"),
    ("allocate", "--ep-rank-layer", "allocate --config tiny --trace {T} -o p.json --ep-rank e.json --ep-rank-layer -1",
     "--ep-rank-layer: must be a non-negative integer"),
    ("clean", "blocks", "clean bogus", "BLOCK must be one of"),
    ("compare", "--config", "compare --config nope --trace {T}", "config must be a preset name"),
    ("compare", "--trace", "compare --config tiny --trace missing.npz", "'missing.npz'"),
    ("compare", "--methods", "compare --config tiny --trace {T} --methods bogus", "each method must be one of"),
    ("compare", "--seed", "compare --config tiny --trace {T} --seed -1", "--seed: must be a non-negative integer"),
    ("compare", "--eval-trace", "compare --config tiny --trace {T} --eval-trace missing.npz", "'missing.npz'"),
    ("compare", "--plot", "compare --config tiny --trace {T} --plot {X}",
     "--plot must be a folder, not the existing file"),
    ("compare", "--plot-layer", "compare --config tiny --trace {T} --plot-layer x",
     "--plot-layer: must be a non-negative"),
    ("config show", "name", "config show nope", "config must be a preset name"),
    ("config check", "name", "config check /no/such.toml", "or an existing TOML file, not '/no/such.toml'"),
    ("config regime", "names", "config regime nope", "config must be a preset name"),
    ("config regime", "--dram", "config regime tiny --dram flash", "invalid choice"),
    ("config regime", "--layer", "config regime tiny --layer -1", "--layer: must be a non-negative integer"),
    *[row for block in ("chiplet", "fifo", "memctrl", "root", "switch", "wafer") for row in [
        (f"cosim {block}", "--config", f"cosim {block} --config nope", "config must be a preset name"),
        (f"cosim {block}", "--seed", f"cosim {block} --seed -1", "--seed: must be a non-negative integer"),
        (f"cosim {block}", "--timeout", f"cosim {block} --timeout 0",
         "--timeout: must be a positive number of seconds, not '0'"),
    ] + ([] if block == "wafer" else [
        (f"cosim {block}", "--test", f"cosim {block} --test bogus", f"--test must be a test of block '{block}' ("),
    ])],
    ("cosim wafer", "--variant", "cosim wafer --variant D", "--variant must be one of baseline, A, B, C, not 'D'"),
    ("cosim wafer", "--placement", "cosim wafer --placement nope", "--placement must be one of"),
    ("cosim wafer", "--trace", "cosim wafer --trace missing.npz", "--trace must be an existing trace file"),
    ("cosim wafer", "--tokens", "cosim wafer --tokens 0", "--tokens: must be a positive integer"),
    ("cosim wafer", "--layer", "cosim wafer --layer -1", "--layer: must be a non-negative integer"),
    ("cosim wafer", "--layers", "cosim wafer --layers 0", "--layers: must be a positive integer"),
    ("cosim wafer", "--plot", "cosim wafer --plot x.svg", "--plot must name a .png file, not 'x.svg'"),
    ("cosim wafer", "--slots", "cosim wafer --slots 0", "--slots: must be a positive integer"),
    ("cosim wafer", "--skew", "cosim wafer --skew -1", "--skew: must be a finite number >= 0"),
    ("cosim wafer", "--idle", "cosim wafer --idle 1.5", "--idle must be a probability"),
    ("cosim wafer", "--backpressure", "cosim wafer --backpressure nan", "--backpressure must be a probability"),
    ("evaluate", "--models", "evaluate --models bogus", "--models must name models of"),
    ("evaluate", "--trace", "evaluate --quick --trace missing.npz", "'missing.npz'"),
    ("evaluate", "--plot", "evaluate --quick --plot {X}", "--plot must be a folder, not the existing file"),
    ("evaluate", "--seed", "evaluate --quick --seed -1", "--seed: must be a non-negative integer"),
    ("evaluate", "--workers", "evaluate --quick --workers 0", "--workers: must be a positive integer"),
    ("sweep", "spec", "sweep /no/spec.toml -o r.csv", "sweep spec must be an existing TOML file"),
    ("sweep", "--out", "sweep {S} -o r.txt", "--out must end in .parquet or .csv, not "),
    ("sweep", "--workers", "sweep {S} -o r.csv --workers 0", "--workers: must be a positive integer"),
    ("sweep", "--cluster", "sweep {S} -o r.csv --cluster nowhere", "--cluster must be 'local' or a Dask scheduler"),
    ("sweep", "--plot", "sweep {S} -o r.csv --plot {X}", "--plot must be a folder, not the existing file"),
    ("sweep", "--cost", "sweep {S} -o r.csv --plot plots --cost bogus", "--cost must be a numeric column"),
    ("trace synth", "--config", "trace synth --config nope -o t.npz", "config must be a preset name"),
    ("trace synth", "--tokens", "trace synth --config tiny --tokens 0 -o t.npz", "--tokens: must be a positive"),
    ("trace synth", "--seed", "trace synth --config tiny --seed -1 -o t.npz", "--seed: must be a non-negative"),
    ("trace synth", "--step", "trace synth --config tiny --step -1 -o t.npz", "--step: must be a non-negative"),
    ("trace synth", "--coactivation", "trace synth --config tiny --coactivation 2 -o t.npz", "between 0 and 1"),
    ("trace synth", "--skew", "trace synth --config tiny --skew -1 -o t.npz", "--skew: must be a finite number"),
    ("trace synth", "--out", "trace synth --config tiny -o t.csv", "must end in .npz or .jsonl, not '.csv'"),
    ("trace stats", "file", "trace stats missing.npz", "trace file must be an existing file"),
    ("trace stats", "--config", "trace stats {T} --config nope", "config must be a preset name"),
    ("trace stats", "--pairs", "trace stats {T} --pairs 0", "--pairs: must be a positive integer"),
    ("trace stats", "--top-k", "trace stats {T} --top-k 0", "--top-k: must be a positive integer"),
    ("trace stats", "--num-experts", "trace stats {T} --num-experts 0", "--num-experts: must be a positive"),
    ("trace convert", "input", "trace convert missing.npz -o c.npz", "trace file must be an existing file"),
    ("trace convert", "--out", "trace convert {T} -o c.csv", "must end in .npz or .jsonl, not '.csv'"),
    ("trace convert", "--config", "trace convert {T} -o c.npz --config nope", "config must be a preset name"),
    ("trace convert", "--top-k", "trace convert {T} -o c.npz --top-k 0", "--top-k: must be a positive integer"),
    ("trace convert", "--num-experts", "trace convert {T} -o c.npz --num-experts 0", "--num-experts: must be"),
    ("formal", "block", "formal bogus", "block must be one of"),
    ("formal", "--config", "formal fifo --config nope", "config must be a preset name"),
    ("formal", "--depth", "formal fifo --depth 0", "--depth must be a positive number of cycles, not 0"),
    ("formal", "--property", "formal fifo --property nope", "--property: property must be one of"),
    ("formal", "--solver", "formal fifo --solver nope", "--solver must be one of boolector, z3, not 'nope'"),
    ("formal", "--work", "formal fifo --work {X}", "existing.txt"),
    ("verilog", "block", "verilog bogus", "block must be one of"),
    ("verilog", "--config", "verilog fifo --config nope", "config must be a preset name"),
    ("verilog", "--out", "verilog fifo -o {X}", "-o/--out must be a folder, not the existing file"),
]


def _argv(template: str, inputs: Path) -> list[str]:
    names = {"{T}": inputs / "t.npz", "{S}": inputs / "spec.toml", "{X}": inputs / "existing.txt",
             "{P}": inputs / "p.json"}
    return [str(names.get(word, word)) for word in template.split()]


def test_the_table_has_a_bad_value_for_every_argument():
    wanted = set()
    for path, parser in _commands():
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue  # flags take no value
            name = max(action.option_strings, key=len) if action.option_strings else action.dest
            wanted.add((" ".join(path), name))
    assert wanted == {(cmd, arg) for cmd, arg, _, _ in BAD}


@pytest.mark.parametrize("command,argument,template,message", BAD, ids=[f"{c} {a}" for c, a, _, _ in BAD])
def test_a_bad_value_is_one_line_exit_2_and_leaves_nothing(command, argument, template, message, inputs, work,
                                                            capsys):
    code, _, err = run(_argv(template, inputs), capsys)
    assert_one_line_error(code, err, message)
    assert files_under(work) == set()
    assert (inputs / "existing.txt").read_text() == "keep me\n"


# ------------------------------------------------------------------------ existing files, missing folders

EXISTING = [
    "trace synth --config tiny --tokens 10 -o {X}",
    "trace convert {T} -o {X}",
    "allocate --config tiny --trace {T} -o {X}",
    "allocate --config tiny --trace {T} -o p.json --ep-rank {X}",
    "sweep {S} -o {X}",
]


@pytest.mark.parametrize("template", EXISTING)
def test_an_existing_output_file_is_refused_before_any_work(template, inputs, work, capsys):
    existing = inputs / "existing.txt"
    target = existing.with_suffix(".npz" if "trace" in template.split()[0] else ".json")
    if template.startswith("sweep"):
        target = existing.with_suffix(".csv")
    target.write_text("keep me\n")
    try:
        code, _, err = run(_argv(template.replace("{X}", str(target)), inputs), capsys)
        assert_one_line_error(code, err, "must not be an existing file")
        assert "--force overwrites it" in err
        assert target.read_text() == "keep me\n" and files_under(work) == set()
    finally:
        target.unlink()


def test_force_overwrites_an_existing_output(inputs, work, capsys):
    (work / "t.npz").write_text("old")
    code, out, _ = run(["trace", "synth", "--config", "tiny", "--tokens", "10", "-o", "t.npz", "--force"], capsys)
    assert code == 0 and "wrote t.npz" in out and (work / "t.npz").stat().st_size > 100


@pytest.mark.parametrize("template,made", [
    ("trace synth --config tiny --tokens 10 -o new/a/t.npz", "new/a/t.npz"),
    ("trace convert {T} -o new/c.jsonl", "new/c.jsonl"),
    ("allocate --config tiny --trace {T} -o new/p.json --ep-rank new2/e.json", "new2/e.json"),
    ("compare --config tiny --trace {T} --methods contiguous --plot new/plots", "new/plots/load_layer0.png"),
    ("sweep {S} -o new/r.csv --workers 1", "new/r.csv"),
    ("verilog fifo -o new/rtl", "new/rtl/fifo.v"),
])
def test_missing_output_folders_are_created(template, made, inputs, work, capsys):
    code, _, err = run(_argv(template, inputs), capsys)
    assert code == 0, err
    assert (work / made).is_file()


def test_output_files_get_the_usual_permissions(inputs, work, capsys):
    old = os.umask(0o022)
    try:
        assert run(["allocate", "--config", "tiny", "--trace", inputs / "t.npz", "-o", "p.json", "--ep-rank",
                    "e.json"], capsys)[0] == 0
        assert run(["trace", "synth", "--config", "tiny", "--tokens", "10", "-o", "t.npz"], capsys)[0] == 0
    finally:
        os.umask(old)
    for name in ("p.json", "e.json", "t.npz"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------------------------------- closed stdout

@pytest.mark.parametrize("argv", [
    ["config", "list"],
    ["config", "show", "wafer4x4"],
    ["trace", "stats", "{T}"],
    ["compare", "--config", "tiny", "--trace", "{T}", "--methods", "contiguous"],
])
def test_a_closed_stdout_ends_quietly(argv, inputs):
    argv = [str(inputs / "t.npz") if a == "{T}" else a for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "mozart.sim", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait() == EXIT_BROKEN_PIPE and err == ""


def test_help_into_a_closed_stdout_is_quiet():
    # argparse swallows the failed write itself: nothing to report, and no traceback
    proc = subprocess.Popen([sys.executable, "-m", "mozart.sim", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.stderr.read() == b"" and proc.wait() in (0, EXIT_BROKEN_PIPE)


# ------------------------------------------------------------------------------------ items of the contract

def test_a_binary_or_non_utf8_config_is_one_line(work, capsys):
    (work / "bin.toml").write_bytes(bytes(range(256)))
    (work / "latin.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    for name in ("bin.toml", "latin.toml"):
        code, _, err = run(["config", "check", name], capsys)
        assert_one_line_error(code, err, f"{name}: a config must be a UTF-8 TOML text file")


def test_config_name_must_be_a_safe_file_name(work, capsys):
    text = to_toml(load_config("tiny"))
    for bad in ("../../escape", "a/b", ".hidden", ""):
        (work / "c.toml").write_text(text.replace('name = "tiny"', f'name = "{bad}"'))
        code, _, err = run(["config", "check", "c.toml"], capsys)
        assert_one_line_error(code, err, "name must be a file-name-safe name")
    (work / "my config.toml").write_text(text.replace('name = "tiny"\n', ""))
    assert load_config(work / "my config.toml").name == "my_config"  # a name from the file, made safe


def test_config_check_applies_the_hardwares_rules(work, capsys):
    from mozart.model.hardware_rules import check_hardware, hardware_problems
    (work / "lanes.toml").write_text(to_toml(override(load_config("tiny"), {"hardware.mac_lanes": 3})))
    code, _, err = run(["config", "check", "lanes.toml"], capsys)
    assert_one_line_error(code, err, "hardware.mac_lanes must divide moe.d_model (8)")
    code, out, _ = run(["config", "check", "lanes.toml", "--model-only"], capsys)
    assert code == 0 and "valid for the models (not buildable as RTL)" in out
    # every rule catches its mutant; the co-simulation presets keep them all
    assert hardware_problems(override(load_config("tiny"), {"dram.t_cl": 1}))[0].startswith("dram.t_cl must be")
    assert len(hardware_problems(override(load_config("tiny"), {"hardware.mac_lanes": 16}))) == 3
    small_dram = override(load_config("tiny"), {"dram.rows": 16})   # the weight images fit, the activations not
    assert hardware_problems(small_dram)[0].startswith("dram.words must hold the weight images and saved activations")
    (work / "small.toml").write_text(to_toml(small_dram))
    code, _, err = run(["config", "check", "small.toml"], capsys)
    assert_one_line_error(code, err, "dram.words must hold the weight images and saved activations")
    for preset in ("tiny", "wafer4x4"):
        check_hardware(load_config(preset))
    with pytest.raises(ConfigError, match="qwen3-30b-a3b: hardware.mac_lanes must divide"):
        check_hardware(load_config("qwen3-30b-a3b"))


def test_verilog_leaves_no_empty_folder_when_it_fails(work, capsys, monkeypatch):
    from mozart.sim import build

    def broken(design, cfg, out_dir):
        Path(out_dir).mkdir(parents=True)  # as write_verilog does, before converting
        raise ConfigError("the design rejects this config")

    monkeypatch.setattr(build, "write_verilog", broken)
    code, _, err = run(["verilog", "fifo", "-o", "a/b/rtl"], capsys)
    assert_one_line_error(code, err, "the design rejects this config")
    assert files_under(work) == set()


def test_synth_is_bounded_before_allocating(work, capsys):
    code, _, err = run(["trace", "synth", "--config", "tiny", "--tokens", "1000000000000", "-o", "t.npz"], capsys)
    assert_one_line_error(code, err, "tokens must be at most")
    assert "GiB" in err and files_under(work) == set()


def test_random_bytes_are_not_a_trace_and_no_pickle_advice(work, capsys):
    (work / "r.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = run(["trace", "stats", "r.npz"], capsys)
    assert_one_line_error(code, err, "r.npz: not a trace")
    assert "pickle" not in err.lower()


def test_errors_name_the_users_path_not_a_generator_or_a_temp_file(inputs, work, capsys):
    code, _, err = run(["compare", "--config", "wafer4x4", "--trace", inputs / "t.npz"], capsys)
    assert_one_line_error(code, err, f"{inputs / 't.npz'}: trace has 8 experts")
    assert "synthetic(" not in err
    from mozart.model.files import atomic_write
    with pytest.raises(OSError) as raised:  # the folder cannot be made: the error names the file asked for
        atomic_write("/proc/mozart-test/x.json", lambda f: f.write(b"{}"))
    assert raised.value.filename == "/proc/mozart-test/x.json"
    code, _, err = run(["allocate", "--config", "tiny", "--trace", inputs / "t.npz", "-o", "/proc/m/p.json"], capsys)
    assert_one_line_error(code, err, "-o/--out must be in a writable folder, not '/proc/m/p.json'")
    assert ".tmp" not in err


def test_allocate_on_a_trace_without_tokens_leaves_no_file(work, capsys):
    save_trace(synthesize_for(load_config("tiny"), 0, seed=1), work / "empty.npz")
    code, _, err = run(["allocate", "--config", "tiny", "--trace", "empty.npz", "-o", "p.json"], capsys)
    assert_one_line_error(code, err, "--trace must hold tokens")
    assert files_under(work) == {"empty.npz"}


def test_evaluate_refuses_an_unwritable_plot_folder_before_computing(work, capsys):
    code, _, err = run(["evaluate", "--quick", "--models", "olmoe-1b-7b", "--plot", "/proc/mozart-plots"], capsys)
    assert_one_line_error(code, err, "--plot must be in a writable folder, not '/proc/mozart-plots'")


def test_a_tool_failure_exits_3_not_2(work, capsys, monkeypatch):
    from mozart.sim import build, cosim
    monkeypatch.setattr(build, "build", lambda *a, **k: (_ for _ in ()).throw(
        build.BuildError("Verilator build of block 'fifo' must succeed, but failed")))
    code, _, err = run(["cosim", "fifo"], capsys)
    assert code == 3 and "must succeed" in err and err.count("\n") == 1
    monkeypatch.setattr(build, "build", lambda *a, **k: SimpleNamespace(build_dir="b", rebuilt=False, seconds=0.0))
    monkeypatch.setattr(cosim, "run", lambda *a, **k: (_ for _ in ()).throw(
        cosim.CosimError("cosim fifo must finish within 1 s, but was killed")))
    code, _, err = run(["cosim", "fifo", "--timeout", "1"], capsys)
    assert code == 3 and "was killed" in err


def test_cosim_lists_the_tests_of_a_block_without_cocotb(capsys, tmp_path, monkeypatch):
    from mozart.sim.designs import Design, design
    code, out, _ = run(["cosim", "memctrl", "--list-tests"], capsys)
    assert code == 0 and out.split() == design("memctrl").tests() and "test_random_mix" in out.split()
    listed = subprocess.run([sys.executable, "-c", "import sys; from mozart.sim.cli import main; "
                             "main(['cosim', 'switch', '--list-tests']); print('cocotb' in sys.modules)"],
                            capture_output=True, text=True)
    assert listed.stdout.split()[-1] == "False"  # read with ast, never imported
    # a decorated test counts, with or without arguments; a helper and another decorator do not
    (tmp_path / "tb_mutant.py").write_text(
        "import cocotb\nimport functools\n@cocotb.test()\nasync def a(dut): pass\n"
        "@cocotb.test\nasync def b(dut): pass\nasync def helper(dut): pass\n"
        "@functools.cache\ndef c(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Design("m", "x:Y", "tb_mutant", "m", "").tests() == ["a", "b"]


def test_compare_json_and_a_placement_file_as_a_method(inputs, capsys):
    code, out, _ = run(["compare", "--config", "tiny", "--trace", inputs / "t.npz", "--methods",
                        f"contiguous,{inputs / 'p.json'}", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    rows = {m["method"]: m for m in doc["methods"]}
    assert rows["contiguous"]["c_t"] == rows[str(inputs / "p.json")]["c_t"]  # the file holds a contiguous placement
    (inputs / "bad.json").write_text('{"format": "nope"}')
    code, _, err = run(["compare", "--config", "tiny", "--trace", inputs / "t.npz", "--methods",
                        str(inputs / "bad.json")], capsys)
    assert_one_line_error(code, err, "bad.json")


def test_evaluate_json(capsys):
    code, out, _ = run(["evaluate", "--quick", "--models", "olmoe-1b-7b", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and {c["variant"] for c in doc["cells"]} == {"baseline", "A", "B", "C"}
    assert doc["checks"] and all(set(c) == {"name", "ours", "paper", "band", "holds"} for c in doc["checks"])


def test_a_wafer_run_takes_a_placement_file(inputs, capsys):
    from mozart.model.placement_io import load_placement
    from mozart.model.wafer_run import build_run
    cfg = load_config("tiny")
    run_ = build_run(cfg, placement=str(inputs / "p.json"), variant="C", tokens=16)
    given = load_placement(inputs / "p.json", cfg).expert_to_chiplet[0]
    assert run_.layers[0].expert_to_chiplet.tolist() == given.tolist()
    (inputs / "short.json").write_text("{}")
    code, _, err = run(["cosim", "wafer", "--placement", inputs / "short.json"], capsys)
    assert_one_line_error(code, err, "short.json")


def test_a_sweep_whose_every_point_failed_exits_1_and_says_why(inputs, work, capsys):
    code, out, _ = run(["sweep", inputs / "failing.toml", "-o", "r.csv", "--workers", "1"], capsys)
    assert code == 1
    assert "4 points not ok" in out and "moe.experts must be a multiple of the chiplet count" in out


def test_sweep_plots_one_value_axes_categories_and_failed_points(inputs, work, capsys, monkeypatch):
    from mozart.sim.commands import sweep as command
    figures = {}

    def keep(fig, path, left_out=0):
        figures[path.name] = (fig, left_out)
        return path

    monkeypatch.setattr(command, "_save", keep)
    code, out, _ = run(["sweep", inputs / "spec.toml", "-o", "r.csv", "--workers", "1", "--plot", "plots"],
                       capsys)
    assert code == 0
    # B and C on the same method are one computation: run once, said so
    assert "2 computed" in out and "2 points were the same computation" in out
    # one-value axes (moe.layers, training.sequences) and the one method get no plot
    assert sorted(figures) == ["pareto.png", "sensitivity-training.seq_len.png", "sensitivity-variant.png"]
    numeric = figures["sensitivity-training.seq_len.png"][0].axes[0]
    assert list(numeric.lines[0].get_xdata()) == [8, 16]  # a numeric axis at its values
    categorical = figures["sensitivity-variant.png"][0].axes[0]
    assert [t.get_text() for t in categorical.get_xticklabels()] == ["B", "C"]
    # no line (and no band) joins two categories: each box stays within its own slot
    assert not categorical.collections
    assert all(np.ptp(np.asarray(line.get_xdata(), float)) < 1 for line in categorical.lines if len(line.get_xdata()))
    # failed points are counted on the plot
    from mozart.sim.sweep import read_rows
    rows = read_rows(work / "r.csv")
    rows[0] = {**rows[0], "status": "invalid", "step_time_s": None}
    figures.clear()
    command.plot_results(command.load_spec(inputs / "spec.toml"), rows, work / "plots")
    assert all(left_out == 1 for _, left_out in figures.values())


def test_clean_frees_the_build_cache_and_refuses_a_foreign_folder(work, capsys, monkeypatch):
    cache = work / "build"
    (cache / "fifo" / "tiny-0123").mkdir(parents=True)
    (cache / "fifo" / "tiny-0123" / "obj").write_bytes(b"x" * 2_000_000)
    (cache / "fifo" / "tiny-0123.lock").write_text("")
    code, out, _ = run(["clean", "--dry-run"], capsys)
    assert code == 0 and "would free 2.0 MB" in out and cache.is_dir()
    code, out, _ = run(["clean"], capsys)
    assert code == 0 and "freed 2.0 MB" in out and not cache.exists()
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("precious")
    monkeypatch.setenv("MOZART_BUILD_DIR", str(work / "mine"))
    code, _, err = run(["clean"], capsys)
    assert_one_line_error(code, err, "must hold only mozart builds")
    assert (work / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.cosim
def test_cosim_json_summary_counts_tests_apart(work, capsys):
    code, out, err = run(["cosim", "fifo", "--json", "--test", "test_random_packets"], capsys)
    doc = json.loads(out)  # stdout holds only the document; the human summary went to stderr
    assert code == 0 and doc["ok"] and doc["block"] == "fifo" and doc["tests"] == 1
    assert doc["passed"] == 1 and doc["failed"] == 0 and doc["skipped"] == 0
    assert "1 passed, 0 failed, 0 skipped (cocotb tests)" in err


def test_docs_cli_names_every_command_and_option():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for path, parser in _commands():
        assert f"`{' '.join(path)}" in doc or f"{' '.join(path)} " in doc, path
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help", "-o"):
                    assert option in doc, (path, option)


def test_sweep_cost_is_checked_against_the_columns_a_sweep_writes(inputs):
    from mozart.model.sweep_spec import SweepError, load_spec
    from mozart.sim.commands.sweep import check_cost
    spec = load_spec(inputs / "spec.toml")
    for good in ("chiplets", "step_cycles", "exposed_dispatch_s", "link_bytes.root-down.0", "training.seq_len"):
        check_cost(good, spec)
    for bad in ("bogus", "method", "link_busiest", "status"):  # unknown, categorical, text, not an output
        with pytest.raises(SweepError, match=f"--cost must be a numeric column of the results .*not '{bad}'"):
            check_cost(bad, spec)
