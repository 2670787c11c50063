"""Placement files: JSON with per-layer expert -> chiplet and chiplet -> group, plus a serving export.

Format (``schema_version`` 1)::

    {
      "format": "mozart-placement",
      "schema_version": 1,
      "config": "qwen3-30b-a3b",          # the config's name (informational)
      "method": "mozart+refine",          # the algorithm that made it
      "experts": 128, "chiplets": 16, "groups": 4, "chiplets_per_group": 4,
      "chiplet_to_group": [0, 0, 0, 0, 1, ...],      # always chiplet // chiplets_per_group
      "layers": [{"layer": 0, "expert_to_chiplet": [3, 0, 15, ...]}, ...]
    }

Chiplet ids are global and group-major (:mod:`mozart.model.placement`); ``chiplet_to_group`` is written out
for readers that do not know that rule and must agree with it. :func:`load_placement` reports the first
problem as a :class:`~mozart.model.errors.PlacementError` naming the file, the layer and the field.
Writes are atomic (a temporary file in the same folder, then a rename), so a crash never leaves half a file.

:func:`save_ep_rank` writes ``{"expert_to_ep_rank": [...]}``, the shape serving frameworks accept for a
custom expert-parallel layout (list index = expert id, value = EP rank = global chiplet id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PlacementError
from .files import atomic_write
from .placement import Placement

__all__ = ["FORMAT", "SCHEMA_VERSION", "placement_to_dict", "placement_from_dict", "save_placement",
           "load_placement", "ep_rank_dict", "save_ep_rank"]

FORMAT = "mozart-placement"
SCHEMA_VERSION = 1


def placement_to_dict(placement: Placement, cfg) -> dict[str, Any]:
    """The JSON shape of ``placement`` (validated against ``cfg`` first)."""
    placement.validate(cfg)
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "config": cfg.name,
        "method": placement.method,
        "experts": cfg.moe.experts,
        "chiplets": cfg.chiplets,
        "groups": cfg.groups,
        "chiplets_per_group": cfg.chiplets_per_group,
        "chiplet_to_group": placement.chiplet_to_group(cfg.chiplets).tolist(),
        "layers": [{"layer": layer, "expert_to_chiplet": placement.expert_to_chiplet[layer].tolist()}
                   for layer in range(placement.layers)],
    }


def _int(where: str, field: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        rule = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise PlacementError(f"{where}: {field} must be {rule}, not {value!r}")
    return value


def _int_list(where: str, field: str, value: Any, length: int, hi: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        got = f"a list of {len(value)}" if isinstance(value, list) else repr(value)
        raise PlacementError(f"{where}: {field} must be a list of {length} integers, not {got}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < hi:
            raise PlacementError(f"{where}: {field}[{i}] must be an integer in 0..{hi - 1}, not {v!r}")
    return value


def placement_from_dict(data: Any, source: str = "placement", cfg=None) -> Placement:
    """Parse and check the JSON shape; with ``cfg``, also check that the placement fits it.

    Raises
    ------
    PlacementError
        Naming ``source``, the layer and the field of the first problem.
    """
    if not isinstance(data, dict):
        raise PlacementError(f"{source}: must be a JSON object, not {type(data).__name__}")
    for key in ("format", "schema_version", "experts", "chiplets", "groups", "chiplets_per_group",
                "chiplet_to_group", "layers"):
        if key not in data:
            raise PlacementError(f"{source}: field {key!r} is missing")
    if data["format"] != FORMAT:
        raise PlacementError(f"{source}: format must be {FORMAT!r}, not {data['format']!r}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise PlacementError(f"{source}: schema_version must be {SCHEMA_VERSION}, not {data['schema_version']!r}")
    experts = _int(source, "experts", data["experts"])
    chiplets = _int(source, "chiplets", data["chiplets"])
    groups = _int(source, "groups", data["groups"])
    per_group = _int(source, "chiplets_per_group", data["chiplets_per_group"])
    if groups * per_group != chiplets:
        raise PlacementError(f"{source}: chiplets must be groups x chiplets_per_group ({groups * per_group}), "
                             f"not {chiplets}")
    if experts % chiplets:
        raise PlacementError(f"{source}: experts must be a multiple of chiplets ({chiplets}), not {experts}")
    c2g = _int_list(source, "chiplet_to_group", data["chiplet_to_group"], chiplets, groups)
    expected = (np.arange(chiplets) // per_group).tolist()
    if c2g != expected:
        c = next(i for i, (a, b) in enumerate(zip(c2g, expected)) if a != b)
        raise PlacementError(f"{source}: chiplet_to_group[{c}] must be {expected[c]} (chiplets are numbered "
                             f"group-major: chiplet // chiplets_per_group), not {c2g[c]}")
    layers = data["layers"]
    if not isinstance(layers, list) or not layers:
        raise PlacementError(f"{source}: layers must be a non-empty list, not {layers!r}")
    rows = []
    for i, entry in enumerate(layers):
        where = f"{source}: layer {i}"
        if not isinstance(entry, dict) or "expert_to_chiplet" not in entry:
            raise PlacementError(f"{where}: must be an object with an 'expert_to_chiplet' list, not {entry!r}")
        if entry.get("layer", i) != i:
            raise PlacementError(f"{where}: layer must be {i} (layers in order), not {entry['layer']!r}")
        row = _int_list(where, "expert_to_chiplet", entry["expert_to_chiplet"], experts, chiplets)
        counts = np.bincount(row, minlength=chiplets)
        if (counts != experts // chiplets).any():
            c = int(np.flatnonzero(counts != experts // chiplets)[0])
            raise PlacementError(f"{where}: chiplet {c} must hold experts / chiplets = {experts // chiplets} "
                                 f"experts, not {counts[c]}")
        rows.append(row)
    method = data.get("method", "")
    if not isinstance(method, str):
        raise PlacementError(f"{source}: method must be a string, not {method!r}")
    placement = Placement(np.array(rows, dtype=np.int32), per_group, method)
    if cfg is not None:
        try:
            placement.validate(cfg)
        except PlacementError as exc:
            raise PlacementError(f"{source}: {exc}") from None
    return placement


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_placement(placement: Placement, path: str | Path, cfg) -> None:
    """Write ``placement`` as JSON to ``path``, atomically."""
    _write_text(Path(path), json.dumps(placement_to_dict(placement, cfg), indent=1) + "\n")


def load_placement(path: str | Path, cfg=None) -> Placement:
    """Read a placement file; with ``cfg``, check that it fits that config.

    Raises
    ------
    PlacementError
        For malformed JSON or content, naming the file, layer and field.
    FileNotFoundError
        If there is no such file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlacementError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise PlacementError(f"{path}: not valid JSON (not UTF-8 text)") from None
    return placement_from_dict(data, str(path), cfg)


def ep_rank_dict(placement: Placement, layer: int | None = None) -> dict[str, Any]:
    """``{"expert_to_ep_rank": [...]}``: EP rank (global chiplet id) of every expert.

    Parameters
    ----------
    placement : Placement
    layer : int, optional
        The layer to export as one flat list (frameworks that take one layout for all layers). Without it,
        a one-layer placement gives a flat list and a multi-layer one a list per layer
        (``expert_to_ep_rank[layer][expert]``).
    """
    if layer is not None:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < placement.layers:
            raise PlacementError(f"layer must be in 0..{placement.layers - 1}, not {layer!r}")
        return {"expert_to_ep_rank": placement.expert_to_chiplet[layer].tolist()}
    if placement.layers == 1:
        return {"expert_to_ep_rank": placement.expert_to_chiplet[0].tolist()}
    return {"expert_to_ep_rank": placement.expert_to_chiplet.tolist()}


def save_ep_rank(placement: Placement, path: str | Path, layer: int | None = None) -> None:
    """Write :func:`ep_rank_dict` as JSON to ``path``, atomically."""
    _write_text(Path(path), json.dumps(ep_rank_dict(placement, layer)) + "\n")
