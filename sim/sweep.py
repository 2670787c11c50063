"""The sweep engine: expand a spec into points, evaluate them on a backend, write one row per point.

Points
    :func:`expand` makes the points of a :class:`~mozart.model.sweep_spec.SweepSpec` in a fixed order: configs,
    then the axes (the first axis outermost), then replicates, methods and variants (innermost, so that
    neighbouring points share their trace and placement). Each point has an ``index`` (its position) and a
    ``point_id`` (a hash of its inputs), and the seeds of its trace and placement, derived from the spec seed
    and the replicate only: every point of a replicate sees the same random draws (common random numbers),
    so two rows differ because of their inputs, never because of noise, whichever worker ran them.
Evaluation
    :func:`~mozart.sim.sweep_eval.evaluate_point` evaluates one point with the performance model and returns
    its outputs (in its own module, :mod:`mozart.sim.sweep_eval`, so tests can inject another). The engine
    wraps it so that an exception becomes the point's row (``status`` "invalid" for a
    :class:`~mozart.model.errors.MozartError`, such as a config combination the wafer rejects, "error" for
    anything else) and the sweep goes on.
Backends
    ``workers=1``: this process. ``workers=N``: a local process pool (:mod:`concurrent.futures`, forkserver).
    ``cluster="local"``: a Dask ``LocalCluster`` on 127.0.0.1. ``cluster="tcp://host:port"``: an existing Dask
    scheduler. Points travel in small chunks of consecutive indices; the rows do not depend on the backend,
    the worker count or the chunking.
Output and resume
    Finished rows are appended, chunk by chunk, to a journal next to the output (``OUT.partial``, JSON lines
    after a header naming the spec's digest). When every point is done the rows are sorted by index and
    written to ``OUT`` atomically (a temporary file renamed over it), then the journal is removed. A rerun
    of an interrupted sweep reads the journal and computes only the missing points; a torn last line (a kill
    mid-write) is dropped. Every row goes through the journal's JSON, so a resumed run writes the same file,
    byte for byte, as an uninterrupted one. ``OUT`` is Parquet (pyarrow) or CSV.
"""

from __future__ import annotations

import csv
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from mozart.model.errors import MozartError
from mozart.model.sweep_spec import SweepError, SweepSpec

from mozart.model.files import check_output_folder

from .sweep_eval import code_fingerprint, evaluate_point

__all__ = ["SweepError", "expand", "evaluate_point", "run_sweep", "SweepResult", "progress_bar", "read_rows",
           "derive_seed", "code_fingerprint", "same_computations", "INPUT_COLUMNS", "STATUS_COLUMNS",
           "STEP_TIME_COLUMN"]

#: The input columns every row starts with (the spec's axis keys follow ``config``).
INPUT_COLUMNS = ("index", "point_id", "config", "replicate", "method", "variant", "trace", "trace_seed",
                 "placement_seed")
STATUS_COLUMNS = ("status", "error")
#: The output column of the step time (what the plots and the Pareto front minimise).
STEP_TIME_COLUMN = "step_time_s"
_JOURNAL_FORMAT = 1
_CLUSTER_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/]+:\d{1,5}$")

Evaluator = Callable[[dict], dict]


# --------------------------------------------------------------------------------------------------- points

