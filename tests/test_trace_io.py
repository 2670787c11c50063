"""Trace files: round trips, atomic writes, docs/paper.md's routing of raw logits, and one named error per defect."""

import json

import numpy as np
import pytest

from mozart.model import trace_io
from mozart.model.errors import TraceError
from mozart.model.synth import synthesize
from mozart.model.trace import Trace
from mozart.model.trace_io import (SCHEMA_VERSION, load_trace, load_trace_with_meta, route_logits, save_trace,
                                   write_npz)


@pytest.fixture(scope="module")
def trace():
    return synthesize(20, 3, 2, 50, seed=1, groups_of=4)


def _same(a: Trace, b: Trace):
    np.testing.assert_array_equal(a.experts, b.experts)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.num_experts == b.num_experts


@pytest.mark.parametrize("suffix", [".npz", ".jsonl"])
def test_round_trip_is_exact(trace, tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    save_trace(trace, path, layer_ids=[3, 7], meta={"why": "test"})
    back, info = load_trace_with_meta(path)
    _same(back, trace)
    assert info["layer_ids"] == [3, 7]
    assert info["format"] == suffix[1:]
    if suffix == ".npz":
        assert info["meta"] == {"why": "test"} and info["origin"] == trace.source
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_npz_schema(trace, tmp_path):
    save_trace(trace, tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:
        assert int(data["schema_version"]) == SCHEMA_VERSION == 1
        assert data["experts"].dtype == np.uint8 and data["weights"].dtype == np.float32
        assert int(data["num_experts"]) == 20 and data["experts"].shape == (2, 50, 3)
        assert json.loads(str(data["meta"])) == {}


def test_jsonl_reader_accepts_megatron_shape(tmp_path):
    # Interleaved layers, only MoE layers 1 and 3, no token field, ints as weights, a blank line.
    lines = ['{"layer": 1, "topk_experts": [0, 2], "topk_weights": [0.75, 0.25]}',
             '{"layer": 3, "topk_experts": [1, 3], "topk_weights": [1, 0]}', "",
             '{"layer": 1, "topk_experts": [3, 1], "topk_weights": [0.5, 0.5]}',
             '{"layer": 3, "topk_experts": [2, 0], "topk_weights": [0.6, 0.4], "extra": "ignored"}']
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines))  # no final newline: still a complete record
    t, info = load_trace_with_meta(path, num_experts=4)
    assert info["layer_ids"] == [1, 3] and t.num_experts == 4
    np.testing.assert_array_equal(t.experts, [[[0, 2], [3, 1]], [[1, 3], [2, 0]]])
    assert load_trace(path).num_experts == 4  # largest id + 1


def test_jsonl_token_field_orders_tokens(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"layer": 0, "token": 1, "topk_experts": [1], "topk_weights": [1]}\n'
                    '{"layer": 0, "token": 0, "topk_experts": [0], "topk_weights": [1]}\n')
    np.testing.assert_array_equal(load_trace(path).experts[0, :, 0], [0, 1])


def test_failed_write_leaves_nothing_and_keeps_the_old_file(trace, tmp_path, monkeypatch):
    path = tmp_path / "t.npz"
    save_trace(trace, path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(trace_io.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        write_npz(synthesize(20, 3, 1, 5, seed=9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]


def test_route_logits_is_topk_of_softmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 10)) * 3
    experts, weights = route_logits(logits, 3)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.argsort(-p, axis=1)[:, :3]
    np.testing.assert_array_equal(experts, expected)
    np.testing.assert_allclose(weights, np.take_along_axis(p, expected, axis=1), rtol=1e-6)
    assert (weights.sum(axis=1) < 1).all()  # default: not renormalised
    _, renorm = route_logits(logits, 3, renormalize=True)
    np.testing.assert_allclose(renorm.sum(axis=1), 1, rtol=1e-6)
    tied, _ = route_logits(np.array([[1.0, 5.0, 5.0, 5.0]]), 2)
    np.testing.assert_array_equal(tied, [[1, 2]])  # ties go to the lower id
    big, _ = route_logits(np.array([[1000.0, 999.0, -1000.0]]), 2)  # no overflow
    np.testing.assert_array_equal(big, [[0, 1]])


def test_logits_files(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 30, 8))
    np.save(tmp_path / "l.npy", logits)
    t = load_trace(tmp_path / "l.npy", top_k=2)
    np.testing.assert_array_equal(t.experts[1], route_logits(logits[1], 2)[0])
    np.savez(tmp_path / "keyed.npz", layer_10=logits[1], layer_2=logits[0], top_k=np.int64(2))
    t2, info = load_trace_with_meta(tmp_path / "keyed.npz", renormalize=True)
    assert info["layer_ids"] == [2, 10] and info["meta"] == {"top_k": 2, "renormalize": True}
    np.testing.assert_array_equal(t2.experts, t.experts)
    np.savez(tmp_path / "one.npz", logits=logits[0])
    assert load_trace(tmp_path / "one.npz", top_k=3).layers == 1


