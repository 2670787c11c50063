"""``mozart trace synth|stats|convert``: outputs, round trips and one-line errors with exit status 2."""

import numpy as np
import pytest

from mozart.model.synth import synthesize_for
from mozart.model.config import load_config
from mozart.model.trace_io import load_trace, load_trace_with_meta
from mozart.sim.cli import main


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_stats_convert_round_trip(tmp_path, capsys):
    npz, jsonl, back = tmp_path / "t.npz", tmp_path / "t.jsonl", tmp_path / "back.npz"
    code, out, err = _run(["trace", "synth", "--config", "wafer4x4", "--tokens", "300", "--seed", "3",
                           "-o", str(npz)], capsys)
    assert code == 0 and err == "" and "wrote" in out
    trace = load_trace(npz)
    np.testing.assert_array_equal(trace.experts, synthesize_for(load_config("wafer4x4"), 300, 3).experts)

    code, out, err = _run(["trace", "stats", str(npz), "--config", "wafer4x4"], capsys)
    assert code == 0 and err == ""
    for text in ("2 layers x 300 tokens, top-4 of 16 experts", "activation frequency V", "top co-activated pairs",
                 "contiguous layout on wafer4x4", "C_T"):
        assert text in out

    assert _run(["trace", "convert", str(npz), "-o", str(jsonl)], capsys)[0] == 0
    assert _run(["trace", "convert", str(jsonl), "-o", str(back)], capsys)[0] == 0
    np.testing.assert_array_equal(load_trace(back).experts, trace.experts)
    np.testing.assert_array_equal(load_trace(back).weights, trace.weights)


def test_synth_knobs(tmp_path, capsys):
    out = tmp_path / "u.npz"
    assert _run(["trace", "synth", "--config", "tiny", "--tokens", "50", "--uniform", "-o", str(out)], capsys)[0] == 0
    assert "coactivation=0," in load_trace_with_meta(out)[1]["origin"]
    assert _run(["trace", "synth", "--config", "tiny", "--coactivation", "0.8", "--skew", "1", "--step", "4",
                 "-o", str(out), "--force"], capsys)[0] == 0
    assert "step=4, skew=1, coactivation=0.8" in load_trace_with_meta(out)[1]["origin"]


def test_convert_logits_with_config(tmp_path, capsys):
    np.save(tmp_path / "l.npy", np.random.default_rng(0).standard_normal((2, 20, 8)))
    code, out, _ = _run(["trace", "convert", str(tmp_path / "l.npy"), "--config", "tiny", "-o",
                         str(tmp_path / "t.npz")], capsys)
    assert code == 0 and "(from logits)" in out
    assert load_trace(tmp_path / "t.npz").top_k == 2


@pytest.mark.parametrize("argv,message", [
    (["trace", "synth", "--config", "tiny", "--tokens", "0", "-o", "x.npz"], "--tokens: must be a positive integer"),
    (["trace", "synth", "--config", "tiny", "--coactivation", "2", "-o", "x.npz"], "between 0 and 1, not '2'"),
    (["trace", "synth", "--config", "tiny", "-o", "{tmp}/x.csv"], "must end in .npz or .jsonl, not '.csv'"),
    (["trace", "stats", "{tmp}/missing.npz"], "trace file must be an existing file"),
    (["trace", "stats", "{tmp}/bad.jsonl"], "bad.jsonl: line 2: not valid JSON"),
    (["trace", "stats", "{tmp}/good.jsonl", "--config", "wafer4x4"],
     "good.jsonl: line 1: field 'num_experts' must be 16 (expected), not 8"),
    (["trace", "convert", "{tmp}/l.npy", "-o", "{tmp}/x.npz"], "top-k is needed to route router logits"),
    (["trace", "convert", "{tmp}/good.jsonl"], "the following arguments are required: -o/--out"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    record = '{"layer": 0, "topk_experts": [0, 1], "topk_weights": [1, 0], "num_experts": 8}\n'
    (tmp_path / "good.jsonl").write_text(record)
    (tmp_path / "bad.jsonl").write_text(record + "{oops\n")
    np.save(tmp_path / "l.npy", np.zeros((3, 8)))
    code, _, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