def derive_seed(seed: int, *purpose: Any) -> int:
    """A 63-bit seed from ``seed`` and a purpose (stable across processes, machines and Python versions)."""
    digest = hashlib.sha256(json.dumps([seed, *purpose]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def expand(spec: SweepSpec) -> list[dict]:
    """The points of ``spec``, in sweep order.

    Returns
    -------
    list of dict
        Each point holds ``index``, ``point_id``, ``config`` (the base config's name), ``base`` (its nested
        dict), ``settings`` (axis key -> value), ``replicate``, ``method``, ``variant``, ``trace`` (the
        :class:`~mozart.model.sweep_spec.TraceSource` fields), ``trace_seed`` and ``placement_seed``.
    """
    keys = [a.key for a in spec.axes]
    trace = {"file": spec.trace.file, "sha256": spec.trace.sha256, "tokens": spec.trace.tokens,
             "structured": spec.trace.structured, "label": spec.trace.label}
    seeds = [(derive_seed(spec.seed, "trace", r), derive_seed(spec.seed, "placement", r))
             for r in range(spec.replicates)]
    points = []
    for name, base in spec.configs:
        base_hash = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()
        for combo in itertools.product(*(a.values for a in spec.axes)):
            settings = dict(zip(keys, combo))
            for replicate, method, variant in itertools.product(range(spec.replicates), spec.methods,
                                                                  spec.variants):
                trace_seed, placement_seed = seeds[replicate]
                identity = [base_hash, sorted(settings.items()), replicate, method, variant,
                            [trace["sha256"], trace["tokens"], trace["structured"]], spec.seed]
                points.append({
                    "index": len(points),
                    "point_id": hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16],
                    "config": name, "base": base, "settings": settings, "replicate": replicate,
                    "method": method, "variant": variant, "trace": trace,
                    "trace_seed": trace_seed, "placement_seed": placement_seed,
                })
    return points


def same_computations(points: list[dict], same_variants: dict[str, str]) -> dict[int, int]:
    """Points that are the same computation as another point of the sweep: ``{index: twin's index}``.

    ``same_variants`` maps a variant to the one it equals on the same inputs (the evaluator declares it:
    variant C is B on a clustered placement, and in a sweep the placement is the point's method, so C with
    method m is B with method m). A point is aliased only when its twin is in the sweep too.
    """
    def key(point: dict, variant: str) -> str:
        return json.dumps([point["config"], sorted(point["settings"].items()), point["replicate"],
                           point["method"], variant])

    index = {key(p, p["variant"]): p["index"] for p in points}
    twins = {}
    for p in points:
        canonical = same_variants.get(p["variant"])
        if canonical is not None and key(p, canonical) in index:
            twins[p["index"]] = index[key(p, canonical)]
    return twins


def _copied_row(point: dict, twin: dict, twin_row: dict) -> dict:
    """``point``'s row: its own inputs, and the status and outputs its twin computed."""
    row = _input_row(point)
    twin_inputs = set(_input_row(twin))
    row.update({k: v for k, v in twin_row.items() if k not in twin_inputs})
    return row


def _input_row(point: dict) -> dict:
    """The input columns of a point's row: index, id, config, the axis values, then the rest."""
    row = {"index": point["index"], "point_id": point["point_id"], "config": point["config"]}
    row.update(point["settings"])
    row.update(replicate=point["replicate"], method=point["method"], variant=point["variant"],
               trace=point["trace"]["label"], trace_seed=point["trace_seed"],
               placement_seed=point["placement_seed"])
    return row


# ----------------------------------------------------------------------------------------------- evaluation

def _scalar(key: str, value: Any) -> Any:
    """A JSON- and Parquet-friendly scalar; numpy scalars become Python ones."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"output {key!r} must be a scalar (bool, int, float or str), not {type(value).__name__}")


def _evaluate_row(evaluator: Evaluator, point: dict) -> dict:
    row = _input_row(point)
    try:
        outputs = evaluator(point)
        clash = sorted(set(outputs) & (set(row) | set(STATUS_COLUMNS)))
        if clash:
            raise TypeError(f"outputs must not reuse input column names, not {clash!r}")
        values = {key: _scalar(key, value) for key, value in outputs.items()}
    except Exception as exc:  # noqa: BLE001 (a failing point is a result; the sweep goes on)
        row.update(status="invalid" if isinstance(exc, MozartError) else "error", error=_one_line(exc))
        return row
    row.update(status="ok", error=None)
    row.update(values)
    return row


def _one_line(exc: BaseException) -> str:
    """``Type: message``; for an unexpected error also where it was raised (a bug needs its place)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, MozartError):
        return text
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {text}{where}"


def _run_chunk(evaluator: Evaluator, points: list[dict]) -> tuple[list[dict], float]:
    """One backend task: the rows of consecutive points, and the CPU seconds their evaluation took.

    Module level, so that every backend can pickle it. The CPU time is reported, never put in a row.
    """
    cpu = time.process_time()
    rows = [_evaluate_row(evaluator, point) for point in points]
    return rows, time.process_time() - cpu


# ------------------------------------------------------------------------------------------------- progress

def progress_bar(total: int, done: int, stream: TextIO | None, label: str):
    """A tqdm bar of the sweep's points on ``stream``, drawn only when it is a terminal (a log stays clean);
    ``done`` points were finished by an earlier run (resumed), so the rate counts only this run's."""
    from tqdm import tqdm  # noqa: PLC0415
    return tqdm(total=total, initial=done, desc=label, unit="point", file=stream,
                disable=stream is None or not getattr(stream, "isatty", lambda: False)(), dynamic_ncols=True)


