"""The one way lpm writes an output file: atomically, beside its target, with the usual permissions.

Every writer goes through :func:`atomic_path` (or the :func:`atomic_write_text` /
:func:`atomic_write_bytes` / :func:`atomic_write_json` shorthands):

* the data goes to a temporary file with a unique name in the target's folder (``mkstemp``), so two
  runs writing into one folder never collide, and the final rename stays on one file system;
* the temporary file is flushed to disk (``fsync``) and moved into place with :func:`os.replace`,
  so a reader sees the old file or the new one, never half of one;
* the file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` minus the umask),
  not ``mkstemp``'s private ``0o600``;
* on any error the temporary file is removed and the target is left as it was.

This module imports nothing from lpm, so any module may use it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "current_umask",
           "marked_incomplete", "file_sha256", "atomic_savefig", "file_in_the_way",
           "json_safe"]


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (not thread-safe, but immediately restored)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without an error, move it to
    ``path`` (fsync, umask-respecting mode, :func:`os.replace`); otherwise delete it.

    Example::

        with atomic_path(folder / "observables.parquet") as tmp:
            frame.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Inf) replaced by ``None``, recursively, so that
    it serialises as strict JSON (``null``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):  # float, numpy floats
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, payload: Any, *, indent: Optional[int] = 2,
                      sort_keys: bool = False, default=None) -> Path:
    """Write ``payload`` as strict JSON (non-finite floats become ``null``) atomically, with a final newline."""
    text = json.dumps(json_safe(payload), indent=indent, sort_keys=sort_keys, default=default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


@contextmanager
def marked_incomplete(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Mark ``folder`` as holding an unfinished ``what`` (e.g. a run) while its outputs are written.

    Outputs that belong together (a run's tables, plots and summary) are written one file at a time,
    each atomically; a crash between two of them would leave old and new files side by side. The
    marker ``INCOMPLETE-<what>`` (written atomically before the first output, naming the process and
    the start time) says so, and is removed only after the last output is in place; on an error it
    stays, with the error appended. Yields the folder (created if needed).
    """
    import datetime
    import traceback

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"INCOMPLETE-{what}"
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(marker, f"{what} outputs being written by process {os.getpid()} since {started}; "
                              f"files here may mix this {what} with an earlier one until this marker is gone\n")
    try:
        yield folder
    except BaseException as exc:
        atomic_write_text(marker, marker.read_text() + "stopped by: " +
                          "".join(traceback.format_exception_only(type(exc), exc)))
        raise
    marker.unlink()
    _fsync_dir(folder)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_savefig(figure: Any, path: str | os.PathLike, **options: Any) -> Path:
    """``figure.savefig(path, **options)`` through :func:`atomic_path`: a reader never sees half an
    image (the format comes from the suffix, since the temporary name has none)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", **options)
    return path


def file_in_the_way(path: str | os.PathLike) -> Optional[Path]:
    """The first existing ancestor of ``path`` that is a file, not a folder (so ``path`` can never be
    written), or ``None``: lets a long run check an output location before it starts."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
