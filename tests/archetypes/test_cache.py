"""The decision cache on real SQLite files: across processes, with concurrent writers, offline, exported."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from lpm.archetypes.backends import OpenAICompatibleBackend
from lpm.archetypes.cache import DecisionCache, cache_key
from lpm.archetypes.cached_backend import CachedBackend
from lpm.archetypes.decision import PROMPT_VERSION, Backend, Decision, Usage
from lpm.errors import BackendError, CacheMissError, DataFormatError
from tests.archetypes.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


class CountingBackend:
    """An in-process backend: a deterministic decision per request, 10 prompt and 5 completion tokens each."""

    name = "counting"
    prompt_version = PROMPT_VERSION

    def __init__(self, model: str = "m1", fail_after: int | None = None) -> None:
        self.model = model
        self.usage = Usage()
        self.batches: list[list[tuple[str, str]]] = []
        self.fail_after = fail_after

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise BackendError("Expected a working backend (got a scripted failure)")
        self.batches.append(list(requests))
        self.usage.add(Usage(calls=len(requests), prompt_tokens=10 * len(requests), completion_tokens=5 * len(requests)))
        return [decision_for(p, c, self.model) for p, c in requests]


def decision_for(persona: str, context: str, model: str = "m1") -> Decision:
    digest = hashlib.sha256(f"{model}|{persona}|{context}".encode()).hexdigest()
    return Decision(int(digest[:4], 16) / 0xFFFF, int(digest[4:8], 16) / 0xFFFF * 2 - 1,
                    (int(digest[8:12], 16) / 0xFFFF * 2 - 1, -0.5), f"reaction {digest[:8]} to {context}")


def requests_range(lo: int, hi: int) -> list[tuple[str, str]]:
    return [(f"persona {i % 7}, über-curious", f"context {i}") for i in range(lo, hi)]


def test_cached_backend_is_a_backend_and_second_run_makes_no_calls(tmp_path: Path) -> None:
    backend = CountingBackend()
    with DecisionCache(tmp_path / "c.sqlite") as cache:
        cached = CachedBackend(backend, cache)
        assert isinstance(cached, Backend) and cached.name == "counting" and cached.model == "m1"
        reqs = requests_range(0, 6)
        first = cached.decide(reqs)
        assert first == [decision_for(p, c) for p, c in reqs]
        assert len(backend.batches) == 1 and len(cache) == 6
        assert cached.decide(reqs) == first
        assert len(backend.batches) == 1  # zero backend calls the second time
        # Another model is another key: no hit.
        other = CachedBackend(CountingBackend(model="m2"), cache)
        other.decide(reqs[:2])
        assert other.stats()["calls"] == 2 and len(cache) == 8


def test_stats_are_exact_and_written_atomically(tmp_path: Path) -> None:
    backend = CountingBackend()
    with DecisionCache(tmp_path / "c.sqlite") as cache:
        cached = CachedBackend(backend, cache)
        a, b, c, d = requests_range(0, 4)
        cached.decide([a, b, a, c])  # a repeats: sent once
        assert backend.batches == [[a, b, c]]
        cached.decide([a, b, d, d])
        assert backend.batches[1] == [d]
        stats = cached.stats()
        assert {k: stats[k] for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens")} == {
            "calls": 4, "cache_hits": 2, "prompt_tokens": 40, "completion_tokens": 20}
        assert stats["requests"] == 8 and stats["deduplicated"] == 2 and stats["attempts"] == 4
        assert stats["requests"] == stats["cache_hits"] + stats["calls"] + stats["deduplicated"]
        target = tmp_path / "out" / "usage.json"
        cached.write_usage_json(target)
        written = json.loads(target.read_text())
        seconds = {k: round(v, 3) for k, v in cached.seconds().items()}
        assert set(seconds) == {"wall_s", "cpu_s"} and all(v >= 0 for v in seconds.values())
        assert written == {**stats, **seconds, "backend": "counting", "model": "m1", "prompt_version": PROMPT_VERSION}
        assert sorted(p.name for p in target.parent.iterdir()) == ["usage.json"]  # no temp file left


def test_offline_miss_raises_without_calling_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    reqs = requests_range(0, 3)
    with DecisionCache(path) as cache:
        CachedBackend(CountingBackend(), cache).decide(reqs[:2])
    backend = CountingBackend()
    with DecisionCache(path, offline=True) as cache:
        cached = CachedBackend(backend, cache)
        assert cached.decide(reqs[:2]) == [decision_for(p, c) for p, c in reqs[:2]]
        with pytest.raises(CacheMissError, match=r"got 1 missing; first: request \w+ \(persona 'persona 2"):
            cached.decide(reqs)
    assert backend.batches == [] and backend.usage == Usage()
    with pytest.raises(CacheMissError, match="no such file"):
        DecisionCache(tmp_path / "absent.sqlite", offline=True)


def test_chunks_keep_earlier_answers_when_the_backend_fails(tmp_path: Path) -> None:
    with DecisionCache(tmp_path / "c.sqlite") as cache:
        cached = CachedBackend(CountingBackend(fail_after=1), cache, chunk_size=2)
        with pytest.raises(BackendError, match="scripted"):
            cached.decide(requests_range(0, 5))
        assert len(cache) == 2
        assert cached.stats()["calls"] == 4  # the failed chunk was sent too


def test_per_request_tokens_are_stored_from_a_real_endpoint(tmp_path: Path) -> None:
    server = FakeOpenAI().start()
    try:
        backend = OpenAICompatibleBackend("fake-model", server.base_url, "k", backoff_s=0.01)
        with DecisionCache(tmp_path / "c.sqlite") as cache:
            cached = CachedBackend(backend, cache)
            cached.decide(requests_range(0, 3))
            stats = cached.stats()
        assert stats["prompt_tokens"] == server.prompt_tokens and stats["attempts"] == 3
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        stored = conn.execute("SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM decisions").fetchone()
    assert stored == (server.prompt_tokens, server.completion_tokens)


_WRITER = """
import json, sys
from lpm.archetypes.cache import DecisionCache
from lpm.archetypes.cached_backend import CachedBackend
from tests.archetypes.test_cache import CountingBackend, requests_range
backend = CountingBackend()
with DecisionCache(sys.argv[1]) as cache:
    cached = CachedBackend(backend, cache)
    decisions = cached.decide(requests_range(0, 8))
