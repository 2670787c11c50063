"""The Verilator build cache: one folder per (design, config, waves), rebuilt only when the Verilog changes,
safe against concurrent builds."""

import os
import subprocess
import sys

import pytest

from mozart.model.config import load_config, override
from mozart.sim import build as build_module
from mozart.sim.build import BuildError, build, build_dir_for, config_key, write_verilog

pytestmark = pytest.mark.cosim

TINY = load_config("tiny")

_BUILD_ONE = ("from mozart.sim.build import build; from mozart.model.config import load_config; "
              "b = build('fifo', load_config('tiny')); print('REBUILT' if b.rebuilt else 'CACHED', b.build_dir)")


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory):
    """An empty build root, filled by two processes building the same design at the same time."""
    root = tmp_path_factory.mktemp("build-root")
    env = {**os.environ, "MOZART_BUILD_DIR": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_ONE], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOZART_BUILD_DIR", str(root))
        yield root, [out.split() for out, _ in outputs]


def test_concurrent_builds_build_once(fresh_root):
    root, reports = fresh_root
    assert sorted(r[0] for r in reports) == ["CACHED", "REBUILT"]  # the second waited for the lock, then reused
    assert reports[0][1] == reports[1][1] == str(build_dir_for("fifo", TINY))
    assert (build_dir_for("fifo", TINY) / "link_fifo").is_file()


def test_unchanged_design_is_not_rebuilt(fresh_root):
    folder = build_dir_for("fifo", TINY)
    stamps = {p: p.stat().st_mtime_ns for p in (folder / "link_fifo", folder / "fifo.v")}
    again = build("fifo", TINY)
    assert not again.rebuilt and again.build_dir == folder
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not even the Verilog file was rewritten


def test_changed_verilog_is_rebuilt(fresh_root, monkeypatch):
    original = build_module.verilog_text
    monkeypatch.setattr(build_module, "verilog_text", lambda d, cfg, **kw: original(d, cfg, **kw) + "// changed\n")
    monkeypatch.setattr(build_module, "source_digest", lambda: "an edited source tree")   # converts again
    changed = build("fifo", TINY)
    assert changed.rebuilt and changed.verilog.read_text().endswith("// changed\n")
    assert not build("fifo", TINY).rebuilt
    monkeypatch.undo()
    assert build("fifo", TINY).rebuilt  # back to the original text: built again


def test_each_config_and_waves_setting_has_its_own_folder(fresh_root):
    root, _ = fresh_root
    wide = override(TINY, {"hardware.flit_bits": 128})
    folders = {build_dir_for("fifo", TINY), build_dir_for("fifo", wide), build_dir_for("fifo", TINY, waves=True)}
    assert len(folders) == 3 and all(f.parent == root / "fifo" for f in folders)
    assert build_dir_for("fifo", load_config("tiny")) == build_dir_for("fifo", TINY)  # keyed by content
    assert config_key(TINY).startswith("tiny-") and config_key(wide) != config_key(TINY)
    assert build_dir_for("fifo", TINY, waves=True).name.endswith("-waves")


def test_write_verilog_rewrites_only_changed_text(tmp_path):
    path = write_verilog("fifo", TINY, tmp_path)
    assert path == tmp_path / "fifo.v" and "module link_fifo(" in path.read_text()
    assert "i__payload" in path.read_text() and "o__ready" in path.read_text()
    mtime = path.stat().st_mtime_ns
    write_verilog("fifo", TINY, tmp_path)
    assert path.stat().st_mtime_ns == mtime


def test_failed_build_names_block_config_and_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MOZART_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(build_module, "verilog_text", lambda d, cfg, **kw: "module link_fifo(input clk;\nendmodule\n")
    with pytest.raises(BuildError, match=r"(?s)Verilator build of block 'fifo' for config 'tiny' must succeed.*"
                       r"build\.log"):
        build("fifo", TINY)
    assert not (build_dir_for("fifo", TINY) / "mozart-build.json").exists()  # no stamp: next call rebuilds


def test_cached_run_does_not_convert_again(fresh_root, monkeypatch):
    build("fifo", TINY)
    monkeypatch.setattr(build_module, "verilog_text", lambda *a, **k: pytest.fail("converted a cached design"))
    again = build("fifo", TINY)
    assert not again.rebuilt and not again.converted


def test_damaged_executable_is_rebuilt(fresh_root):
    executable = build("fifo", TINY).executable
    executable.write_bytes(b"not a simulator")
    again = build("fifo", TINY)
    assert again.rebuilt and executable.read_bytes()[:4] == b"\x7fELF"


def test_finished_build_keeps_no_objects(fresh_root):
    folder = build("fifo", TINY).build_dir
    assert not [p.name for p in folder.iterdir() if p.suffix in (".o", ".gch", ".a", ".cpp")]


def test_build_dir_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "a-file"
    target.write_text("")
    monkeypatch.setenv("MOZART_BUILD_DIR", str(target))
    with pytest.raises(BuildError, match=r"^MOZART_BUILD_DIR \(.*a-file\) must be a folder for Verilator builds, "
                       r"not a file$"):
        build("fifo", TINY)


def test_waiting_for_a_lock_is_reported(fresh_root):
    said = []
    folder = build_dir_for("fifo", TINY)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"lock = FileLock({str(folder) + '.lock'!r}); lock.acquire(); print('held', "
                               f"flush=True); "
                               "time.sleep(2)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert not build("fifo", TINY, progress=said.append).rebuilt
    holder.wait(timeout=30)
    assert any(s.startswith("waiting for lock on") for s in said)