# ------------------------------------------------------------------------------------------------- backends

#: What :func:`evaluate_point` imports: the local pool's workers start with these already loaded.
_PRELOAD = ("mozart.model.perf", "mozart.model.placers", "mozart.model.synth", "mozart.sim.sweep",
            "mozart.sim.sweep_eval")


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; only the parent handles it (workers would print tracebacks).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _SerialBackend:
    """Runs the chunks in this process, in order."""

    name = "this process"

    def __init__(self, evaluator: Evaluator) -> None:
        import importlib  # noqa: PLC0415
        self.evaluator = evaluator
        for module in _PRELOAD:  # as the pool's workers do: imports are start-up, not the first point's work
            importlib.import_module(module)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def results(self, chunks: Iterable[list[dict]]) -> Iterator[tuple[list[dict], float]]:
        for chunk in chunks:
            yield _run_chunk(self.evaluator, chunk)


class _PoolBackend:
    """A local process pool; at most ``2 x workers`` chunks are queued, so huge sweeps stay small in memory."""

    def __init__(self, evaluator: Evaluator, workers: int) -> None:
        import multiprocessing  # noqa: PLC0415
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415
        self.task = functools.partial(_run_chunk, evaluator)
        self.workers = workers
        self.name = f"local process pool of {workers} workers"
        # forkserver, not fork: workers never inherit this process's threads or state. The server imports
        # the model once and forks every worker from it; spawned workers would each import it again (about
        # 3 s on two busy cores).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*_PRELOAD, getattr(evaluator, "__module__", "mozart.sim.sweep")])
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def results(self, chunks: Iterable[list[dict]]) -> Iterator[tuple[list[dict], float]]:
        from concurrent.futures import FIRST_COMPLETED, wait  # noqa: PLC0415
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415
        chunks = iter(chunks)
        pending = {self.pool.submit(self.task, c) for c in itertools.islice(chunks, 2 * self.workers)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    raise SweepError(f"a worker process died ({exc}); the finished points are saved: rerun the "
                                     "same sweep to resume") from None
                yield result
                pending |= {self.pool.submit(self.task, c) for c in itertools.islice(chunks, 1)}


class _DaskBackend:
    """Dask: a ``LocalCluster`` on loopback (``"local"``) or the scheduler at a ``tcp://`` address."""

    def __init__(self, evaluator: Evaluator, cluster: str, workers: int, timeout: float) -> None:
        try:
            from dask.distributed import Client, LocalCluster  # noqa: PLC0415
        except ImportError:
            raise SweepError("--cluster needs Dask's distributed scheduler, which is not installed: "
                             "pip install 'mozart-wafer[cluster]'") from None
        self.task = functools.partial(_run_chunk, evaluator)
        self.cluster = None
        if cluster == "local":
            import logging  # noqa: PLC0415
            import warnings  # noqa: PLC0415
            # Loopback only, no dashboard, one thread per worker process. The scheduler's small HTTP server
            # (health checks) still listens on 127.0.0.1, on another port if 8787 is taken: no need to warn.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.name = f"Dask LocalCluster of {workers} workers on 127.0.0.1"
        else:
            try:
                self.client = Client(cluster, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise SweepError(f"cannot reach the Dask scheduler at {cluster}: {exc}") from None
            try:  # a scheduler without workers would take the points and never run them
                self.client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                self.__exit__()
                raise SweepError(f"the Dask scheduler at {cluster} must have workers, not none after {timeout:g} s; "
                                 f"start some with: dask worker {cluster}") from None
            workers = len(self.client.scheduler_info().get("workers", {}))
            self.name = f"Dask cluster at {cluster} ({workers} workers)"
        self.slots = max(1, sum(self.client.nthreads().values()))
        self._check_workers(cluster)

    def _check_workers(self, cluster: str) -> None:
        """Every worker must run this code: rows computed by another version would differ silently."""
        try:
            seen = self.client.run(_worker_fingerprint)
        except Exception as exc:  # noqa: BLE001 (e.g. mozart is not installed on a worker)
            self.__exit__()
            raise SweepError(f"the Dask workers at {cluster} must be able to run mozart.sim.sweep, but one "
                             f"failed: {type(exc).__name__}: {exc}") from None
        other = sorted(worker for worker, fingerprint in seen.items() if fingerprint != code_fingerprint())
        if other:
            self.__exit__()
            raise SweepError(f"the Dask workers must run the same mozart code as this machine (fingerprint "
                             f"{code_fingerprint()}), not other code: {', '.join(other)}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def results(self, chunks: Iterable[list[dict]]) -> Iterator[tuple[list[dict], float]]:
        from dask.distributed import as_completed  # noqa: PLC0415
        chunks = iter(chunks)

        def submit(chunk):  # pure=False: equal chunks of two sweeps must not share a cached result
            return self.client.submit(self.task, chunk, pure=False)

        from distributed import KilledWorker  # noqa: PLC0415
        running = as_completed([submit(c) for c in itertools.islice(chunks, 2 * self.slots)])
        for future in running:
            try:
                result = future.result()
            except KilledWorker as exc:
                raise SweepError(f"Dask workers died running {exc.task!r}; the finished points are saved: rerun "
                                 "the same sweep to resume") from None
            yield result
            for chunk in itertools.islice(chunks, 1):
                running.add(submit(chunk))


def _worker_fingerprint() -> str:
    # Looked up by name on the worker: the worker's own code, whatever the driver's module holds.
    return code_fingerprint()


def _check_backend(workers: int | None, cluster: str | None) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepError(f"--workers must be a positive integer, not {workers!r}")
    if cluster is not None and cluster != "local" and not _CLUSTER_ADDRESS.match(cluster):
        raise SweepError(f"--cluster must be 'local' or a Dask scheduler address tcp://HOST:PORT, not {cluster!r}")
    if cluster is not None and cluster != "local" and workers is not None:
        raise SweepError(f"--workers must not be given with --cluster {cluster}: the cluster's own workers run "
                         f"the points (--workers sizes the local pool or --cluster local), not {workers!r}")


def _backend(evaluator: Evaluator, workers: int | None, cluster: str | None, timeout: float):
    """Start the backend that :func:`_check_backend` accepted."""
    if cluster is None:
        workers = workers or _cpu_count()
        return _SerialBackend(evaluator) if workers == 1 else _PoolBackend(evaluator, workers)
    return _DaskBackend(evaluator, cluster, workers or _cpu_count(), timeout)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _chunks(points: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(points), size):
        yield points[start:start + size]


# ------------------------------------------------------------------------------------------ journal, output

class _Journal:
    """The append-only JSON-lines file of finished rows, ``OUT.partial``; locked while a sweep writes it.

    Line 1 is a header (format, spec name and digest, point count); every further line is one row.
    """

    def __init__(self, path: Path, spec: SweepSpec, total: int) -> None:
        self.path = path
        self.header = {"mozart_sweep": _JOURNAL_FORMAT, "spec": spec.name, "digest": spec.digest, "points": total,
                       "code": code_fingerprint()}
        self.file = open(path, "a+b")  # noqa: SIM115 (held open, and locked, for the whole sweep)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise SweepError(f"{path} is locked: another mozart sweep is writing this output; wait for it or "
                             "choose another --out") from None
        self._last_sync = time.monotonic()
        self.rows = self._read()

    def _read(self) -> dict[int, dict]:
        self.file.seek(0)
        data = self.file.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # the text after the last newline was cut off mid-write: drop it
            self.file.truncate(end)
        lines = data[:end].decode().splitlines()
        if not lines:
            self._write([self.header])
            return {}
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("mozart_sweep") != _JOURNAL_FORMAT:
            raise SweepError(f"{self.path} must be a mozart sweep journal, not a file of another kind; move it "
                             "away or choose another --out")
        if header.get("digest") != self.header["digest"]:
            raise SweepError(f"{self.path} holds an interrupted run of a different spec ({header.get('spec')!r}, "
                             f"{header.get('points')} points); delete it to start this one, or rerun that spec")
        if header.get("code") != self.header["code"]:
            raise SweepError(f"{self.path} was started by other model code (fingerprint {header.get('code')}, now "
                             f"{self.header['code']}): its rows would not match new ones; delete it to start over, "
                             "or resume with the code it was started with")
        rows: dict[int, dict] = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                rows.setdefault(row["index"], row)
            except (json.JSONDecodeError, TypeError, KeyError):
                raise SweepError(f"{self.path}: line {number} must be a JSON row with an index, not {line[:60]!r}; "
                                 "the journal is damaged: delete it to start over") from None
        return rows

    def append(self, rows: list[dict]) -> None:
        """Record finished rows (flushed to the OS at once, so a killed process loses nothing it wrote)."""
        self._write(rows)
        for row in rows:
            self.rows.setdefault(row["index"], row)

    def _write(self, items: list[dict]) -> None:
        self.file.write("".join(json.dumps(item) + "\n" for item in items).encode())
        self.file.flush()
        if time.monotonic() - self._last_sync > 1.0:  # survive a power cut too, at little cost
            os.fsync(self.file.fileno())
            self._last_sync = time.monotonic()

    def sorted_rows(self) -> list[dict]:
        """The rows as the journal's JSON gives them back (so fresh and resumed rows are alike), by index."""
        return [json.loads(json.dumps(self.rows[i])) for i in sorted(self.rows)]

    def close(self, remove: bool) -> None:
        os.fsync(self.file.fileno())
        self.file.close()
        if remove:
            self.path.unlink()


def _columns(rows: list[dict]) -> list[str]:
    """Inputs, status and error (every row has them, in this order), then the outputs by first appearance."""
    first = list(rows[0]) if rows else [*INPUT_COLUMNS, *STATUS_COLUMNS]
    inputs = first[:first.index("status")]
    outputs: dict[str, None] = {}
    for row in rows:
        outputs.update(dict.fromkeys(k for k in row if k not in inputs and k not in STATUS_COLUMNS))
    return inputs + list(STATUS_COLUMNS) + list(outputs)


def _output_format(out: Path, note: TextIO | None) -> tuple[Path, str]:
    if out.is_dir():
        raise SweepError(f"--out must be a file name, not the folder {str(out)!r}")
    check_output_folder(out.parent, "--out's folder")  # created when the results are written
    if out.suffix == ".csv":
        return out, "csv"
    if out.suffix != ".parquet":
        raise SweepError(f"--out must end in .parquet or .csv, not {str(out)!r}")
    try:
        import pyarrow  # noqa: F401, PLC0415
    except ImportError:
        csv_path = out.with_suffix(".csv")
        if note is not None:
            note.write(f"note: pyarrow is not installed, so the results go to {csv_path} "
                       "(pip install 'mozart-wafer[parquet]' for Parquet)\n")
        return csv_path, "csv"
    return out, "parquet"


def _arrow_type(values: list):
    import pyarrow as pa  # noqa: PLC0415
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _write_table(rows: list[dict], columns: list[str], path: Path, fmt: str) -> None:
    """Write the rows to ``path`` atomically: a temporary file in the same folder, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.parquet as pq  # noqa: PLC0415
            arrays = {}
            for name in columns:
                values = [row.get(name) for row in rows]
                kind = _arrow_type(values)
                if kind == pa.string():
                    values = [None if v is None else str(v) for v in values]
                arrays[name] = pa.array(values, type=kind)
            pq.write_table(pa.table(arrays), tmp)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                for row in rows:
                    writer.writerow(["" if row.get(c) is None else _csv_text(row[c]) for c in columns])
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _csv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a results file (Parquet or CSV; CSV cells are parsed back to numbers and booleans)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415
        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _csv_value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _csv_value(text: str) -> Any:
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _finished_ids(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415
        return pq.read_table(path, columns=["point_id"]).column("point_id").to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return [row.get("point_id") for row in csv.DictReader(f)]


# --------------------------------------------------------------------------------------------------- driver

@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Members
    -------
    path : Path
        The results file (CSV when Parquet was asked for but pyarrow is missing).
    points, computed, resumed, failed : int
        All points, those evaluated by this run, those taken from an earlier run, and those whose status is
        not "ok".
    same : int
        Points of this run that were the same computation as another point (see :func:`same_computations`):
        their rows are copies of that point's outputs, not computed twice.
    seconds : float
        Wall time of this run.
    cpu_seconds : float
        CPU time the workers spent evaluating this run's points (start-up and scheduling not included).
    backend : str
    """

    path: Path
    points: int
    computed: int
    resumed: int
    failed: int
    seconds: float
    cpu_seconds: float
    backend: str
    same: int = 0


def run_sweep(spec: SweepSpec, out: str | Path, *, workers: int | None = None, cluster: str | None = None,
              evaluator: Evaluator = evaluate_point, progress: TextIO | None | str = "stderr",
              chunk_size: int | None = None, connect_timeout: float = 10.0, force: bool = False) -> SweepResult:
    """Run (or resume, or find finished) the sweep of ``spec`` and write its results to ``out``.

    Parameters
    ----------
    spec : SweepSpec
    out : str or Path
        ``.parquet`` or ``.csv``.
    workers : int, optional
        Local processes (default: the usable cores); 1 runs in this process.
    cluster : str, optional
        ``"local"`` for a Dask LocalCluster on loopback, or a Dask scheduler address ``tcp://host:port``.
    evaluator : callable
        ``point -> outputs``; :func:`evaluate_point` (the performance model) unless a test injects another.
        It must be importable by the workers (a module-level function).
    progress : file, None or "stderr"
        Where the progress bar and notes go (default: ``sys.stderr`` when called).
    chunk_size : int, optional
        Points per backend task (default: about 16 tasks per worker, at most 16 points each).
    connect_timeout : float
        Seconds to wait for a remote Dask scheduler.
    force : bool
        Compute the sweep again and overwrite ``out`` even when it exists. Without it, an ``out`` holding this
        sweep's finished results is reported done, and any other existing file is refused.

    Raises
    ------
    SweepError
        A bad option, an unusable output or journal, or an unreachable cluster.
    """
    start = time.monotonic()
    progress = sys.stderr if progress == "stderr" else progress
    _check_backend(workers, cluster)
    out = Path(out)
    path, fmt = _output_format(out, progress)
    points = expand(spec)
    journal_path = path.with_name(path.name + ".partial")
    if path.exists() and not force:
        try:
            ids = _finished_ids(path)
        except Exception:  # noqa: BLE001 (any unreadable file: not this sweep's results)
            raise SweepError(f"--out must not be an existing file of other content (--force overwrites it), not "
                             f"{str(path)!r}") from None
        if ids == [p["point_id"] for p in points]:
            journal_path.unlink(missing_ok=True)  # a run killed after its rename, before removing its journal
            if progress is not None:
                progress.write(f"{path}: all {len(points)} points of this sweep are already done\n")
            failed = sum(1 for row in read_rows(path) if row.get("status") != "ok")
            return SweepResult(path, len(points), 0, len(points), failed, time.monotonic() - start, 0.0, "none")
        raise SweepError(f"--out must not be an existing file (--force overwrites it), not {str(path)!r}, which "
                         f"holds the results of another sweep ({len(ids)} rows, this spec has {len(points)} points)")
    path.parent.mkdir(parents=True, exist_ok=True)  # checked by _output_format; made only now, to run
    journal = _Journal(journal_path, spec, len(points))
    finished = False
    try:
        resumed = len(journal.rows)
        twins = same_computations(points, getattr(evaluator, "same_variants", {}))
        todo = [p for p in points if p["index"] not in journal.rows and p["index"] not in twins]
        with _backend(evaluator, workers, cluster, connect_timeout) as backend:
            bar = progress_bar(len(points), resumed, progress, label=f"sweep {spec.name}")
            slots = getattr(backend, "slots", getattr(backend, "workers", 1))
            size = chunk_size or max(1, min(16, math.ceil(len(todo) / (16 * slots))))
            cpu = 0.0
            for rows, chunk_cpu in backend.results(_chunks(todo, size)):
                journal.append(rows)
                bar.update(len(rows))
                cpu += chunk_cpu
            copies = [_copied_row(points[i], points[t], journal.rows[t]) for i, t in twins.items()
                      if i not in journal.rows]
            journal.append(copies)
            bar.update(len(copies))
        bar.close()
        rows = journal.sorted_rows()
        _write_table(rows, _columns(rows), path, fmt)
        finished = True
    except KeyboardInterrupt:
        if progress is not None:
            progress.write(f"\n{len(journal.rows)} of {len(points)} points are saved in {journal_path}; run the "
                           "same sweep again to resume\n")
        raise
    finally:
        journal.close(remove=finished or not journal.rows)  # a journal without rows has nothing to resume
    failed = sum(1 for row in rows if row["status"] != "ok")
    return SweepResult(path, len(points), len(todo), resumed, failed, time.monotonic() - start, cpu,
                       backend.name, len(copies))
