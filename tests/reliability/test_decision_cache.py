"""The decision cache under faults: deleted while a run writes to it, read-only on disk, offline."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from lpm.archetypes.cache import DecisionCache
from lpm.archetypes.cached_backend import CachedBackend
from lpm.errors import CacheMissError, ConfigError, DataFormatError
from tests.archetypes.test_cache import CountingBackend, decision_for, requests_range


def _filled(path: Path, lo: int = 0, hi: int = 8) -> None:
    with DecisionCache(path) as cache:
        CachedBackend(CountingBackend(), cache).decide(requests_range(lo, hi))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@contextmanager
def _unwritable(path: Path):
    """Make ``path`` (a file or folder) unwritable even for root: ``chattr +i`` as root, else chmod."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("root, and no immutable attribute on this file system")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# -- deleted mid-run ------------------------------------------------------------------------------------


@pytest.mark.parametrize("remove", ["file", "file-and-side-files", "folder"])
def test_cache_deleted_between_writes_is_recreated_with_every_decision(tmp_path, remove):
    path = tmp_path / "cache" / "decisions.sqlite"
    backend = CountingBackend()
    cache = DecisionCache(path)
    cached = CachedBackend(backend, cache, chunk_size=4)
    cached.decide(requests_range(0, 8))
    if remove == "folder":
        shutil.rmtree(path.parent)
    else:
        for side in ([""] if remove == "file" else ["", "-wal", "-shm"]):
            Path(f"{path}{side}").unlink(missing_ok=True)
    with pytest.warns(RuntimeWarning, match=f"{path} was deleted or replaced while open; recreated it with the 12 "):
        cached.decide(requests_range(8, 12))  # the next write notices
    cached.decide(requests_range(12, 16))
    cache.close()
    with DecisionCache(path, offline=True) as reopened:
        assert len(reopened) == 16
        assert reopened.get_many(backend, requests_range(0, 16)) == [decision_for(p, c) for p, c in requests_range(0, 16)]


def test_cache_deleted_after_the_last_write_is_recreated_on_close(tmp_path):
    path = tmp_path / "decisions.sqlite"
    cache = DecisionCache(path)
    CachedBackend(CountingBackend(), cache).decide(requests_range(0, 5))
    path.unlink()
    with pytest.warns(RuntimeWarning, match="recreated it with the 5 decisions"):
        cache.close()
    with DecisionCache(path, offline=True) as reopened:
        assert len(reopened) == 5


# -- read-only and offline -------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["offline", "read_only"])
def test_offline_and_read_only_never_write_and_never_call_the_backend(tmp_path, flag):
    path = tmp_path / "decisions.sqlite"
    _filled(path)
    before = _snapshot(tmp_path)
    backend = CountingBackend()
    with DecisionCache(path, **{flag: True}) as cache:
        assert cache.offline and cache.read_only
        cached = CachedBackend(backend, cache)
        assert cached.decide(requests_range(2, 6)) == [decision_for(p, c) for p, c in requests_range(2, 6)]
        with pytest.raises(CacheMissError, match=r"offline cache .*opened offline.*'counting'.*1 missing; first:.*"
                                                 r"persona 1, über-curious.*context 8"):
            cached.decide(requests_range(6, 9))
        with pytest.raises(ConfigError, match=f"Expected a writable decision cache.*{path} read-only"):
            cache.put_many(backend, requests_range(20, 21), [decision_for(*requests_range(20, 21)[0])])
    assert backend.batches == []
    after = _snapshot(tmp_path)
    assert after.get(path.name) == before[path.name]  # not one byte of the database changed
    assert set(after) - {f"{path.name}-wal", f"{path.name}-shm"} == set(before)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_cache_holding_every_decision_serves_them(tmp_path, what):
    path = tmp_path / "cache" / "decisions.sqlite"
    _filled(path)
    backend = CountingBackend()
    with _unwritable(path if what == "file" else path.parent):
        with DecisionCache(path) as cache:  # no flag: the cache finds out by itself
            assert cache.read_only and "not writable" in cache.reason
            cached = CachedBackend(backend, cache)
            assert cached.decide(requests_range(0, 8)) == [decision_for(p, c) for p, c in requests_range(0, 8)]
            with pytest.raises(CacheMissError, match="not writable.*context 9"):
                cached.decide(requests_range(9, 10))  # refused before the backend is paid
    assert backend.batches == []


def test_an_empty_sqlite_file_opened_read_only_is_a_format_error(tmp_path):
    import sqlite3

    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(DataFormatError, match=f"Expected a decision cache at {path} \\(got a SQLite file without"):
        DecisionCache(path, read_only=True)
