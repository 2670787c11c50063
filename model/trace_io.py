"""Routing traces on disk: the mozart ``.npz`` format, JSON Lines, and raw router logits.

:func:`load_trace` picks the reader from the file name; :func:`save_trace` writes ``.npz`` or ``.jsonl``.
Every malformed input raises one :class:`~mozart.model.errors.TraceError` that names the file, the record
(line number, or layer and token) and the field. Writes go to a temporary file in the same folder that is
renamed over the target only when complete, so a crash never leaves a half-written trace.

The mozart trace format (``.npz``, schema version 1)
---------------------------------------------------
A numpy ``.npz`` archive (``np.savez``, no pickles) with these entries:

==================  ========================  ===========================================================
``schema_version``  int scalar                 1; readers refuse any other version
``experts``         unsigned/int ``[L, T, k]`` expert ids, distinct within a row, highest gate first
                                               (written as uint8 up to 256 experts, else uint16 or int32)
``weights``         float32 ``[L, T, k]``      gate weights, finite and >= 0
``num_experts``     int scalar                 experts per layer (ids are ``0..num_experts-1``)
``source``          str scalar, optional       where the trace came from
``layer_ids``       int ``[L]``, optional      the model's numbers of the MoE layers (default ``0..L-1``)
``meta``            str scalar, optional       a JSON object of free-form metadata (generator settings...)
==================  ========================  ===========================================================

JSON Lines (``.jsonl``)
-----------------------
One JSON object per line, one line per token and MoE layer (the shape Megatron's router tracer and other
placement tools write)::

    {"layer": 3, "topk_experts": [17, 4], "topk_weights": [0.61, 0.39]}

Optional fields: ``"token"`` (the token's index in its layer; if any record has it, every record must, and
each layer must hold tokens ``0..T-1`` exactly once; without it tokens are numbered in order of appearance),
and ``"num_experts"`` (on any record; all must agree). Layers may be any distinct non-negative numbers (e.g.
only the MoE layers of a model); they become trace layers in ascending order and are kept as
``layer_ids``. Every layer must have the same number of tokens. Blank lines are skipped. The writer puts
``"token"`` on every record and ``"num_experts"`` on the first.

Raw router logits (``.npy``, or ``.npz`` without ``schema_version``)
--------------------------------------------------------------------
Float arrays ``g(x)`` of shape ``[tokens, experts]`` per layer: a ``.npy`` of ``[T, E]`` (one layer) or
``[L, T, E]``; or an ``.npz`` holding ``logits`` (``[T, E]`` or ``[L, T, E]``) or one ``layer_<n>`` entry per
layer (``n`` = the model's layer number), plus optionally ``top_k``. Routing is docs/paper.md's
``R(x) = topk(softmax(g(x)), k)`` (:func:`route_logits`): the k largest logits (ties to the lower expert id),
gates = their softmax probabilities over *all* experts. By default gates are **not** renormalised over the
top-k (they sum to less than 1, exactly as the formula reads); ``renormalize=True`` divides them by their
sum (Qwen3's and Mixtral's ``norm_topk_prob``).
"""

from __future__ import annotations

import json
from array import array
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import TraceError
from .files import atomic_write
from .trace import Trace

__all__ = ["SCHEMA_VERSION", "check_output_path", "save_trace", "load_trace", "load_trace_with_meta", "read_npz",
           "write_npz", "read_jsonl", "write_jsonl", "read_logits", "route_logits"]

SCHEMA_VERSION = 1
Progress = Callable[[int, int], None] | None

_NPZ_FIELDS = ("schema_version", "experts", "weights", "num_experts")
_LAYER_KEY = re.compile(r"layer_(\d+)$")
_ROUTE_CHUNK = 1 << 15
_JSONL_BLOCK = 1 << 16  # records parsed into Python lists before they are packed into arrays
_MAX_ID = 2**31  # bound on layer and token numbers: they are kept as int64 with room to spare


# ---------------------------------------------------------------------------------------------------- writing
def _layer_ids(trace: Trace, layer_ids: Iterable[int] | None) -> list[int]:
    ids = list(range(trace.layers)) if layer_ids is None else [int(i) for i in layer_ids]
    if len(ids) != trace.layers or len(set(ids)) != len(ids) or min(ids) < 0:
        raise TraceError(f"layer_ids must be {trace.layers} distinct non-negative numbers, not {ids!r}")
    return ids


