"""The docs name only files that exist: every ``tests/``, ``tb/``, ``hw/``, ``sim/``, ``model/`` and ``bench/``
path in ``README.md`` and ``docs/*.md``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"\b(?:tests|tb|hw|sim|model|bench)/[A-Za-z0-9_/]*\.py\b")


def missing_paths(text: str, root: Path) -> list[str]:
    return sorted({p for p in PATH.findall(text) if not (root / p).exists()})


def test_docs_name_only_existing_files():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {d.name: PATH.findall(d.read_text()) for d in docs}
    assert sum(map(len, named.values())) > 50   # the scan finds the paths the docs name
    assert {d.name: missing_paths(d.read_text(), ROOT) for d in docs} == {d.name: [] for d in docs}


def test_a_renamed_file_is_caught():
    assert missing_paths("see `hw/switch.py` and `tests/test_no_such_file.py`", ROOT) == ["tests/test_no_such_file.py"]
