"""A backend behind a :class:`~lpm.archetypes.cache.DecisionCache`: every decision asked once."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from lpm.archetypes.backends import check_requests
from lpm.archetypes.cache import DecisionCache
from lpm.archetypes.decision import Backend, Decision, Usage
from lpm.archetypes.prompts import describe_request
from lpm.errors import BackendError, CacheMissError, ConfigError
from lpm.io_atomic import atomic_write_text

__all__ = ["CachedBackend"]


class CachedBackend:
    """A backend behind a :class:`DecisionCache`: hits come from disk, misses go to the backend once.

    Args:
        backend: any :class:`~lpm.archetypes.decision.Backend`; its name, model and prompt version key the cache.
        cache: the cache; with ``offline=True`` the backend is never called.
        chunk_size: send misses in chunks of this size and store each chunk as soon as it is answered,
            so a failure late in a long run keeps the earlier answers (``None``: one ``decide`` call).

    Statistics (:meth:`stats`): ``calls`` requests sent to the backend, ``cache_hits`` requests
    answered from the cache, ``deduplicated`` repeats of a missing request within one call (answered
    by its first occurrence), ``requests`` everything asked, ``attempts`` the backend's own attempts
    (retries included), ``prompt_tokens`` and ``completion_tokens`` spent by the backend.
    ``requests == cache_hits + calls + deduplicated``. :meth:`seconds` gives the wall and process CPU
    seconds spent waiting on the backend (the CPU time is the whole process's: a local model's
    threads, or almost nothing for a remote endpoint).
    """

    def __init__(self, backend: Backend, cache: DecisionCache, *, chunk_size: int | None = None) -> None:
        if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ConfigError(f"Expected chunk_size to be an int >= 1 or None (got {chunk_size!r})")
        self.backend = backend
        self.cache = cache
        self.chunk_size = chunk_size
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "calls": 0, "cache_hits": 0, "deduplicated": 0, "attempts": 0,
                       "prompt_tokens": 0, "completion_tokens": 0}
        self._seconds = {"wall_s": 0.0, "cpu_s": 0.0}

    name = property(lambda self: self.backend.name, doc="The wrapped backend's name.")
    model = property(lambda self: self.backend.model, doc="The wrapped backend's model.")
    prompt_version = property(lambda self: self.backend.prompt_version, doc="The wrapped backend's prompt version.")
    usage = property(lambda self: self.backend.usage, doc="The wrapped backend's running usage.")

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, {self.cache!r})"

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                self._stats[name] += value

    def decide(self, requests: Sequence[tuple[str, str]]) -> list[Decision]:
        """One decision per ``(persona_text, context_text)``, in order, asking the backend only for misses.

        Raises:
            CacheMissError: the cache is offline and some requests are not in it.
            BackendError: the backend failed (answers of earlier chunks stay cached).
        """
        requests = check_requests(requests)
        found = self.cache.get_many(self.backend, requests)
        missing = [requests[i] for i, d in enumerate(found) if d is None]
        unique = list(dict.fromkeys(missing))
        hits = len(requests) - len(missing)
        if unique and self.cache.offline:
            self._count(requests=len(requests), cache_hits=hits)
            raise CacheMissError(
                f"Expected all {len(requests)} requests in the offline cache {self.cache.path} ({self.cache.reason}) "
                f"for backend "
                f"{self.name!r}, model {self.model!r}, prompt {self.prompt_version!r} (got {len(unique)} missing; "
                f"first: {describe_request(*unique[0])})")
        self._count(requests=len(requests), cache_hits=hits, deduplicated=len(missing) - len(unique))
        answers: dict[tuple[str, str], Decision] = {}
        size = self.chunk_size or max(len(unique), 1)
        for start in range(0, len(unique), size):
            chunk = unique[start:start + size]
            answers.update(zip(chunk, self._ask(chunk)))
        return [d if d is not None else answers[r] for r, d in zip(requests, found)]  # type: ignore[index]

    def _ask(self, chunk: list[tuple[str, str]]) -> list[Decision]:
        """Send one chunk of misses to the backend, store the answers, count what it cost."""
        before = copy.copy(self.backend.usage)
        self._count(calls=len(chunk))
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            usages: list[Usage] | None = None
            if hasattr(self.backend, "decide_with_usage"):  # per-request tokens, stored with each entry
                pairs = self.backend.decide_with_usage(chunk)
                decisions = [d for d, _ in pairs]
                usages = [u for _, u in pairs]
            else:
                decisions = list(self.backend.decide(chunk))
        finally:
            # From the running totals, so failed attempts count too (another thread using the same
            # backend at the same time would be counted here as well).
            after = self.backend.usage
            with self._lock:
                self._seconds["wall_s"] += time.perf_counter() - wall
                self._seconds["cpu_s"] += time.process_time() - cpu
            self._count(attempts=after.calls - before.calls, prompt_tokens=after.prompt_tokens - before.prompt_tokens,
                        completion_tokens=after.completion_tokens - before.completion_tokens)
        if len(decisions) != len(chunk) or not all(isinstance(d, Decision) for d in decisions):
            raise BackendError(f"Expected {len(chunk)} Decision objects from {self.backend!r} "
                               f"(got {len(decisions)}: {[type(d).__name__ for d in decisions][:5]})")
        self.cache.put_many(self.backend, chunk, decisions, usages)
        return decisions

    def stats(self) -> dict[str, int]:
        """A copy of the counters: ``calls``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``,
        ``requests``, ``deduplicated``, ``attempts``."""
        with self._lock:
            return dict(self._stats)

    def seconds(self) -> dict[str, float]:
        """``{"wall_s", "cpu_s"}``: wall and process CPU seconds spent in the backend's calls (cache misses)."""
        with self._lock:
            return dict(self._seconds)

    def write_usage_json(self, path: str | os.PathLike[str], **extra: Any) -> None:
        """Write :meth:`stats` and :meth:`seconds`, with the backend's name, model and prompt version
        and ``extra`` entries, as JSON, atomically."""
        payload: dict[str, Any] = {"backend": self.name, "model": self.model, "prompt_version": self.prompt_version,
                                   **self.stats(), **{k: round(v, 3) for k, v in self.seconds().items()}, **extra}
        atomic_write_text(Path(path), json.dumps(payload, indent=2, sort_keys=True) + "\n")