def write_npz(trace: Trace, path: str | Path, *, layer_ids: Iterable[int] | None = None,
              meta: dict | None = None) -> None:
    """Write ``trace`` in the mozart ``.npz`` format (schema version :data:`SCHEMA_VERSION`)."""
    # The narrowest type that holds every id: a quarter of the size of int32 for the paper's models.
    id_type = np.uint8 if trace.num_experts <= 2**8 else np.uint16 if trace.num_experts <= 2**16 else np.int32
    arrays = {"schema_version": np.int64(SCHEMA_VERSION), "experts": trace.experts.astype(id_type),
              "weights": trace.weights, "num_experts": np.int64(trace.num_experts), "source": np.str_(trace.source),
              "layer_ids": np.array(_layer_ids(trace, layer_ids), dtype=np.int64),
              "meta": np.str_(json.dumps(meta or {}))}
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def write_jsonl(trace: Trace, path: str | Path, *, layer_ids: Iterable[int] | None = None,
                progress: Progress = None) -> None:
    """Write ``trace`` as JSON Lines, layer by layer, one record per token (gates to float32 precision)."""
    ids = _layer_ids(trace, layer_ids)
    k = trace.top_k
    # One %-format per record is far faster than json.dumps; %.9g round-trips float32 exactly.
    row = ('{"layer": %d, "token": %d, "topk_experts": [' + ", ".join(["%d"] * k) + '], "topk_weights": ['
           + ", ".join(["%.9g"] * k) + "]}\n")

    def write(f) -> None:
        first = True
        for layer in range(trace.layers):
            experts, weights = trace.experts[layer].tolist(), trace.weights[layer].astype(np.float64).tolist()
            lines = [row % (ids[layer], t, *e, *w) for t, (e, w) in enumerate(zip(experts, weights))]
            if first and lines:
                lines[0] = lines[0][:-2] + f', "num_experts": {trace.num_experts}}}\n'
                first = False
            f.write("".join(lines).encode())
            if progress:
                progress(layer + 1, trace.layers)

    atomic_write(Path(path), write)


def check_output_path(path: str | Path) -> str:
    """The format (``"npz"`` or ``"jsonl"``) :func:`save_trace` would write to ``path``; raises TraceError if it
    cannot (unknown suffix). A missing folder is created when the trace is written."""
    path = Path(path)
    if path.suffix not in (".npz", ".jsonl"):
        raise TraceError(f"{path}: a trace file name must end in .npz or .jsonl, not {path.suffix or 'nothing'!r}")
    return path.suffix[1:]


def save_trace(trace: Trace, path: str | Path, *, layer_ids: Iterable[int] | None = None, meta: dict | None = None,
               progress: Progress = None) -> None:
    """Write ``trace`` to ``path``: ``.npz`` (the mozart format) or ``.jsonl``, by suffix."""
    if check_output_path(path) == "npz":
        write_npz(trace, path, layer_ids=layer_ids, meta=meta)
    else:
        write_jsonl(trace, path, layer_ids=layer_ids, progress=progress)


