"""The sweep engine: points, backends (serial, process pool, Dask on loopback), failures, resume, output, CLI.

Engine tests inject :func:`cheap`, a deterministic evaluator that costs nothing; the tests named ``*real*`` run
the shipped :func:`mozart.sim.sweep.evaluate_point` (the performance model).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zlib
from io import StringIO

import pytest

from mozart.model.config import config_from_dict, override
from mozart.model.sweep_spec import load_spec
from mozart.sim.cli import main
from mozart.sim.sweep import SweepError, expand, read_rows, run_sweep

SPEC = """
[sweep]
name = "engine"
configs = ["wafer4x4", "tiny"]
methods = ["contiguous", "mozart"]
variants = ["baseline", "C"]
seed = 11
[axes]
"tree.chiplets_per_group" = [2, 3, 4]
"dram.banks" = [4, 8]
"""


def cheap(point):
    """A stand-in for the performance model: validates the config for real, then hashes the inputs.

    ``dram.banks == 8`` with ``method == "mozart"`` on ``tiny`` raises a plain bug-like error.
    """
    cfg = override(config_from_dict(point["base"]), point["settings"])
    if point["config"] == "tiny" and point["method"] == "mozart" and point["settings"]["dram.banks"] == 8:
        raise ZeroDivisionError("simulated bug")
    h = zlib.crc32(json.dumps([point["point_id"], point["trace_seed"]]).encode())
    return {"step_time_s": h / 7e9 + cfg.chiplets, "c_t": 1 + h % 8 / 3, "chiplets": cfg.chiplets,
            "note": "x" if h % 2 else None}


class Interrupt:
    """An evaluator that behaves like a Ctrl-C after ``after`` points, counting what it evaluated."""

    def __init__(self, after=None):
        self.after, self.seen = after, []

    def __call__(self, point):
        if self.after is not None and len(self.seen) == self.after:
            raise KeyboardInterrupt
        self.seen.append(point["index"])
        return cheap(point)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text(SPEC)
    return load_spec(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted serial run of SPEC: its file's bytes and rows."""
    path = tmp_path_factory.mktemp("ref") / "engine.toml"
    path.write_text(SPEC)
    out = path.with_name("ref.parquet")
    run_sweep(load_spec(path), out, workers=1, evaluator=cheap, progress=None)
    return out.read_bytes(), read_rows(out)


def test_points_are_ordered_identified_and_seeded_by_the_spec(spec):
    points = expand(spec)
    assert len(points) == spec.size == 2 * 3 * 2 * 2 * 2
    assert [p["index"] for p in points] == list(range(len(points)))
    assert len({p["point_id"] for p in points}) == len(points)
    assert [p["point_id"] for p in expand(spec)] == [p["point_id"] for p in points]  # stable
    first = points[:4]  # variants innermost, then methods: one trace and placement for all four
    assert [(p["method"], p["variant"]) for p in first] == [("contiguous", "baseline"), ("contiguous", "C"),
                                                           ("mozart", "baseline"), ("mozart", "C")]
    assert points[4]["settings"] == {"tree.chiplets_per_group": 2, "dram.banks": 8}
    assert len({(p["trace_seed"], p["placement_seed"]) for p in points}) == 1  # common random numbers


def test_replicates_draw_new_seeds(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(SPEC.replace("seed = 11", "seed = 11\nreplicates = 3"))
    points = expand(load_spec(path))
    assert len({p["trace_seed"] for p in points}) == 3 and len({p["placement_seed"] for p in points}) == 3


def test_failing_points_are_recorded_and_the_sweep_goes_on(reference):
    rows = reference[1]
    assert len(rows) == 48 and [r["index"] for r in rows] == list(range(48))
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("ok", "invalid", "error")}
    # 3 chiplets per group: 16 experts on 12 chiplets is no wafer; the config's own message is kept.
    assert {r["tree.chiplets_per_group"] for r in by_status["invalid"]} == {3}
    assert "moe.experts must be a multiple of the chiplet count" in by_status["invalid"][0]["error"]
    assert by_status["error"] and all(r["error"].startswith("ZeroDivisionError: simulated bug (at test_sweep.py:")
                                      for r in by_status["error"])
    assert all(r["step_time_s"] is None for r in rows if r["status"] != "ok")
    assert all(r["error"] is None and r["step_time_s"] > 0 for r in by_status["ok"])
    assert list(rows[0])[:13] == ["index", "point_id", "config", "tree.chiplets_per_group", "dram.banks",
                                  "replicate", "method", "variant", "trace", "trace_seed", "placement_seed",
                                  "status", "error"]


