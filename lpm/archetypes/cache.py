"""A disk cache of decisions, so each (backend, model, prompt, archetype, context) is asked once.

:class:`DecisionCache` is one SQLite file in WAL mode: several processes (a sweep's workers) and
threads can read and write it at once. Entries are keyed by the sha256 of (backend name, model,
prompt version, persona text, context text) and never overwritten (``INSERT OR IGNORE``: the first
answer wins, so a result does not depend on which worker finished first). ``export`` writes a sorted
JSON Lines file to publish a cache with a paper; ``import_`` merges one back.

:class:`CachedBackend` wraps any backend: it sends only the misses, deduplicated, and with an
``offline=True`` cache it never calls the backend and raises :class:`~lpm.errors.CacheMissError`
instead, which makes a published run reproducible without an LLM.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from lpm.archetypes.decision import Backend, Decision, Usage, parse_decision
from lpm.errors import BackendError, CacheMissError, ConfigError, DataFormatError, LPMError

__all__ = ["DecisionCache", "cache_key"]

#: Bump when the table layout changes; a file of another version is refused rather than misread.
_SCHEMA_VERSION = "1"
#: Rows per ``IN (...)`` query, below SQLite's historical limit of 999 bound variables.
_CHUNK = 500

_CREATE = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    persona TEXT NOT NULL,
    context TEXT NOT NULL,
    decision TEXT NOT NULL,
    reaction TEXT NOT NULL,
    created REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER
);
"""
_COLUMNS = ("key", "backend", "model", "prompt_version", "persona", "context", "decision", "reaction",
            "created", "prompt_tokens", "completion_tokens")
