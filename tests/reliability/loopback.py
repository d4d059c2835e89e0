"""Misbehaving HTTP servers on 127.0.0.1, one thread per connection, for backend fault tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

Handler = Callable[[socket.socket, threading.Event], None]


class Loopback:
    """A raw TCP server whose handler gets each connection after the request has been read."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(1 << 16)
                self._handler(conn, self._stop)
            except OSError:  # the client gave up: expected
                pass

    def stop(self) -> None:
        self._stop.set()
        self._server.close()


def drip(head: bytes, body: bytes, every_s: float = 0.3) -> Handler:
    """Send ``head`` at once, then ``body`` one byte every ``every_s`` seconds."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        for byte in body:
            if stop.wait(every_s):
                return
            conn.sendall(bytes([byte]))

    return handler


def hang(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and never answer."""
    stop.wait(60)


def respond(status: str, content_type: str, body: bytes) -> Handler:
    """One complete answer with this status line, content type and body."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)

    return handler


def elapsed(start: float) -> float:
    return time.monotonic() - start