def test_process_pool_writes_the_same_file_as_one_process(spec, tmp_path, reference):
    out = tmp_path / "pool.parquet"
    result = run_sweep(spec, out, workers=2, chunk_size=3, evaluator=cheap, progress=None)
    assert result.backend == "local process pool of 2 workers" and result.computed == 48
    assert out.read_bytes() == reference[0]
    assert not out.with_name("pool.parquet.partial").exists()


def test_dask_cluster_at_an_address_gives_identical_rows(spec, tmp_path, reference, dask_scheduler):
    out = tmp_path / "dask.parquet"
    result = run_sweep(spec, out, cluster=dask_scheduler, chunk_size=5, evaluator=cheap, progress=None)
    assert result.backend.startswith(f"Dask cluster at {dask_scheduler}")
    assert out.read_bytes() == reference[0]


def test_interrupted_sweep_resumes_without_recomputing(spec, tmp_path, reference):
    out = tmp_path / "resume.parquet"
    stopped = Interrupt(after=20)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, chunk_size=4, evaluator=stopped, progress=None)
    journal = out.with_name("resume.parquet.partial")
    assert not out.exists() and _journal_rows(journal) == 20
    with journal.open("a") as f:  # a row torn in half, as by a kill mid-write: dropped and recomputed
        f.write('{"index": 47, "point_id": "tor')
    again = Interrupt()
    result = run_sweep(spec, out, workers=1, evaluator=again, progress=None)
    assert (result.resumed, result.computed) == (20, 28)
    assert sorted(stopped.seen + again.seen) == list(range(48))  # nothing evaluated twice
    assert out.read_bytes() == reference[0]
    # A third run finds the finished file and computes nothing.
    assert run_sweep(spec, out, workers=1, evaluator=Interrupt(after=0), progress=None).computed == 0


def _journal_rows(path):
    """Complete rows of a journal (after its header line): a kill mid-write leaves a torn last line without
    its newline, which the resume drops, so it does not count."""
    return max(0, path.read_text().count("\n") - 1) if path.exists() else 0


def test_csv_output_and_the_fallback_without_pyarrow(spec, tmp_path, reference, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails, as when it is missing
    note = StringIO()
    result = run_sweep(spec, tmp_path / "r.parquet", workers=1, evaluator=cheap, progress=note)
    assert result.path == tmp_path / "r.csv" and not (tmp_path / "r.parquet").exists()
    assert note.getvalue().startswith(f"note: pyarrow is not installed, so the results go to {tmp_path / 'r.csv'}")
    assert read_rows(result.path) == reference[1]


def test_outputs_of_another_sweep_are_never_mixed(spec, tmp_path):
    out = tmp_path / "o.csv"
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("seed = 11", "seed = 12"))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, evaluator=Interrupt(after=3), progress=None)
    with pytest.raises(SweepError, match=r"o.csv.partial holds an interrupted run of a different spec \('engine'"):
        run_sweep(load_spec(other), out, workers=1, evaluator=cheap, progress=None)
    journal = out.with_name("o.csv.partial")
    good = journal.read_text()
    journal.write_text(good.replace('{"index": 1,', '{"index": 1 oops,'))
    with pytest.raises(SweepError, match=r"o.csv.partial: line 3 must be a JSON row with an index, not "
                                         r"'\{\"index\": 1 oops,"):
        run_sweep(spec, out, workers=1, evaluator=cheap, progress=None)
    journal.write_text(good)
    run_sweep(spec, out, workers=1, evaluator=cheap, progress=None)
    with pytest.raises(SweepError,
                       match="--out must not be an existing file .*o.csv.*, which holds the results of another sweep"):
        run_sweep(load_spec(other), out, workers=1, evaluator=cheap, progress=None)