_INSERT = f"INSERT OR IGNORE INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def cache_key(backend: str, model: str, prompt_version: str, persona: str, context: str) -> str:
    """The sha256 hex digest that keys one decision (a JSON list, so no two field splits collide)."""
    payload = json.dumps([backend, model, prompt_version, persona, context], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _identity(backend: Backend) -> tuple[str, str, str]:
    return str(backend.name), str(backend.model), str(backend.prompt_version)


def _decision_json(decision: Decision) -> str:
    return json.dumps(decision.to_dict(), ensure_ascii=False, sort_keys=True)


def _file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file, ``None`` when it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _writable(path: Path) -> bool:
    """Whether SQLite can write the file: the file itself, and its folder (journal and WAL side files)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _switch_to_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put the database file in WAL mode, waiting up to ``timeout_s`` for other processes.

    Switching the journal mode needs an exclusive lock, and SQLite answers 'database is locked' at
    once, without its busy handler, when another process holds one (several processes opening a
    fresh cache at the same moment); so this retries with a growing pause until the deadline."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.25)


class DecisionCache:
    """Decisions on disk, in one SQLite file shared by processes and threads.

    Args:
        path: the SQLite file (created with its folder unless read-only).
        offline: the cache must answer everything: :class:`CachedBackend` raises
            :class:`~lpm.errors.CacheMissError` on a miss instead of calling its backend. An offline
            cache is opened read-only: it never writes, not even its schema row.
        read_only: the same as ``offline`` (a cache that cannot store new answers must not ask
            for them: they would be paid for and lost).
        timeout_s: how long a writer waits for another process's transaction before failing.

    A cache whose file or folder is not writable opens read-only (and so offline) by itself, and
    serves every decision it holds.

    If the file is deleted while the cache is open, the next write or :meth:`close` notices,
    recreates it and copies in every decision this connection still reads from the deleted file
    (SQLite keeps it open), with a warning: a run never silently loses its answers. Decisions other
    processes wrote into the deleted file after this one last wrote are recovered only by those
    processes. (Replacing the file under an open cache is not supported: SQLite would read the old
    file's WAL as the new file's.)

    Raises:
        CacheMissError: ``offline`` and the file does not exist.
        DataFormatError: the file is not a decision cache of this version.

    Open one ``DecisionCache`` per process (a connection must not cross ``fork``); within a process,
    threads share it.
    """

    def __init__(self, path: str | os.PathLike[str], *, offline: bool = False, read_only: bool = False,
                 timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self._lock = threading.RLock()  # one connection, serialised: sqlite3 objects are not thread-safe
        self._conn: sqlite3.Connection | None = None
        self.offline = self.read_only = bool(offline or read_only)
        self.reason = "opened offline" if self.offline else ""
        if self.offline and not self.path.exists():
            raise CacheMissError(f"Expected an existing decision cache at {self.path} in offline mode (got no such file)")
        if not self.offline and self.path.exists() and not _writable(self.path):
            self.offline = self.read_only = True
            self.reason = "its file or folder is not writable"
        if self.read_only:
            self._conn = self._open_read_only()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open_writable(self.path)
        self._identity = _file_identity(self.path)

    def _open_writable(self, path: Path) -> sqlite3.Connection:
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            # WAL: readers never block the writer and vice versa; NORMAL sync is durable across
            # process crashes in WAL mode and much faster than FULL.
            _switch_to_wal(conn, self.timeout_s)
            conn.execute("PRAGMA synchronous = NORMAL")
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _CREATE.split(";")):
                    cur.execute(statement)
                cur.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            self._check_version(conn)
        except sqlite3.OperationalError:  # locked past the timeout, unreadable folder: not a format problem
            if conn is not None:
                conn.close()
            raise
        except sqlite3.DatabaseError as exc:  # "file is not a database"
            conn.close()
            raise DataFormatError(f"Expected a decision cache (SQLite) at {path} (got {exc})") from exc
        except DataFormatError:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """``mode=ro`` reads the file and its WAL; where SQLite cannot create the WAL index next to
        it (a read-only folder), the file is opened as immutable, which needs no side files."""
        uri = self.path.resolve().as_uri()
        problem: Exception | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + query, uri=True, timeout=self.timeout_s, isolation_level=None,
                                   check_same_thread=False)
            try:
                self._check_version(conn)
                return conn
            except sqlite3.OperationalError as exc:  # no WAL index possible; "no such table" is caught below
                conn.close()
                problem = exc
            except (sqlite3.DatabaseError, DataFormatError) as exc:
                conn.close()
                if isinstance(exc, DataFormatError):
                    raise
                raise DataFormatError(f"Expected a decision cache (SQLite) at {self.path} (got {exc})") from exc
        raise ConfigError(f"Expected a decision cache at {self.path} that can be opened read-only (got {problem})")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise DataFormatError(f"Expected a decision cache at {self.path} (got a SQLite file without its "
                                  f"'meta' table)") from None
        version = row[0] if row else None
        if version != _SCHEMA_VERSION:
            raise DataFormatError(f"Expected a decision cache of schema version {_SCHEMA_VERSION} at {self.path} "
                                  f"(got version {version})")

    def _recover_if_deleted(self) -> None:
        """Recreate the file from this connection's rows when it was deleted or replaced (see the class)."""
        if self.read_only or self._conn is None or _file_identity(self.path) == self._identity:
            return
        rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM decisions").fetchall()
        # Closed before the new file is opened: SQLite finds the WAL by name, and the old
        # connection's WAL would otherwise be read as the new file's.
        self._conn.close()
        self._conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = self._open_writable(self.path)
            cur = fresh.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(_INSERT, rows)
            cur.execute("COMMIT")
        except (OSError, sqlite3.Error, LPMError) as exc:
            raise ConfigError(f"Expected to recreate the decision cache {self.path}, deleted or replaced while open "
                              f"(got {exc}); the {len(rows)} decisions it held are lost") from exc
        self._conn, self._identity = fresh, _file_identity(self.path)
        warnings.warn(f"The decision cache {self.path} was deleted or replaced while open; recreated it with the "
                      f"{len(rows)} decisions this process still held", RuntimeWarning, stacklevel=2)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """A short write transaction; BEGIN IMMEDIATE takes the write lock up front, so a concurrent
        writer waits for ``busy_timeout`` instead of failing with 'database is locked' on an upgrade."""
        with self._lock:
            if self.read_only:
                raise ConfigError(f"Expected a writable decision cache (got {self.path} read-only: {self.reason})")
            conn = self._connection()
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            self._recover_if_deleted()  # after the commit: the rows just written are copied too

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"Expected an open decision cache (got {self.path} closed)")
        return self._conn

    def __repr__(self) -> str:
        return f"DecisionCache({str(self.path)!r}, offline={self.offline})"

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def __enter__(self) -> "DecisionCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent), recreating the file first if it was deleted."""
        with self._lock:
            if getattr(self, "_conn", None) is not None:
                try:
                    self._recover_if_deleted()
                finally:
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None

    def get_many(self, backend: Backend, requests: Sequence[tuple[str, str]]) -> list[Decision | None]:
        """The cached decision of each ``(persona, context)`` for this backend, ``None`` where absent.

        Raises:
            DataFormatError: a stored entry no longer passes the decision schema.
        """
        ident = _identity(backend)
        keys = [cache_key(*ident, p, c) for p, c in requests]
        found: dict[str, str] = {}
        with self._lock:
            conn = self._connection()
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                rows = conn.execute(f"SELECT key, decision FROM decisions WHERE key IN ({', '.join('?' * len(chunk))})",
                                    chunk).fetchall()
                found.update(rows)
        out: list[Decision | None] = []
        for key in keys:
            if key not in found:
                out.append(None)
                continue
            try:
                out.append(parse_decision(found[key], where=f"cache entry {key[:12]}"))
            except BackendError as exc:
                raise DataFormatError(f"Expected a valid decision in {self.path} (got {exc})") from exc
        return out

    def put_many(self, backend: Backend, requests: Sequence[tuple[str, str]], decisions: Sequence[Decision],
                 usages: Sequence[Usage | None] | None = None) -> int:
        """Store decisions (existing keys are kept: the first answer wins); returns how many were added.

        Args:
            usages: the tokens each decision cost, when the backend reports them per request.
        """
        if len(decisions) != len(requests) or (usages is not None and len(usages) != len(requests)):
            raise ConfigError(f"Expected one decision (and usage) per request (got {len(requests)} requests, "
                              f"{len(decisions)} decisions, {None if usages is None else len(usages)} usages)")
        ident = _identity(backend)
        now = time.time()
        rows = []
        for i, ((persona, context), decision) in enumerate(zip(requests, decisions)):
            if not isinstance(decision, Decision):
                raise ConfigError(f"Expected a Decision for request {i} (got {type(decision).__name__})")
            usage = usages[i] if usages is not None else None
            rows.append((cache_key(*ident, persona, context), *ident, persona, context, _decision_json(decision),
                         decision.reaction, now, None if usage is None else usage.prompt_tokens,
                         None if usage is None else usage.completion_tokens))
        return self._insert(rows)

    def _insert(self, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        with self._write() as cur:
            before = self._connection().total_changes
            cur.executemany(_INSERT, rows)
            return self._connection().total_changes - before

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every entry as JSON Lines, sorted by backend, model, prompt version, persona and context;
        returns the number of entries. The file is replaced atomically."""
        with self._lock:
            rows = self._connection().execute(
                f"SELECT {', '.join(_COLUMNS)} FROM decisions "
                "ORDER BY backend, model, prompt_version, persona, context").fetchall()
        lines = []
        for row in rows:
            entry = dict(zip(_COLUMNS, row))
            del entry["key"], entry["reaction"]  # both follow from the rest; import recomputes them
            entry["decision"] = json.loads(entry["decision"])
            entry["created"] = datetime.fromtimestamp(entry["created"], timezone.utc).isoformat()
            lines.append(json.dumps(entry, ensure_ascii=False, sort_keys=True))
        _atomic_write(Path(path), "".join(line + "\n" for line in lines))
        return len(lines)

    def import_(self, path: str | os.PathLike[str]) -> int:
        """Merge a file written by :meth:`export`; returns how many entries were new.

        The whole file is checked before anything is written, so a bad file changes nothing.

        Raises:
            DataFormatError: an unreadable file, or a line that is not UTF-8 JSON, lacks a field, or
                whose decision fails the schema (the message names the line).
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"Expected a readable JSON Lines file at {path} (got {exc.strerror or exc})") from exc
        rows = []
        for number, line in enumerate(raw.splitlines(), start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"Expected UTF-8 text on line {number} of {path} (got byte 0x{line[exc.start]:02x} "
                                      f"at byte {exc.start} of the line: {exc.reason})") from None
            if text.strip():
                rows.append(_parse_line(text, number, path))
        return self._insert(rows)


