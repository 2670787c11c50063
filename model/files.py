"""Output files written the way users expect: checked before any work, created atomically, usual permissions.

:func:`check_output_file` and :func:`check_output_folder` run before a command starts its computation: an
output that exists (unless overwriting was asked for), sits under a file, or lies in a folder that cannot be
written is a one-line :class:`~mozart.model.errors.MozartError` naming the option and the path the user
gave. Missing folders are not created by the checks (a failing run leaves nothing behind); :func:`atomic_write`
creates them when it writes.

:func:`atomic_write` writes a temporary file next to the target and renames it over the target, so a reader
never sees half a file and an interrupted write leaves nothing; the file gets the permissions ``open()``
would give it (0666 less the umask). An error while writing names the target, never the temporary file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import MozartError

__all__ = ["atomic_write", "check_output_file", "check_output_folder"]


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_place(folder: Path, option: str, given: str) -> None:
    """``folder`` exists and takes new files, or can be created inside a folder that does."""
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        raise MozartError(f"{option} must be inside a folder, not under the file {str(existing)!r} ({given!r})")
    # A probe file, not os.access: root passes os.access on a read-only mount, and the probe tells the truth.
    probe = existing / f".mozart-probe-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise MozartError(f"{option} must be in a writable folder, not {given!r} ({existing}: "
                          f"{exc.strerror.lower() if exc.strerror else exc})") from None


def check_output_file(path: str | Path, option: str, *, force: bool = False) -> Path:
    """Refuse an output file that exists (unless ``force``), is a folder, or cannot be created; returns it."""
    given = str(path)
    path = Path(path)
    if path.is_dir():
        raise MozartError(f"{option} must be a file name, not the folder {given!r}")
    if path.exists() and not force:
        raise MozartError(f"{option} must not be an existing file (--force overwrites it), not {given!r}")
    _check_writable_place(path.parent, option, given)
    return path


def check_output_folder(path: str | Path, option: str) -> Path:
    """Refuse an output folder that is a file or cannot be created or written; returns it (not created)."""
    given = str(path)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MozartError(f"{option} must be a folder, not the existing file {given!r}")
    _check_writable_place(path, option, given)
    return path


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` about ``path`` (what the user asked for), not about a temporary file next to it."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(path))


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Run ``write(binary_file)`` on a temporary file next to ``path``, then rename it over ``path``.

    The folder is created if missing. The file's mode is 0666 less the umask, as ``open()`` gives."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
