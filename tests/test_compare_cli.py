"""``mozart allocate`` and ``mozart compare`` end to end, and their one-line errors."""

import io
import json

import pytest

from mozart.model.config import load_config, override
from mozart.model.placement_io import load_placement
from mozart.model.placers import PLACERS
from mozart.model.synth import synthesize_for
from mozart.model.trace_io import save_trace

from cli_run import run


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "tiny.npz"
    save_trace(synthesize_for(load_config("tiny"), 300, seed=1), path)
    return path


def test_allocate_writes_a_loadable_placement_and_ep_ranks(tmp_path, trace_file, capsys):
    out, ep = tmp_path / "p.json", tmp_path / "ep.json"
    code, stdout, _ = run(["allocate", "--config", "tiny", "--trace", trace_file, "--method", "mozart",
                           "--out", out, "--ep-rank", ep, "--ep-rank-layer", 1], capsys)
    assert code == 0 and "C_T" in stdout
    placement = load_placement(out, load_config("tiny"))
    assert placement.method == "mozart" and placement.layers == 2
    assert json.loads(ep.read_text()) == {"expert_to_ep_rank": placement.expert_to_chiplet[1].tolist()}


def test_compare_prints_every_method_and_plots(tmp_path, trace_file, capsys):
    code, stdout, _ = run(["compare", "--config", "tiny", "--trace", trace_file, "--plot", tmp_path / "plots",
                           "--plot-layer", 1], capsys)
    assert code == 0
    rows = {line.split()[0] for line in stdout.splitlines() if line.split()}
    assert set(PLACERS) <= rows  # 8 experts: exact included
    assert "C_T" in stdout and "root" in stdout and "time s" in stdout
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["coactivation_layer1.png", "load_layer1.png"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_compare_shows_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    cfg = override(load_config("tiny"), {"moe.layers": 8})
    path = tmp_path / "long.npz"
    save_trace(synthesize_for(cfg, 50, seed=2), path)
    argv = ["compare", "--config", "tiny", "--trace", path, "--methods", "contiguous,mozart"]
    code, stdout, stderr = run(argv, capsys)
    assert code == 0 and stderr == ""  # a log or a pipe gets no bar
    assert "mozart" in stdout and "metis" not in stdout
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "compare:" in terminal.getvalue() and "/8" in terminal.getvalue()
    assert "compare:" not in stdout  # never on stdout


@pytest.mark.parametrize("argv,message", [
    (["compare", "--methods", "mozart,nope"], "each method must be one of"),
    (["compare", "--methods", ","], "--methods must name at least one of"),
    (["compare", "--plot", "PLOTS", "--plot-layer", "5"], "--plot-layer must be in 0..1, not 5"),
    (["allocate", "--method", "nope", "--out", "OUT"], "invalid choice: 'nope'"),
    (["allocate", "--out", "OUT", "--ep-rank-layer", "0"], "--ep-rank-layer needs --ep-rank FILE"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, trace_file, capsys, argv, message):
    argv = [a.replace("OUT", str(tmp_path / "p.json")).replace("PLOTS", str(tmp_path)) for a in argv]
    code, _, stderr = run([*argv, "--config", "tiny", "--trace", trace_file], capsys)
    assert code == 2 and message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr


def test_trace_that_does_not_fit_and_exact_on_a_large_config(tmp_path, trace_file, capsys):
    code, _, stderr = run(["compare", "--config", "wafer4x4", "--trace", trace_file], capsys)
    assert code == 2 and "moe.experts = 16" in stderr and stderr.count("\n") == 1
    code, _, stderr = run(["compare", "--config", "qwen3-30b-a3b", "--trace", trace_file, "--methods", "exact"],
                          capsys)
    assert code == 2 and "'exact' needs at most 16 experts" in stderr
    code, _, stderr = run(["allocate", "--config", "tiny", "--trace", tmp_path / "missing.npz", "--out",
                           tmp_path / "p.json"], capsys)
    assert code == 2 and "missing.npz" in stderr and stderr.count("\n") == 1


def test_compare_measures_on_a_held_out_trace(tmp_path, trace_file, capsys):
    held = tmp_path / "held.npz"
    save_trace(synthesize_for(load_config("tiny"), 200, seed=9), held)
    code, stdout, _ = run(["compare", "--config", "tiny", "--trace", trace_file, "--eval-trace", held,
                           "--methods", "mozart,contiguous"], capsys)
    assert code == 0 and "measured on 200 held-out tokens" in stdout
    one_layer = tmp_path / "one.npz"
    save_trace(synthesize_for(override(load_config("tiny"), {"moe.layers": 1}), 50, seed=3), one_layer)
    code, _, stderr = run(["compare", "--config", "tiny", "--trace", trace_file, "--eval-trace", one_layer], capsys)
    assert code == 2 and "must have the placed trace's 2 layers, not 1" in stderr