def _parse_line(line: str, number: int, path: Path) -> tuple[Any, ...]:
    where = f"line {number} of {path}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"Expected a JSON object on {where} (got {line[:80]!r}: {exc})") from None
    if not isinstance(entry, dict):
        raise DataFormatError(f"Expected a JSON object on {where} (got {type(entry).__name__})")
    for name in ("backend", "model", "prompt_version", "persona", "context"):
        if not isinstance(entry.get(name), str):
            raise DataFormatError(f"Expected {name!r} as a string on {where} (got {entry.get(name)!r:.80})")
    if not isinstance(entry.get("decision"), (dict, str)):
        raise DataFormatError(f"Expected 'decision' as a JSON object on {where} (got {entry.get('decision')!r:.80})")
    try:
        decision = parse_decision(entry["decision"], where=where)
    except BackendError as exc:
        raise DataFormatError(f"Expected a valid decision on {where} (got {exc})") from exc
    tokens = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise DataFormatError(f"Expected {name!r} as a non-negative integer or null on {where} (got {value!r})")
        tokens.append(value)
    created = entry.get("created")
    try:
        stamp = datetime.fromisoformat(created).timestamp() if isinstance(created, str) else float(created or time.time())
    except (TypeError, ValueError):
        raise DataFormatError(f"Expected 'created' as an ISO 8601 time on {where} (got {created!r})") from None
    ident = (entry["backend"], entry["model"], entry["prompt_version"])
    return (cache_key(*ident, entry["persona"], entry["context"]), *ident, entry["persona"], entry["context"],
            _decision_json(decision), decision.reaction, stamp, *tokens)


def _atomic_write(path: Path, text: str) -> None:
    """Write through :func:`lpm.io_atomic.atomic_write_text`: a reader never sees half a file."""
    from lpm.io_atomic import atomic_write_text

    atomic_write_text(path, text)
