"""The HTTP part every fake shares: a threaded server on a free local port that hands each
request to a function and writes back what it answers (after an optional stall, to play a slow
or hanging service). Keep-alive and no Nagle delay, as real APIs behave."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], str, float]  # status, headers, body text, seconds to stall before answering
Handle = Callable[[str, str, Any, bytes], Answer]  # (method, path, headers, body) -> Answer


@dataclass
class Scripted:
    """A canned answer a fake gives instead of its own (a 429, a 5xx, a stall)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    stall_seconds: float = 0.0


@contextmanager
def serve_http(handle: Handle) -> Iterator[str]:
    """Serve `handle` until the block ends; yields the base URL (http://127.0.0.1:<port>)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait between head and body

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status, headers, text, stall = handle(self.command, self.path, self.headers, body)
            if stall:
                time.sleep(stall)
            payload = text.encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # http.server's names

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # shuts down in 50 ms
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