print(json.dumps({"stats": cached.stats(), "batches": len(backend.batches),
                  "decisions": [d.to_dict() for d in decisions]}))
"""


def test_persistence_across_processes(tmp_path: Path) -> None:
    # The writer is a fresh interpreter (nothing shared but the file); the reader is this process.
    # One subprocess, not two: starting an interpreter that imports torch costs seconds on a busy machine.
    path = tmp_path / "shared.sqlite"
    done = subprocess.run([sys.executable, "-c", _WRITER, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout.strip().splitlines()[-1])
    assert written["batches"] == 1 and written["stats"]["calls"] == 8
    backend = CountingBackend()
    with DecisionCache(path, offline=True) as cache:
        cached = CachedBackend(backend, cache)
        decisions = cached.decide(requests_range(0, 8))
    assert backend.batches == [] and cached.stats()["calls"] == 0 and cached.stats()["cache_hits"] == 8
    assert [d.to_dict() for d in decisions] == written["decisions"]
    assert decisions == [decision_for(p, c) for p, c in requests_range(0, 8)]


def _concurrent_writer(path: str, worker: int, barrier, errors) -> None:
    try:
        barrier.wait()  # all open a fresh file at once: the WAL switch and table creation race too
        with DecisionCache(path) as cache:
            cached = CachedBackend(CountingBackend(), cache, chunk_size=3)
            reqs = requests_range(10 * worker, 10 * worker + 30)  # overlaps the next two workers
            for start in range(0, len(reqs), 6):
                assert cached.decide(reqs[start:start + 6]) == [decision_for(p, c) for p, c in reqs[start:start + 6]]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")
        raise


def test_concurrent_writers_share_one_file(tmp_path: Path) -> None:
    # fork: the children inherit the imported modules, so the test stays fast; they only touch SQLite.
    ctx = multiprocessing.get_context("fork")
    path = tmp_path / "shared.sqlite"
    barrier, errors = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_concurrent_writer, args=(str(path), w, barrier, errors)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert problems == [] and [p.exitcode for p in workers] == [0] * 4
    reqs = requests_range(0, 60)
    with DecisionCache(path, offline=True) as cache:
        assert len(cache) == 60
        assert cache.get_many(CountingBackend(), reqs) == [decision_for(p, c) for p, c in reqs]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(DISTINCT persona || '|' || context), COUNT(*) FROM decisions").fetchone() \
            == (60, 60)


def _filled(path: Path) -> DecisionCache:
    cache = DecisionCache(path)
    for model in ("m2", "m1"):
        CachedBackend(CountingBackend(model), cache).decide(requests_range(0, 5))
    return cache


def test_export_import_round_trip(tmp_path: Path) -> None:
    with _filled(tmp_path / "a.sqlite") as source:
        assert source.export(tmp_path / "a.jsonl") == 10
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["model"], e["persona"], e["context"]) for e in entries] == sorted(
        (e["model"], e["persona"], e["context"]) for e in entries)
    assert "über" in lines[0]  # human-readable, not \\u-escaped
    assert entries[0]["prompt_tokens"] is None  # this backend reports totals only
    with DecisionCache(tmp_path / "b.sqlite") as copy:
        assert copy.import_(tmp_path / "a.jsonl") == 10
        assert copy.import_(tmp_path / "a.jsonl") == 0  # merging again adds nothing
        for model in ("m1", "m2"):
            reqs = requests_range(0, 5)
            assert copy.get_many(CountingBackend(model), reqs) == [decision_for(p, c, model) for p, c in reqs]
        copy.export(tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    key = cache_key("counting", "m1", PROMPT_VERSION, *requests_range(0, 1)[0])
    assert len(key) == 64 and key != cache_key("counting", "m2", PROMPT_VERSION, *requests_range(0, 1)[0])


@pytest.mark.parametrize("line_number, corrupt, message", [
    (3, lambda line: line[:-10], "JSON object on line 3"),
    (2, lambda line: line.replace('"share_probability": ', '"share_probability": 1.7, "x": '),
     r"line 2 .*share_probability"),
    (4, lambda line: line.replace('"persona"', '"personality"'), "'persona' as a string on line 4"),
])
def test_import_of_a_corrupted_line_names_it(tmp_path: Path, line_number: int, corrupt, message: str) -> None:
    with _filled(tmp_path / "a.sqlite") as source:
        source.export(tmp_path / "a.jsonl")
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    lines[line_number - 1] = corrupt(lines[line_number - 1])
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with DecisionCache(tmp_path / "b.sqlite") as copy:
        with pytest.raises(DataFormatError, match=message):
            copy.import_(tmp_path / "bad.jsonl")
        assert len(copy) == 0  # nothing from a bad file is merged


def test_a_file_that_is_not_a_cache_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataFormatError, match="Expected a decision cache"):
        DecisionCache(path)
