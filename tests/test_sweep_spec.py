"""The sweep spec: what a valid file means, and one clear error (file, key, rule, value) per broken rule."""

import pytest

from mozart.model.sweep_spec import MAX_POINTS, SweepError, load_spec

BASE = """
[sweep]
configs = ["wafer4x4"]
methods = ["contiguous", "mozart"]
variants = ["baseline", "C"]
seed = 7
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lists_ranges_and_defaults(tmp_path):
    spec = load_spec(write(tmp_path, BASE + """
[trace]
tokens = 512
[axes]
"dram.word_bits" = [64, 128]
"tree.chiplets_per_group" = { start = 2, stop = 4 }
"numerics.activation" = ["relu", "silu"]
"""))
    assert spec.name == "spec" and spec.seed == 7 and spec.replicates == 1
    assert [(a.key, a.values) for a in spec.axes] == [
        ("dram.word_bits", (64, 128)), ("tree.chiplets_per_group", (2, 3, 4)),
        ("numerics.activation", ("relu", "silu"))]
    assert spec.trace.tokens == 512 and spec.trace.structured and spec.trace.file is None
    assert spec.size == 2 * 3 * 2 * 2 * 2
    assert spec.configs[0][0] == "wafer4x4" and spec.configs[0][1]["tree"]["groups"] == 4


def test_nested_tables_mean_the_same_as_dotted_keys(tmp_path):
    dotted = load_spec(write(tmp_path, BASE + '[axes]\n"dram.banks" = [4, 8]\n', "a.toml"))
    nested = load_spec(write(tmp_path, BASE + "[axes.dram]\nbanks = [4, 8]\n", "b.toml"))
    assert dotted.axes == nested.axes and dotted.digest == nested.digest


def test_decimal_float_ranges_and_the_default_variants(tmp_path, monkeypatch):
    import mozart.model.sweep_spec as sweep_spec
    monkeypatch.setattr(sweep_spec, "perf_parameters", lambda: {"link_gbps": 1.0})
    spec = load_spec(write(tmp_path, """
