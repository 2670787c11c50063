"""The project's dependency arrows and contracts, checked on the source tree.

- ``mozart.model`` imports neither Amaranth nor cocotb (the reference model and the performance model run without
  an HDL toolchain);
- ``tb/`` holds cocotb testbenches that check the hardware against the model: they never import ``mozart.hw``;
- nothing reaches into Amaranth's private ``_MustUse`` machinery or filters its unused-elaboratable warning: a
  component that a contract rejects is never created (``mozart.model.blocks``);
- no function in ``hw/`` is longer than :data:`MAX_HW_FUNCTION_LINES` lines: a block is small components, not
  one long ``elaborate``.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The longest function (``elaborate`` included) a hardware file may hold.
MAX_HW_FUNCTION_LINES = 80


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_model_imports_neither_amaranth_nor_cocotb():
    import mozart.model
    modules = [m.name for m in pkgutil.walk_packages(mozart.model.__path__, "mozart.model.")]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'amaranth', 'cocotb', 'cocotb_tools'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing mozart.model loaded {out.stdout.strip()}"
    assert len(modules) > 20


def test_testbenches_do_not_import_the_hardware():
    offenders = {p.name: sorted(n for n in _imports(p) if n == "mozart.hw" or n.startswith("mozart.hw."))
                 for p in (ROOT / "tb").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_private_amaranth_machinery_and_no_hidden_warnings():
    needles = ("_MustUse", "UnusedElaboratable")
    found = [f"{p.relative_to(ROOT)}:{i}" for folder in ("hw", "model", "sim", "tb", "tests", "bench")
             for p in (ROOT / folder).rglob("*.py") if p.name != Path(__file__).name
             for i, line in enumerate(p.read_text().splitlines(), 1) if any(n in line for n in needles)]
    assert not found


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_hardware_function_is_longer_than_80_lines():
    files = sorted((ROOT / "hw").rglob("*.py"))
    assert len(files) > 10
    assert [f for p in files for f in _long_functions(p, MAX_HW_FUNCTION_LINES)] == []


def test_the_checks_above_can_fail(tmp_path):
    """Mutants: a file that imports the hardware is caught by the import scan; an 81-line function is long."""
    bad = tmp_path / "tb_bad.py"
    bad.write_text("from mozart.hw.switch import Switch\nimport mozart.hw\n")
    assert _imports(bad) >= {"mozart.hw.switch", "mozart.hw"}
    long = tmp_path / "long.py"
    long.write_text("def elaborate(self, platform):\n" + "    x = 1\n" * (MAX_HW_FUNCTION_LINES - 1))
    assert _long_functions(long, MAX_HW_FUNCTION_LINES) == []
    long.write_text(long.read_text() + "    return x\n")
    assert _long_functions(long, MAX_HW_FUNCTION_LINES) == [f"long.py:1 elaborate ({MAX_HW_FUNCTION_LINES + 1} lines)"]