# --------------------------------------------------------------------------------------------- bad input
def _jsonl(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _rec(layer=0, experts=(0, 1), weights=(0.5, 0.5), **extra):
    return {"layer": layer, "topk_experts": list(experts), "topk_weights": list(weights), **extra}


JSONL_CASES = {
    "expert out of range": (_jsonl(_rec(), _rec(experts=(1, 9))), r"line 2: field 'topk_experts': expert id must "
                            r"be in 0\.\.7, not 9"),
    "negative expert": (_jsonl(_rec(experts=(-1, 1))), r"line 1: field 'topk_experts': expert id must be in"),
    "repeated experts": (_jsonl(_rec(), _rec(), _rec(experts=(3, 3))), r"line 3: field 'topk_experts': the top-k "
                         r"experts must be distinct, not \[3, 3\]"),
    "weights wrong length": (_jsonl(_rec(weights=(1.0,))), r"line 1: field 'topk_weights' must have 2 entries"),
    "NaN weight": (_jsonl(_rec(), '{"layer": 0, "topk_experts": [0, 1], "topk_weights": [NaN, 0.5]}'),
                   r"line 2: field 'topk_weights': gate weights must be finite and >= 0, not nan"),
    "negative weight": (_jsonl(_rec(weights=(0.5, -0.5))), r"line 1: field 'topk_weights': .* not -0\.5"),
    "string weight": (_jsonl(_rec(weights=(0.5, "x"))), r"line 1: field 'topk_weights' must be a list of numbers"),
    "ragged layers": (_jsonl(_rec(0), _rec(1), _rec(0)), r"line 2: field 'layer': layer 1 has 1 records but layer "
                      r"0 has 2: every layer must route the same tokens \(ragged layers\)"),
    "truncated": (_jsonl(_rec()) + '{"layer": 0, "topk_experts": [0,', r"line 2: truncated record"),
    "not JSON": (_jsonl(_rec(), "hello"), r"line 2: not valid JSON"),
    "not an object": (_jsonl(_rec(), "[1, 2]"), r"line 2: a record must be a JSON object, not list"),
    "missing field": (_jsonl({"layer": 0, "topk_experts": [0, 1]}), r"line 1: field 'topk_weights' is missing"),
    "missing layer": (_jsonl({"topk_experts": [0, 1], "topk_weights": [1, 0]}), r"line 1: field 'layer' is missing"),
    "bool expert": (_jsonl(_rec(experts=(True, 0))), r"line 1: field 'topk_experts' must be a non-empty list of "
                    r"integers"),
    "k changes": (_jsonl(_rec(), _rec(experts=(0, 1, 2), weights=(1, 1, 1))), r"line 2: field 'topk_experts' must "
                  r"have 2 entries like the first record, not 3"),
    "bad layer": (_jsonl(_rec(layer=-1)), r"line 1: field 'layer' must be a non-negative integer below "
                  r"2147483648, not -1"),
    "duplicate token": (_jsonl(_rec(token=0), _rec(token=0)), r"line 2: field 'token': token 0 of layer 0 appears "
                        r"twice"),
    "token only on some": (_jsonl(_rec(token=0), _rec()), r"line 2: field 'token' is missing but line 1 has it"),
    "token out of range": (_jsonl(_rec(token=0), _rec(token=5)), r"line 2: field 'token': token 5 of layer 0 is out "
                           r"of range"),
    "num_experts disagree": (_jsonl(_rec(num_experts=8), _rec(num_experts=9)), r"line 2: field 'num_experts' must "
                             r"be 8 as on line 1, not 9"),
    "empty": ("\n", r"no records"),
}


@pytest.mark.parametrize("content,message", JSONL_CASES.values(), ids=JSONL_CASES.keys())
def test_bad_jsonl_is_one_named_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TraceError, match=r"bad\.jsonl: " + message) as info:
        load_trace(path, num_experts=8 if "num_experts" not in content else None)
    assert info.value.__cause__ is None or not isinstance(info.value.__cause__, TraceError)


