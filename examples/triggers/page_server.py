"""A local web page whose answer the caller controls: what the demo polls, and what the
tests change under the triggers' feet. It notes the time of every request it serves."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Page:
    """What GET / answers next: status, headers and body; `hits` are the times it was asked."""

    def __init__(self, body: str = "", status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.lock = threading.Lock()
        self.body, self.status, self.headers = body, status, dict(headers or {})
        self.hits: list[float] = []

    def set(self, body: str | None = None, status: int = 200, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            if body is not None:
                self.body = body
            self.status, self.headers = status, dict(headers or {})

    def hit_count(self) -> int:
        with self.lock:
            return len(self.hits)


def serve(page: Page) -> tuple[ThreadingHTTPServer, str]:
    """Serves `page` on a free loopback port from a daemon thread; returns the server
    (call .shutdown() to stop it) and its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with page.lock:
                page.hits.append(time.time())
                status, headers, body = page.status, dict(page.headers), page.body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="page-server", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