[sweep]
configs = ["tiny"]
[axes]
"perf.link_gbps" = { start = 0.1, stop = 0.5, step = 0.1 }
"""))
    assert spec.axes[0].values == (0.1, 0.2, 0.3, 0.4, 0.5) and spec.axes[0].is_perf
    assert spec.methods == ("mozart",) and spec.variants == ("baseline", "A", "B", "C")


def test_invalid_wafer_combinations_are_not_spec_errors(tmp_path):
    # 16 experts on 3 x 4 chiplets is no wafer, but that is a per-point result, not a broken spec.
    spec = load_spec(write(tmp_path, BASE + '[axes]\n"tree.groups" = [3, 4]\n'))
    assert spec.axes[0].values == (3, 4)


def test_digest_follows_the_content(tmp_path):
    one = load_spec(write(tmp_path, BASE, "one.toml"))
    same = load_spec(write(tmp_path, BASE, "same.toml"))
    other = load_spec(write(tmp_path, BASE.replace("seed = 7", "seed = 8"), "other.toml"))
    assert one.digest == same.digest != other.digest


def test_trace_file_is_resolved_against_the_spec_and_hashed(tmp_path):
    (tmp_path / "t.npz").write_bytes(b"not really a trace; the spec only hashes it")
    spec = load_spec(write(tmp_path, BASE + '[trace]\nfile = "t.npz"\n'))
    assert spec.trace.file == str((tmp_path / "t.npz").resolve()) and len(spec.trace.sha256) == 64
    assert spec.trace.label == "file:t.npz"


@pytest.mark.parametrize("extra,message", [
    ("[bogus]\nx = 1\n", "unknown section [bogus]; known sections are axes, sweep, trace"),
    ('[axes]\n"dram.nope" = [1]\n', "axes.'dram.nope' must be a field of [dram] ("),
    ('[axes]\n"wire.width" = [1]\n', "axes.'wire.width' must be a config field section.field"),
    ('[axes]\n"dram.banks" = []\n', "axes.'dram.banks' must be a non-empty list or a range {start, stop, step}, "
                                    "not []"),
    ('[axes]\n"dram.banks" = [4, 4]\n', "axes.'dram.banks' must be a list without repeated values, not [4, 4]"),
    ('[axes]\n"dram.banks" = [4, "8"]\n', "axes.'dram.banks'[1] must be an integer (the type of the field it "
                                          "sets), not '8'"),
    ('[axes]\n"dram.banks" = {start = 4, stop = 8, step = 0}\n', "axes.'dram.banks'.step must be positive, "
                                                                  "not 0"),
    ('[axes]\n"dram.banks" = {start = 8, stop = 4}\n', "axes.'dram.banks'.stop must be at least start (8), "
                                                        "not 4"),
    ('[axes]\n"dram.banks" = {start = 1, stop = 4.5}\n', "axes.'dram.banks'.stop must be an integer"),
    ('[axes]\n"dram.banks" = {start = 1, stop = 4, by = 1}\n', "unknown key 'by' in range axes.'dram.banks'"),
    ('[axes]\n"dram.banks" = {start = 1, stop = 100000}\n', "must be a range of at most 10000 values"),
    ('[axes]\n"numerics.activation" = {start = 1, stop = 2}\n', "axes.'numerics.activation' must be a list (a "
                                                                 "range needs a numeric field"),
    ('[axes]\n"perf.nope" = [1]\n', "axes.'perf.nope' must be a performance-model option or parameter "
                                   "perf.<name> with a name of network, dram, mode, link_gbps, not 'perf.nope'"),
    ('[axes]\n"perf.network" = ["tree", "ring"]\n', "axes.'perf.network'[1] must be one of tree, mesh, not 'ring'"),
    ('[axes]\n"perf.link_gbps" = [1, "2"]\n', "axes.'perf.link_gbps'[1] must be a number (the type of the field "
                                               "it sets), not '2'"),
    ('[trace]\nfile = "missing.npz"\n', "trace.file must be an existing trace file (relative to the spec), not "
                                        "'missing.npz'"),
    ('[trace]\ntokens = 0\n', "trace.tokens must be at least 1, not 0"),
    ('[trace]\nstructured = "yes"\n', "trace.structured must be true or false, not 'yes'"),
    ('[trace]\nseed = 1\n', "unknown key trace.seed; known keys of [trace] are file, structured, tokens"),
])
def test_spec_errors_name_file_key_rule_and_value(tmp_path, monkeypatch, extra, message):
    import mozart.model.sweep_spec as sweep_spec
    monkeypatch.setattr(sweep_spec, "perf_parameters", lambda: {"link_gbps": 1.0})
    path = write(tmp_path, BASE + extra)
    with pytest.raises(SweepError) as exc:
        load_spec(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)


@pytest.mark.parametrize("sweep,message", [
    ('configs = ["wafer4x4"]\nmethods = ["greedy"]', "sweep.methods[0] must be one of mozart, "),
    ('configs = ["wafer4x4"]\nvariants = ["D"]', "sweep.variants[0] must be one of baseline, A, B, C, not 'D'"),
    ('configs = ["wafer4x4"]\nvariants = []', "sweep.variants must be a non-empty list of variants, not []"),
    ('configs = ["wafer4x4"]\nmethods = ["mozart", "mozart"]', "sweep.methods must be a list without repeats"),
    ('configs = []', "sweep.configs must be a non-empty list of preset names or config files, not []"),
    ('configs = ["nope"]', "sweep.configs[0]: config must be a preset name"),
    ('configs = ["wafer4x4", "wafer4x4"]', "sweep.configs[1] must be a config whose name differs"),
    ('configs = ["wafer4x4"]\nseed = -1', "sweep.seed must be at least 0, not -1"),
    ('configs = ["wafer4x4"]\nreplicates = 1.5', "sweep.replicates must be an integer, not 1.5"),
    ('configs = ["wafer4x4"]\nworkers = 2', "unknown key sweep.workers; known keys of [sweep] are configs"),
    ('methods = ["mozart"]', "sweep.configs is missing"),
])
def test_sweep_table_errors(tmp_path, sweep, message):
    path = write(tmp_path, "[sweep]\n" + sweep + "\n")
    with pytest.raises(SweepError) as exc:
        load_spec(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)


def test_too_many_points(tmp_path):
    path = write(tmp_path, BASE + '[axes]\n"dram.rows" = {start = 1, stop = 10000}\n'
                 '"dram.row_words" = {start = 1, stop = 100}\n')
    with pytest.raises(SweepError, match=f"must have at most {MAX_POINTS} points, not 4000000"):
        load_spec(path)


def test_file_errors(tmp_path):
    with pytest.raises(SweepError, match="sweep spec must be an existing TOML file, not '/no/such.toml'"):
        load_spec("/no/such.toml")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_spec(write(tmp_path, "[sweep\n"))
    with pytest.raises(SweepError, match=r"section \[sweep\] is missing"):
        load_spec(write(tmp_path, "[axes]\n"))


def test_the_performance_model_options_and_parameters_are_axes(tmp_path):
    spec = load_spec(write(tmp_path, BASE.replace('"wafer4x4"', '"olmoe-1b-7b"') + """
[axes]
"perf.network" = ["tree", "mesh"]
"perf.dram" = ["hbm2", "ssd"]
"perf.hbm_gbps" = [128, 256.0]
"perf.link_wires" = { start = 256, stop = 1024, step = 256 }
"""))
    assert [a.values for a in spec.axes] == [("tree", "mesh"), ("hbm2", "ssd"), (128, 256.0),
                                             (256, 512, 768, 1024)]