def _npz_arrays(**changes):
    arrays = {"schema_version": np.int64(1), "experts": np.array([[[0, 1], [2, 3]]], np.uint8),
              "weights": np.full((1, 2, 2), 0.5, np.float32), "num_experts": np.int64(4)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


NPZ_CASES = {
    "wrong schema version": (_npz_arrays(schema_version=np.int64(2)), r"field 'schema_version' must be 1, not 2"),
    "missing weights": (_npz_arrays(weights=None), r"field 'weights' is missing; a mozart trace holds"),
    "weights wrong shape": (_npz_arrays(weights=np.ones((1, 2, 3), np.float32)), r"field 'weights' must be a float "
                            r"array of the shape of 'experts' \(1, 2, 2\), not float32 of shape \(1, 2, 3\)"),
    "NaN weight": (_npz_arrays(weights=np.array([[[0.5, 0.5], [np.nan, 1]]], np.float32)),
                   r"layer 0 token 1: field 'weights': gate weights must be finite and >= 0, not nan"),
    "expert out of range": (_npz_arrays(experts=np.array([[[0, 1], [2, 4]]])), r"layer 0 token 1: field 'experts': "
                            r"expert id must be in 0\.\.3, not 4"),
    "repeated experts": (_npz_arrays(experts=np.array([[[1, 1], [2, 3]]])), r"layer 0 token 0: field 'experts': the "
                         r"top-k experts must be distinct"),
    "float experts": (_npz_arrays(experts=np.zeros((1, 2, 2))), r"field 'experts' must be an integer \[layers, "
                      r"tokens, k\] array"),
    "no schema, no logits": ({"experts": np.zeros((1, 2, 2), int)}, r"field 'logits' is missing: router logits need"),
}


@pytest.mark.parametrize("arrays,message", NPZ_CASES.values(), ids=NPZ_CASES.keys())
def test_bad_npz_is_one_named_error(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(TraceError, match=r"bad\.npz: " + message):
        load_trace(path)


def test_truncated_and_corrupt_files(trace, tmp_path):
    save_trace(trace, tmp_path / "t.npz")
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(TraceError, match=r"cut\.npz: not a trace: not a readable \.npz archive \(truncated, corrupt"):
        load_trace(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(TraceError, match=r"text\.npz: not a trace: not a readable \.npz archive"):
        load_trace(tmp_path / "text.npz")
    np.save(tmp_path / "l.npy", np.zeros((10, 8)))
    raw = (tmp_path / "l.npy").read_bytes()
    (tmp_path / "l.npy").write_bytes(raw[:-40])
    with pytest.raises(TraceError, match=r"l\.npy: not a trace: not a readable \.npy array \(truncated, corrupt"):
        load_trace(tmp_path / "l.npy", top_k=2)


def test_bad_logits_are_named(tmp_path):
    logits = np.zeros((3, 8))
    logits[2, 5] = np.nan
    np.save(tmp_path / "nan.npy", logits)
    with pytest.raises(TraceError, match=r"nan\.npy: layer 0 token 2: field 'logits': logits must be finite, not "
                       r"nan"):
        load_trace(tmp_path / "nan.npy", top_k=2)
    np.savez(tmp_path / "ragged.npz", layer_0=np.zeros((4, 8)), layer_1=np.zeros((3, 8)))
    with pytest.raises(TraceError, match=r"ragged\.npz: field 'layer_1' has 3 tokens but 'layer_0' has 4: .*ragged"):
        load_trace(tmp_path / "ragged.npz", top_k=2)
    with pytest.raises(TraceError, match=r"ragged\.npz: top-k is needed to route router logits"):
        load_trace(tmp_path / "ragged.npz")
    np.save(tmp_path / "ok.npy", np.zeros((3, 8)))
    with pytest.raises(TraceError, match=r"ok\.npy: top-k must be an integer in 1\.\.8 \(the experts\), not 9"):
        load_trace(tmp_path / "ok.npy", top_k=9)
    with pytest.raises(TraceError, match=r"ok\.npy: field 'logits' must be a \[tokens, experts\]"):
        np.save(tmp_path / "ok.npy", np.zeros(3))
        load_trace(tmp_path / "ok.npy", top_k=1)


def test_names_and_suffixes(trace, tmp_path):
    with pytest.raises(TraceError, match=r"t\.csv: a trace file name must end in \.npz or \.jsonl, not '\.csv'"):
        save_trace(trace, tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("1,2")
    with pytest.raises(TraceError, match=r"must end in \.npz, \.jsonl or \.npy, not '\.csv'"):
        load_trace(tmp_path / "t.csv")
    with pytest.raises(TraceError, match="trace file must be an existing file, not '.*nope.npz'"):
        load_trace(tmp_path / "nope.npz")
    save_trace(trace, tmp_path / "t.npz")
    with pytest.raises(TraceError, match=r"the trace has 20 experts, not the 16 expected"):
        load_trace(tmp_path / "t.npz", num_experts=16)
    with pytest.raises(TraceError, match=r"layer_ids must be 2 distinct non-negative numbers, not \[1, 1\]"):
        save_trace(trace, tmp_path / "u.npz", layer_ids=[1, 1])
    save_trace(trace, tmp_path / "no-such-dir" / "x.npz")  # output folders are created as needed
    assert load_trace(tmp_path / "no-such-dir" / "x.npz").tokens == trace.tokens
