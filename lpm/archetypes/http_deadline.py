"""A total deadline per HTTP request for the OpenAI-compatible backend.

The HTTP client's own timeouts bound each read, not the request: a server that drips one byte per
read keeps a request alive forever. Every read and write of the client's connection pools is bounded
here by the time left to the deadline of the request the thread is sending (``DEADLINE.at``).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__ = ["DEADLINE", "install_deadline", "body_start"]

#: The deadline of the request the current thread is sending (``time.monotonic()`` seconds), or absent.
DEADLINE = threading.local()


class _DeadlineStream:
    """A network stream whose reads and writes never wait past the thread's request deadline.

    The HTTP client's own timeouts bound each read, not the request: a server that drips one byte
    per read keeps a request alive forever. Bounding every read by the time left to the deadline
    makes the whole request (headers and body) end by the deadline."""

    def __init__(self, stream: Any, timeout_error: type[Exception]) -> None:
        self._stream, self._timeout_error = stream, timeout_error

    def _bound(self, timeout: float | None) -> float | None:
        deadline = getattr(DEADLINE, "at", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout_error("request deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._bound(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._bound(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        tls = self._stream.start_tls(ssl_context, server_hostname, self._bound(timeout))
        return _DeadlineStream(tls, self._timeout_error)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineNetwork:
    """The network backend of an HTTP connection pool, with :class:`_DeadlineStream` streams."""

    def __init__(self, backend: Any, timeout_error: type[Exception]) -> None:
        self._backend, self._timeout_error = backend, timeout_error

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> _DeadlineStream:
        stream = self._backend.connect_tcp(host, port, _DeadlineStream(None, self._timeout_error)._bound(timeout),
                                           local_address, socket_options)
        return _DeadlineStream(stream, self._timeout_error)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> _DeadlineStream:
        stream = self._backend.connect_unix_socket(path, _DeadlineStream(None, self._timeout_error)._bound(timeout),
                                                   socket_options)
        return _DeadlineStream(stream, self._timeout_error)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def install_deadline(http_client: Any) -> bool:
    """Route every connection pool of an httpx(-like) client through :class:`_DeadlineNetwork`.

    The pools' network backend is the one place every byte passes; httpx offers no public hook
    there, so this reaches into ``transport._pool._network_backend`` (stable across httpx and
    httpcore releases) and reports ``False`` where the layout differs, rather than failing."""
    transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
    pools = [getattr(t, "_pool", None) for t in transports if t is not None]
    pools = [pool for pool in pools if pool is not None and hasattr(pool, "_network_backend")]
    for pool in pools:
        if not isinstance(pool._network_backend, _DeadlineNetwork):
            errors = sys.modules[type(pool).__module__.split(".")[0]]  # httpcore, or a fork of it
            pool._network_backend = _DeadlineNetwork(pool._network_backend, errors.ReadTimeout)
    return bool(pools)


def body_start(response: Any, limit: int = 160) -> str:
    """The content type and the first characters of an HTTP response body, for messages."""
    try:
        text = response.text
    except Exception as exc:  # noqa: BLE001 - a body we cannot even decode is described, not raised
        text = f"<undecodable body: {exc}>"
    kind = response.headers.get("content-type", "no content-type")
    return f"{kind}, {len(response.content)} bytes: {text[:limit]!r}"
