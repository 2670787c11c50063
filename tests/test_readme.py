"""README.md stays true: every console command in it runs, every Python snippet executes.

The walk-through runs in document order in one temporary folder, as a new user would: shell blocks (```sh)
line by line through :func:`mozart.sim.cli.main` (``> FILE`` redirects stdout), the example transcript
(```text, ``$ mozart ...`` followed by its output) with its output compared, and Python blocks with
``exec``. Co-simulations, Verilog and proofs of bigger presets run on ``tiny`` (``--config tiny`` substituted), and
the co-simulations are one ``cosim`` test of their own (Verilator builds; ``-m "not cosim"`` deselects it).
A command the test cannot run fails it: the only other commands allowed are the set-up ones, which must be
exactly what CI runs (``.ci/run``).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from mozart.model.config import load_config, to_toml
from mozart.sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Set-up commands: not run here (they install the project and run this very suite); .ci/run runs them.
SETUP = ("pip install -e '.[dev]'", "python3 -m pytest")
#: Presets too big for a test's Verilator build or proof: their co-simulations, Verilog and proofs run on tiny.
BIG_PRESETS = ("wafer4x4", "paper4x4")


def blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def commands(text: str) -> list[str]:
    """The command lines of a shell block (comments and blank lines dropped)."""
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_cosim(command: str) -> bool:
    return command.startswith("mozart cosim")


def on_tiny(command: str) -> str:
    if command.startswith(("mozart cosim", "mozart verilog", "mozart formal")):
        for preset in BIG_PRESETS:
            command = command.replace(f"--config {preset}", "--config tiny")
    return command


def run_command(command: str) -> tuple[int, str]:
    """Run one README command line in-process; returns its status and stdout (written to a ``> FILE``)."""
    words = shlex.split(on_tiny(command))
    assert words[0] == "mozart", f"README command the test cannot run: {command!r}"
    target = None
    if ">" in words:
        at = words.index(">")
        words, target = words[:at], words[at + 1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(words[1:])
        except SystemExit as exc:
            code = exc.code
    if target:
        Path(target).write_text(out.getvalue())
    return code, out.getvalue()


def user_files(folder: Path) -> None:
    """The files a user brings that the README names: router logits of their model, [layers, tokens, experts]."""
    rng = np.random.default_rng(0)
    np.save(folder / "logits.npy", rng.standard_normal((2, 64, 128)).astype(np.float32))


@pytest.fixture
def walk(tmp_path, monkeypatch):
    """A fresh folder to work in, sharing the project's Verilator build cache (no rebuild per test)."""
    user_files(tmp_path)
    (tmp_path / "docs").symlink_to(ROOT / "docs")  # the README runs from a clone's root: docs/ is there
    monkeypatch.setenv("MOZART_BUILD_DIR", str(Path(__import__("os").environ.get("MOZART_BUILD_DIR")
                                                     or ROOT / ".mozart-build").absolute()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_readme_command_is_runnable_or_is_cis_set_up():
    ci = (ROOT / ".ci" / "run").read_text()
    found = [c for lang, text in blocks() if lang == "sh" for c in commands(text)]
    assert found, "README.md has no shell commands"
    for command in found:
        if not command.startswith("mozart "):
            assert command in SETUP, f"README command the test cannot run: {command!r}"
            assert command.replace("python3 -m pip", "pip") in ci.replace("python3 -m pip", "pip"), command


def test_the_readme_walkthrough_runs(walk, capsys):
    """Every shell command (except the co-simulations, next test) and every Python snippet, in order."""
    ran = 0
    for lang, text in blocks():
        if lang == "sh":
            for command in commands(text):
                if command in SETUP or is_cosim(command):
                    continue
                code, out = run_command(command)
                assert code == 0, f"{command!r} exited {code}: {capsys.readouterr().err}"
                ran += 1
        elif lang == "python":
            exec(compile(text, "README.md", "exec"), {})
            ran += 1
        elif lang == "text" and text.startswith("$ mozart"):
            first, *expected = text.splitlines()
            command = first[2:]
            if "bad.toml" in command:  # the transcript's bad config: tiny with top_k above its 8 experts
                (walk / "bad.toml").write_text(to_toml(load_config("tiny")).replace("top_k = 2", "top_k = 9"))
            capsys.readouterr()  # only this command's stderr is compared
            code, _ = run_command(command)
            err = capsys.readouterr().err
            assert code == 2 and err.splitlines() == expected, err
            ran += 1
    assert ran >= 15


@pytest.mark.cosim
def test_the_readme_cosimulations_run_on_tiny(walk, capsys):
    cosims = [c for lang, text in blocks() if lang == "sh" for c in commands(text) if is_cosim(c)]
    assert len(cosims) >= 5
    for lang, text in blocks():  # inputs the co-simulations read (a trace, a placement) come from earlier commands
        for command in (commands(text) if lang == "sh" else []):
            if command.startswith(("mozart trace synth --config tiny", "mozart allocate --config tiny")):
                assert run_command(command)[0] == 0
    for command in cosims:
        code, out = run_command(command)
        assert code == 0, f"{on_tiny(command)!r} exited {code}:\n{out}{capsys.readouterr().err}"