# ------------------------------------------------------------------------------------------- validation
def _check_rows(path: Path, experts: np.ndarray, weights: np.ndarray, num_experts: int,
                where: Callable[[int], str], fields: tuple[str, str]) -> None:
    """Check ``[rows, k]`` routing; the first bad row is reported as ``where(row)`` with its field name."""
    ef, wf = fields
    bad = ((experts < 0) | (experts >= num_experts)).any(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        value = next(int(v) for v in experts[r] if not 0 <= v < num_experts)
        raise TraceError(f"{path}: {where(r)}: field {ef!r}: expert id must be in 0..{num_experts - 1}, not {value}")
    if experts.shape[1] > 1:
        ordered = np.sort(experts, axis=1)
        dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if dup.any():
            r = int(np.argmax(dup))
            raise TraceError(f"{path}: {where(r)}: field {ef!r}: the top-k experts must be distinct, not "
                             f"{experts[r].tolist()}")
    bad = (~np.isfinite(weights) | (weights < 0)).any(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        value = next(float(v) for v in weights[r] if not (np.isfinite(v) and v >= 0))
        raise TraceError(f"{path}: {where(r)}: field {wf!r}: gate weights must be finite and >= 0, not {value!r}")


def _layer_token(tokens: int) -> Callable[[int], str]:
    return lambda row: f"layer {row // max(tokens, 1)} token {row % max(tokens, 1)}"


# ------------------------------------------------------------------------------------------------- npz
def _open_npz(path: Path) -> dict[str, np.ndarray]:
    """All entries of an ``.npz``, loaded; any corruption becomes one TraceError."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError):
        # numpy's own message may advise loading with pickles allowed: never repeat that for a trace file.
        raise TraceError(f"{path}: not a trace: not a readable .npz archive (truncated, corrupt or another kind "
                         f"of file)") from None


def _scalar_int(path: Path, data: dict, name: str) -> int:
    value = data[name]
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise TraceError(f"{path}: field {name!r} must be an integer scalar, not {value.dtype} of shape {value.shape}")
    return int(value)


def _npz_trace(path: Path, data: dict) -> tuple[Trace, dict]:
    version = _scalar_int(path, data, "schema_version")
    if version != SCHEMA_VERSION:
        raise TraceError(f"{path}: field 'schema_version' must be {SCHEMA_VERSION}, not {version} "
                         f"(written by another version of mozart?)")
    for name in _NPZ_FIELDS:
        if name not in data:
            raise TraceError(f"{path}: field {name!r} is missing; a mozart trace holds " + ", ".join(_NPZ_FIELDS))
    experts, weights = data["experts"], data["weights"]
    num_experts = _scalar_int(path, data, "num_experts")
    if num_experts < 1:
        raise TraceError(f"{path}: field 'num_experts' must be positive, not {num_experts}")
    if experts.ndim != 3 or not np.issubdtype(experts.dtype, np.integer):
        raise TraceError(f"{path}: field 'experts' must be an integer [layers, tokens, k] array, not {experts.dtype} "
                         f"of shape {experts.shape}")
    if weights.shape != experts.shape or not np.issubdtype(weights.dtype, np.floating):
        raise TraceError(f"{path}: field 'weights' must be a float array of the shape of 'experts' {experts.shape}, "
                         f"not {weights.dtype} of shape {weights.shape}")
    layers, tokens, k = experts.shape
    if layers < 1 or k < 1 or k > num_experts:
        raise TraceError(f"{path}: field 'experts' must have at least one layer and 1 <= k <= num_experts "
                         f"({num_experts}), not shape {experts.shape}")
    _check_rows(path, experts.reshape(-1, k).astype(np.int64), weights.reshape(-1, k), num_experts,
                _layer_token(tokens), ("experts", "weights"))
    layer_ids = data.get("layer_ids", np.arange(layers))
    if layer_ids.shape != (layers,) or not np.issubdtype(layer_ids.dtype, np.integer):
        raise TraceError(f"{path}: field 'layer_ids' must be {layers} integers, not {layer_ids.dtype} of shape "
                         f"{layer_ids.shape}")
    try:
        meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}: field 'meta' must be a JSON object, not invalid JSON ({exc.msg})") from None
    # Errors about the trace name the file the user gave; what made it (a generator's description) is kept
    # apart, as info["origin"].
    origin = str(data["source"]) if "source" in data else str(path)
    trace = Trace(experts.astype(np.int32), weights.astype(np.float32), num_experts, str(path))
    return trace, {"format": "npz", "layer_ids": layer_ids.tolist(), "meta": meta, "origin": origin}


def read_npz(path: str | Path) -> tuple[Trace, dict]:
    """Read a mozart ``.npz`` trace; returns the trace and ``{"format", "layer_ids", "meta"}``."""
    path = Path(path)
    data = _open_npz(path)
    if "schema_version" not in data:
        raise TraceError(f"{path}: field 'schema_version' is missing: not a mozart trace (router logits need "
                         f"'logits' or 'layer_<n>' entries)")
    return _npz_trace(path, data)


# ------------------------------------------------------------------------------------------------- jsonl
def _record_error(path: Path, line: int, message: str) -> TraceError:
    return TraceError(f"{path}: line {line}: {message}")


def _is_int(v) -> bool:
    return type(v) is int  # JSON true/false parse to bool, which must not count as 0/1


def _pack(path: Path, experts: list, weights: list, lines, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A block of parsed records as int64/float64 ``[rows, k]`` arrays; ids beyond int64 are named."""
    try:
        return (np.array(experts, dtype=np.int64).reshape(-1, k or len(experts[0])),
                np.array(weights, dtype=np.float64).reshape(-1, k or len(weights[0])))
    except OverflowError:
        row = next(i for i, ex in enumerate(experts) if any(abs(v) >= 2**63 for v in ex))
        raise _record_error(path, lines[row], f"field 'topk_experts': expert id must be a 64-bit integer, not "
                            f"{max(experts[row], key=abs)}") from None


def read_jsonl(path: str | Path, *, num_experts: int | None = None, progress: Progress = None) -> tuple[Trace, dict]:
    """Read a JSON Lines trace (see the module docstring); returns the trace and ``{"format", "layer_ids"}``.

    Parameters
    ----------
    num_experts : int, optional
        Experts per layer; default: the records' ``num_experts`` field, else the largest id + 1.
    progress : callable, optional
        Called as ``progress(bytes_read, file_size)`` now and then.
    """
    path = Path(path)
    size = path.stat().st_size
    layers, tokens = array("q"), array("q")  # compact: one 8-byte slot per record
    experts: list[list[int]] = []    # the current block of records, as parsed
    weights: list[list[float]] = []
    blocks: list[tuple[np.ndarray, np.ndarray]] = []  # earlier blocks as arrays: a tenth of the memory
    lines = array("q")
    declared: tuple[int, int] | None = None  # (num_experts, line)
    has_token: bool | None = None
    k = None
    done = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            done += len(raw)
            if progress and number % 200_000 == 0:
                progress(done, size)
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if not raw.endswith(b"\n"):
                    raise _record_error(path, number, "truncated record (the file ends in the middle of a "
                                        "line)") from None
                raise _record_error(path, number, f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
            if not isinstance(rec, dict):
                raise _record_error(path, number, f"a record must be a JSON object, not {type(rec).__name__}")
            for name in ("layer", "topk_experts", "topk_weights"):
                if name not in rec:
                    raise _record_error(path, number, f"field {name!r} is missing")
            layer, ex, w = rec["layer"], rec["topk_experts"], rec["topk_weights"]
            if not _is_int(layer) or not 0 <= layer < _MAX_ID:
                raise _record_error(path, number, f"field 'layer' must be a non-negative integer below {_MAX_ID}, "
                                    f"not {layer!r}")
            if not isinstance(ex, list) or not ex or not all(_is_int(v) for v in ex):
                raise _record_error(path, number, f"field 'topk_experts' must be a non-empty list of integers, "
                                    f"not {ex!r}")
            if k is None:
                k = len(ex)
            if len(ex) != k:
                raise _record_error(path, number, f"field 'topk_experts' must have {k} entries like the first "
                                    f"record, not {len(ex)}")
            if not isinstance(w, list) or not all(type(v) in (int, float) for v in w):
                raise _record_error(path, number, f"field 'topk_weights' must be a list of numbers, not {w!r}")
            if len(w) != k:
                raise _record_error(path, number, f"field 'topk_weights' must have {k} entries like "
                                    f"'topk_experts', not {len(w)}")
            if has_token is None:
                has_token = "token" in rec
            if ("token" in rec) != has_token:
                raise _record_error(path, number, "field 'token' is " + ("given" if has_token is False else "missing")
                                    + f" but line {lines[0]} " + ("lacks" if has_token is False else "has")
                                    + " it: give it on every record or on none")
            if has_token:
                if not _is_int(rec["token"]) or not 0 <= rec["token"] < _MAX_ID:
                    raise _record_error(path, number, f"field 'token' must be a non-negative integer below "
                                        f"{_MAX_ID}, not {rec['token']!r}")
                tokens.append(rec["token"])
            if "num_experts" in rec:
                n = rec["num_experts"]
                if not _is_int(n) or n < 1:
                    raise _record_error(path, number, f"field 'num_experts' must be a positive integer, not {n!r}")
                if num_experts is not None and n != num_experts:
                    raise _record_error(path, number, f"field 'num_experts' must be {num_experts} (expected), not {n}")
                if declared is not None and n != declared[0]:
                    raise _record_error(path, number, f"field 'num_experts' must be {declared[0]} as on line "
                                        f"{declared[1]}, not {n}")
                declared = (n, number)
            layers.append(layer)
            experts.append(ex)
            weights.append(w)
            if len(experts) == _JSONL_BLOCK:
                blocks.append(_pack(path, experts, weights, lines[-len(experts):]))
                experts, weights = [], []
            lines.append(number)
    if progress:
        progress(size, size)
    if not layers:
        raise TraceError(f"{path}: no records: a JSON Lines trace needs one record per token and layer")
    line_of = np.frombuffer(lines, dtype=np.int64)
    blocks.append(_pack(path, experts, weights, lines[len(lines) - len(experts):], k))
    ex_arr = np.concatenate([b[0] for b in blocks])
    w_arr = np.concatenate([b[1] for b in blocks])
    del blocks, experts, weights
    if num_experts is None:
        num_experts = declared[0] if declared else int(max(ex_arr.max(), 0)) + 1
    _check_rows(path, ex_arr, w_arr, num_experts, lambda r: f"line {line_of[r]}", ("topk_experts", "topk_weights"))
    layer_arr = np.frombuffer(layers, dtype=np.int64)
    ids, layer_index, counts = np.unique(layer_arr, return_inverse=True, return_counts=True)
    if (counts != counts[0]).any():
        bad = int(np.argmax(counts != counts[0]))
        raise TraceError(f"{path}: line {line_of[np.argmax(layer_index == bad)]}: field 'layer': layer {ids[bad]} "
                         f"has {counts[bad]} records but layer {ids[0]} has {counts[0]}: every layer must route "
                         f"the same tokens (ragged layers)")
    per_layer = int(counts[0])
    if tokens:
        token_arr = np.frombuffer(tokens, dtype=np.int64)
        order = np.lexsort((token_arr, layer_index))
        sorted_tokens = token_arr[order]
        expected = np.tile(np.arange(per_layer), len(ids))
        if not np.array_equal(sorted_tokens, expected):
            pos = int(np.argmax(sorted_tokens != expected))
            r = int(order[pos])
            problem = ("appears twice" if pos and sorted_tokens[pos] == sorted_tokens[pos - 1]
                       else f"is out of range (layers have {per_layer} tokens)")
            raise _record_error(path, int(line_of[r]), f"field 'token': token {token_arr[r]} of layer "
                                f"{layer_arr[r]} {problem}")
    else:
        order = np.argsort(layer_index, kind="stable")  # tokens in order of appearance within each layer
    shape = (len(ids), per_layer, k)
    trace = Trace(ex_arr[order].reshape(shape).astype(np.int32), w_arr[order].reshape(shape).astype(np.float32),
                  num_experts, str(path))
    return trace, {"format": "jsonl", "layer_ids": ids.tolist(), "meta": {}, "origin": str(path)}


# ------------------------------------------------------------------------------------------------ logits
def route_logits(logits: np.ndarray, top_k: int, *, renormalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """docs/paper.md's routing ``R(x) = topk(softmax(g(x)), k)`` of router logits ``[tokens, experts]``.

    Returns
    -------
    experts : int32 ``[tokens, top_k]``
        The ``top_k`` largest logits, highest first; equal logits go to the lower expert id.
    weights : float32 ``[tokens, top_k]``
        Their softmax probabilities over all experts (computed in float64, shifted by the row maximum), divided
        by their sum if ``renormalize``.
    """
    logits = np.asarray(logits)
    tokens, experts = logits.shape
    out_e = np.empty((tokens, top_k), dtype=np.int32)
    out_w = np.empty((tokens, top_k), dtype=np.float32)
    for start in range(0, tokens, _ROUTE_CHUNK):
        x = logits[start:start + _ROUTE_CHUNK].astype(np.float64)
        top = np.argsort(-x, axis=1, kind="stable")[:, :top_k]  # stable: ties to the lower id
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        gates = np.take_along_axis(x, top, axis=1) / x.sum(axis=1, keepdims=True)
        if renormalize:
            gates /= gates.sum(axis=1, keepdims=True)
        out_e[start:start + len(x)], out_w[start:start + len(x)] = top, gates
    return out_e, out_w


def _logit_layers(path: Path, data: dict) -> tuple[list[np.ndarray], list[int], list[str]]:
    """The per-layer ``[T, E]`` logit arrays of a logits file, their layer ids and field names."""
    if "logits" in data:
        arr = data["logits"]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise TraceError(f"{path}: field 'logits' must be a [tokens, experts] or [layers, tokens, experts] "
                             f"array, not of shape {arr.shape}")
        return list(arr), list(range(len(arr))), ["logits"] * len(arr)
    keyed = sorted((int(m.group(1)), name) for name in data if (m := _LAYER_KEY.match(name)))
    if not keyed:
        raise TraceError(f"{path}: field 'logits' is missing: router logits need a 'logits' entry or "
                         f"'layer_<n>' entries (a mozart trace needs 'schema_version'); found "
                         f"{sorted(data) or 'nothing'}")
    arrays = [data[name] for _, name in keyed]
    for (_, name), arr in zip(keyed, arrays):
        if arr.ndim != 2:
            raise TraceError(f"{path}: field {name!r} must be a [tokens, experts] array, not of shape {arr.shape}")
    return arrays, [i for i, _ in keyed], [name for _, name in keyed]


def read_logits(path: str | Path, *, top_k: int | None = None, renormalize: bool = False,
                progress: Progress = None) -> tuple[Trace, dict]:
    """Read raw router logits (``.npy`` or ``.npz``) and route them with :func:`route_logits`.

    ``top_k`` defaults to the file's ``top_k`` entry; one of the two is required.
    """
    path = Path(path)
    if path.suffix == ".npy":
        try:
            data = {"logits": np.load(path, allow_pickle=False)}
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (EOFError, OSError, ValueError):  # numpy's message may advise unpickling: never for a trace
            raise TraceError(f"{path}: not a trace: not a readable .npy array (truncated, corrupt or another "
                             f"kind of file)") from None
    else:
        data = _open_npz(path)
    return _logits_trace(path, data, top_k, renormalize, progress)


def _logits_trace(path: Path, data: dict, top_k: int | None, renormalize: bool,
                  progress: Progress) -> tuple[Trace, dict]:
    arrays, ids, names = _logit_layers(path, data)
    if top_k is None:
        if "top_k" not in data:
            raise TraceError(f"{path}: top-k is needed to route router logits: pass it (--top-k) or store a "
                             f"'top_k' entry")
        top_k = _scalar_int(path, data, "top_k")
    tokens, experts = arrays[0].shape
    for name, arr in zip(names, arrays):
        if arr.shape[0] != tokens:
            raise TraceError(f"{path}: field {name!r} has {arr.shape[0]} tokens but {names[0]!r} has {tokens}: "
                             f"every layer must route the same tokens (ragged layers)")
        if arr.shape[1] != experts:
            raise TraceError(f"{path}: field {name!r} has {arr.shape[1]} experts but {names[0]!r} has {experts}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TraceError(f"{path}: field {name!r} must hold numbers, not {arr.dtype}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= experts:
        raise TraceError(f"{path}: top-k must be an integer in 1..{experts} (the experts), not {top_k!r}")
    out_e = np.empty((len(arrays), tokens, top_k), dtype=np.int32)
    out_w = np.empty((len(arrays), tokens, top_k), dtype=np.float32)
    for layer, (name, arr) in enumerate(zip(names, arrays)):
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            t = int(np.argmin(finite))
            value = next(float(v) for v in arr[t] if not np.isfinite(v))
            raise TraceError(f"{path}: layer {ids[layer]} token {t}: field {name!r}: logits must be finite, "
                             f"not {value!r}")
        out_e[layer], out_w[layer] = route_logits(arr, int(top_k), renormalize=renormalize)
        if progress:
            progress(layer + 1, len(arrays))
    trace = Trace(out_e, out_w, experts, str(path))
    return trace, {"format": "logits", "layer_ids": ids, "meta": {"top_k": int(top_k), "renormalize": renormalize},
                   "origin": str(path)}


# ------------------------------------------------------------------------------------------------ dispatch
def load_trace_with_meta(path: str | Path, *, num_experts: int | None = None, top_k: int | None = None,
                         renormalize: bool = False, progress: Progress = None) -> tuple[Trace, dict]:
    """Read any supported trace file; returns the trace and a dict with ``format``, ``layer_ids``, ``meta``.

    ``.jsonl`` is JSON Lines; ``.npy`` is router logits; ``.npz`` is a mozart trace if it has
    ``schema_version``, else router logits. ``num_experts`` applies to JSON Lines, ``top_k`` and
    ``renormalize`` to logits.
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace file must be an existing file, not {str(path)!r}")
    if path.suffix == ".jsonl":
        trace, info = read_jsonl(path, num_experts=num_experts, progress=progress)
    elif path.suffix == ".npy":
        trace, info = read_logits(path, top_k=top_k, renormalize=renormalize, progress=progress)
    elif path.suffix == ".npz":
        data = _open_npz(path)
        if "schema_version" in data:
            trace, info = _npz_trace(path, data)
        else:
            trace, info = _logits_trace(path, data, top_k, renormalize, progress)
    else:
        raise TraceError(f"{path}: a trace file name must end in .npz, .jsonl or .npy, not "
                         f"{path.suffix or 'nothing'!r}")
    if num_experts is not None and trace.num_experts != num_experts:
        raise TraceError(f"{path}: the trace has {trace.num_experts} experts, not the {num_experts} expected")
    return trace, info


def load_trace(path: str | Path, **options) -> Trace:
    """Read any supported trace file (see :func:`load_trace_with_meta` for the options)."""
    return load_trace_with_meta(path, **options)[0]