def test_a_journal_of_other_model_code_is_not_resumed(spec, tmp_path):
    out = tmp_path / "c.csv"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, evaluator=Interrupt(after=3), progress=None)
    journal = out.with_name("c.csv.partial")
    header, *rows = journal.read_text().splitlines()
    journal.write_text("\n".join([json.dumps({**json.loads(header), "code": "0123456789abcdef"}), *rows]) + "\n")
    with pytest.raises(SweepError, match=r"c.csv.partial was started by other model code \(fingerprint "
                                         r"0123456789abcdef, now [0-9a-f]{16}\)"):
        run_sweep(spec, out, workers=1, evaluator=cheap, progress=None)


def test_dask_workers_must_run_the_same_code(spec, tmp_path, dask_scheduler, monkeypatch):
    import mozart.sim.sweep as sweep
    monkeypatch.setattr(sweep, "code_fingerprint", lambda: "driver-version")  # as if the driver's code differed
    with pytest.raises(SweepError, match=r"the Dask workers must run the same mozart code as this machine "
                                         r"\(fingerprint driver-version\), not other code: tcp://127.0.0.1:"):
        run_sweep(spec, tmp_path / "x.csv", cluster=dask_scheduler, evaluator=cheap, progress=None)


@pytest.mark.parametrize("options,message", [
    ({"workers": 0}, "--workers must be a positive integer, not 0"),
    ({"cluster": "127.0.0.1:8786"}, "--cluster must be 'local' or a Dask scheduler address tcp://HOST:PORT, "
                                    "not '127.0.0.1:8786'"),
    ({"cluster": "tcp://127.0.0.1:8786", "workers": 2}, "--workers must not be given with --cluster"),
])
def test_bad_options(spec, tmp_path, options, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_sweep(spec, tmp_path / "x.csv", evaluator=cheap, progress=None, **options)


def test_unreachable_scheduler_is_a_clear_error(spec, tmp_path):
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_sweep(spec, tmp_path / "x.csv", cluster="tcp://127.0.0.1:9", connect_timeout=1, evaluator=cheap,
                  progress=None)


def test_pareto_front_and_plot_errors(spec, reference, tmp_path):
    from mozart.sim.commands.sweep import pareto_front, plot_results
    assert pareto_front([(4, 1.0), (1, 3.0), (2, 2.0), (2, 2.5), (3, 2.0), (1, 3.0)]) == [(1, 3.0), (2, 2.0),
                                                                                          (4, 1.0)]
    with pytest.raises(SweepError, match=r"--cost must be a numeric column of the results \(e.g. chiplets\), "
                                         r"not 'area'"):
        plot_results(spec, reference[1], tmp_path, cost="area")
    failed = [r for r in reference[1] if r["status"] != "ok"]
    with pytest.raises(SweepError, match=f"--plot needs at least one point with status 'ok' and a step_time_s, "
                                         f"not {len(failed)} rows without one"):
        plot_results(spec, failed, tmp_path)


def test_a_scheduler_without_workers_is_a_clear_error(spec, tmp_path):
    empty = loopback_cluster(0)
    try:
        with pytest.raises(SweepError, match=f"the Dask scheduler at {empty.scheduler_address} must have workers, "
                                             f"not none after 1 s; start some with: dask worker "):
            run_sweep(spec, tmp_path / "x.csv", cluster=empty.scheduler_address, connect_timeout=1,
                      evaluator=cheap, progress=None)
    finally:
        empty.close()


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_nothing_in_a_log(spec, tmp_path):
    terminal, log = _Terminal(), StringIO()
    run_sweep(spec, tmp_path / "t.csv", workers=1, evaluator=cheap, progress=terminal)
    run_sweep(spec, tmp_path / "l.csv", workers=1, evaluator=cheap, progress=log)
    total = len(expand(spec))
    assert f"{total}/{total}" in terminal.getvalue() and "point" in terminal.getvalue()
    assert log.getvalue() == ""


@pytest.mark.parametrize("argv,message", [
    (["sweep", "/no/spec.toml", "--out", "r.csv"], "sweep spec must be an existing TOML file, not '/no/spec.toml'"),
    (["sweep", "SPEC", "--out", "r.txt"], "--out must end in .parquet or .csv, not "),
    (["sweep", "SPEC", "--out", "r.csv/x.csv"], "--out's folder must be a folder, not the existing file 'r.csv'"),
    (["sweep", "SPEC", "--out", "r.csv", "--cost", "bogus", "--plot", "p"], "--cost must be a numeric column"),
    (["sweep", "SPEC", "--out", "r.csv", "--plot", "r.csv"], "--plot must be a folder, not the existing file"),
    (["sweep", "SPEC", "--out", "r.csv", "--workers", "0"], "argument --workers: must be a positive integer, not '0'"),
    (["sweep", "SPEC", "--out", "r.csv", "--cluster", "nowhere"], "--cluster must be 'local' or a Dask scheduler"),
    (["sweep", "SPEC"], "the following arguments are required: -o/--out"),
])
def test_cli_errors_are_one_line_and_exit_2(spec, tmp_path, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.csv").write_text("not results\n")
    argv = [spec.source if a == "SPEC" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------- the performance model

REAL_SPEC = """
[sweep]
name = "real"
configs = ["wafer4x4", "olmoe-1b-7b"]
methods = ["contiguous", "mozart"]
variants = ["baseline", "A", "B", "C"]
seed = 5
[axes]
"moe.layers" = [1]
"training.sequences" = [4]
"training.seq_len" = [32, 64]
"perf.network" = ["tree", "mesh"]
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real sweep's spec and its results from the local process pool (2 workers)."""
    folder = tmp_path_factory.mktemp("real")
    (folder / "real.toml").write_text(REAL_SPEC)
    spec = load_spec(folder / "real.toml")
    out = folder / "pool.parquet"
    result = run_sweep(spec, out, workers=2, progress=None)
    # C with method m is B with method m: 16 C points are copies, not computed twice
    assert result.points == 64 and result.same == 16 and result.computed == 48
    return spec, out


def test_points_declared_the_same_computation_are_equal_when_computed(real):
    """The aliasing is honest: evaluated on its own, a C point gives its B twin's outputs exactly, and a
    sweep reads the same rows either way."""
    from mozart.sim.sweep import same_computations
    from mozart.sim.sweep_eval import evaluate_point
    spec, out = real
    points = expand(spec)
    twins = same_computations(points, evaluate_point.same_variants)
    assert len(twins) == 16 and all(points[i]["variant"] == "C" and points[t]["variant"] == "B"
                                    for i, t in twins.items())
    rows = read_rows(out)
    for i, t in list(twins.items())[:3]:
        computed = evaluate_point(points[i])
        assert computed == evaluate_point(points[t])
        assert all(rows[i][k] == v for k, v in computed.items() if k in rows[i])


def test_real_rows_hold_every_input_and_output(real):
    rows = read_rows(real[1])
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"][:3]
    for column in ("moe.layers", "training.seq_len", "perf.network", "method", "variant", "step_time_s",
                   "step_cycles", "c_t", "replicas_per_token", "tokens", "chiplets"):
        assert all(r[column] is not None for r in rows), column
    assert {r["tokens"] for r in rows} == {128, 256}
    # Baseline and A send one replica per expert: the schedule's C_T is k exactly.
    assert all(r["replicas_per_token"] == (4 if r["config"] == "wafer4x4" else 8)
               for r in rows if r["variant"] in ("baseline", "A"))
    for r in rows:  # the breakdown's exposed times and idle add up to the step time
        exposed = sum(v for k, v in r.items() if k.startswith("exposed_")) + r["idle_s"]
        assert exposed == pytest.approx(r["step_time_s"], rel=1e-9)
        links = {k: v for k, v in r.items() if k.startswith("link_busy_s.") and v is not None}
        kinds = {k.split(".")[1] for k in links}
        assert kinds == ({"root-down", "root-up", "leaf-down", "leaf-up"} if r["perf.network"] == "tree"
                         else {"root-down", "root-up", "mesh"})
        assert r["link_busy_max_s"] == max(links.values()) == links["link_busy_s." + r["link_busiest"]]
        assert 0 < r["link_utilisation_max"] <= 1
        traffic = {k.removeprefix("link_bytes."): v for k, v in r.items() if k.startswith("link_bytes.") and v}
        assert traffic.keys() == {k.removeprefix("link_busy_s.") for k in links}


def test_real_rows_count_fewer_root_bytes_with_deduplication(real):
    """B sends one replica per destination chiplet and reduces in the switches, the Baseline one per expert:
    on the same point, every link between the root and a switch carries fewer bytes (tree; olmoe, whose
    chiplets hold 4 experts each: wafer4x4 holds one, so there a chiplet replica is an expert replica)."""
    rows = [r for r in read_rows(real[1]) if r["perf.network"] == "tree" and r["config"] == "olmoe-1b-7b"]
    by_point = {(r["config"], r["method"], r["training.seq_len"], r["variant"]): r for r in rows}
    compared = 0
    for (config, method, seq_len, variant), b in by_point.items():
        if variant != "B":
            continue
        base = by_point[(config, method, seq_len, "baseline")]
        for link in (k for k in b if k.startswith("link_bytes.root-")):
            assert 0 < b[link] < base[link], (config, method, seq_len, link)
            compared += 1
    assert compared == 2 * 2 * 2 * 4  # methods x seq_lens x (down, up) x 4 groups


def test_real_rows_have_area_and_energy_as_costs(real):
    """Each row's chip area (the config's, mozart.model.perf.area) and step energy (mozart.model.perf.energy)
    add up from their components; the area follows the config, the energy the point."""
    from mozart.model.config import load_config
    from mozart.model.perf import load_params
    from mozart.model.perf.area import config_area
    rows = read_rows(real[1])
    for r in rows:
        assert r["area_mm2"] == pytest.approx(sum(v for k, v in r.items() if re.fullmatch(r"area_[a-z_]+_mm2", k)))
        assert r["energy_j"] == pytest.approx(sum(v for k, v in r.items() if re.fullmatch(r"energy_[a-z]+_j", k)))
        assert r["power_w"] == pytest.approx(r["energy_j"] / r["step_time_s"]) and r["energy_macs_j"] > 0
        assert r["footprint_mm2"] > 0 and r["energy_ssd_j"] == 0  # HBM2 holds olmoe's weights
    olmoe = load_params("olmoe-1b-7b")
    expected = {"olmoe-1b-7b": config_area(load_config("olmoe-1b-7b"), olmoe).total_mm2,
                "wafer4x4": config_area(load_config("wafer4x4")).total_mm2}
    assert {r["config"]: r["area_mm2"] for r in rows} == pytest.approx(expected)
    # B de-duplicates the dispatch: on the same point its links move fewer bytes, so spend less link energy.
    by_point = {(r["config"], r["method"], r["training.seq_len"], r["perf.network"], r["variant"]): r for r in rows}
    for (config, method, seq_len, network, variant), b in by_point.items():
        if variant == "B" and config == "olmoe-1b-7b" and network == "tree":
            assert b["energy_links_j"] < by_point[(config, method, seq_len, network, "baseline")]["energy_links_j"]


def test_the_pareto_plot_defaults_to_the_area_and_takes_energy(real, tmp_path, monkeypatch):
    from mozart.sim.commands import sweep as command
    spec, out = real
    rows = read_rows(out)
    drawn = []
    monkeypatch.setattr(command, "_plot_pareto", lambda ok, cost, folder, left_out: drawn.append(cost) or folder)
    command.plot_results(spec, rows, tmp_path)
    command.plot_results(spec, rows, tmp_path, cost="energy_j")
    assert drawn == ["area_mm2", "energy_j"]
    # Results without an area (an older file) fall back to the next cost the rows have.
    command.plot_results(spec, [{k: v for k, v in r.items() if k != "area_mm2"} for r in rows], tmp_path)
    assert drawn[-1] == "energy_j"
    for column in ("area_mm2", "energy_j", "power_w", "area_pes_mm2", "energy_links_j", "footprint_mm2"):
        command.check_cost(column, spec)  # accepted before the sweep runs


def test_real_sweep_on_dask_gives_identical_rows(real, dask_scheduler, tmp_path):
    spec, pool = real
    out = tmp_path / "dask.parquet"
    run_sweep(spec, out, cluster=dask_scheduler, progress=None)
    assert read_rows(out) == read_rows(pool)
    assert out.read_bytes() == pool.read_bytes()


def test_real_sweep_killed_midway_resumes_to_the_same_file(real, tmp_path, capsys):
    spec, pool = real
    out = tmp_path / "killed.parquet"
    journal = out.with_name("killed.parquet.partial")
    argv = ["sweep", spec.source, "--out", str(out), "--workers", "2"]
    child = subprocess.Popen([sys.executable, "-m", "mozart.sim", *argv], start_new_session=True,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _journal_rows(journal) < 8 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    saved = _journal_rows(journal)
    assert 8 <= saved < 64 and not out.exists()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    computed = int(re.search(rf"64 points \((\d+) computed, {saved} resumed, 0 not ok\) in ", printed).group(1))
    same = re.search(r"(\d+) points were the same computation as another point", printed)
    assert computed + (int(same.group(1)) if same else 0) == 64 - saved
    assert out.read_bytes() == pool.read_bytes()


def test_cli_plots_a_finished_sweep_without_recomputing(real, tmp_path, capsys):
    spec, pool = real
    out = tmp_path / "done.parquet"
    out.write_bytes(pool.read_bytes())
    assert main(["sweep", spec.source, "--out", str(out), "--plot", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr()
    assert "64 points (0 computed, 64 resumed, 0 not ok); nothing left to run" in printed.out
    assert "all 64 points of this sweep are already done" in printed.err
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["pareto.png", "sensitivity-method.png", "sensitivity-perf.network.png",
                     "sensitivity-training.seq_len.png", "sensitivity-variant.png"]  # one-value axes: no plot
    assert all((tmp_path / "plots" / n).stat().st_size > 5000 for n in names)


def test_real_perf_parameters_apply_to_full_size_models_only(tmp_path):
    path = tmp_path / "hbm.toml"
    path.write_text("""
[sweep]
configs = ["wafer4x4", "olmoe-1b-7b"]
methods = ["contiguous"]
variants = ["A"]
[axes]
"moe.layers" = [1]
"training.sequences" = [4]
"training.seq_len" = [8]
"perf.hbm_gbps" = [64.0, 512.0]
""")
    run_sweep(load_spec(path), tmp_path / "hbm.csv", workers=1, progress=None)
    scaled, full = read_rows(tmp_path / "hbm.csv")[:2], read_rows(tmp_path / "hbm.csv")[2:]
    assert all(r["status"] == "invalid" and r["error"].startswith(
        "perf.hbm_gbps must be swept only on the full-size models (deepseek-moe-16b, olmoe-1b-7b, qwen3-30b-a3b), "
        "not on 'wafer4x4'") for r in scaled)
    assert [r["status"] for r in full] == ["ok", "ok"]
    assert full[0]["step_time_s"] > full[1]["step_time_s"]  # 8x the DRAM bandwidth: a faster step


def test_real_sweep_of_a_trace_file(tmp_path):
    from mozart.model.config import load_config
    from mozart.model.synth import synthesize_for
    from mozart.model.trace_io import save_trace
    save_trace(synthesize_for(load_config("wafer4x4"), 100, seed=3), tmp_path / "t.npz")
    (tmp_path / "file.toml").write_text("""
[sweep]
configs = ["wafer4x4", "tiny"]
methods = ["mozart"]
variants = ["A", "C"]
[trace]
file = "t.npz"
""")
    run_sweep(load_spec(tmp_path / "file.toml"), tmp_path / "file.csv", workers=1, progress=None)
    rows = read_rows(tmp_path / "file.csv")
    assert [(r["config"], r["status"], r["trace"]) for r in rows] == [("wafer4x4", "ok", "file:t.npz")] * 2 + [
        ("tiny", "invalid", "file:t.npz")] * 2
    assert {r["tokens"] for r in rows[:2]} == {256}  # repeated to the step's 8 x 32 tokens, as mozart evaluate does
    assert "trace has 16 experts but config 'tiny' has moe.experts = 8" in rows[2]["error"]  # the trace's message


@pytest.fixture(scope="module")
def dask_scheduler():
    """A Dask scheduler with two worker processes, on loopback only, as a remote cluster would be reached."""
    cluster = loopback_cluster(2)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def loopback_cluster(workers):
    """A Dask LocalCluster of ``workers`` processes on 127.0.0.1 (its health server moves off a busy 8787)."""
    distributed = pytest.importorskip("dask.distributed")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address=None)
