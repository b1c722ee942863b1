"""The partners' APIs, faked on a local port: `GET /<integration>/records?since=N` answers
the next records after cursor N. It notes when each request started and ended, and can be
told to answer slowly or to fail, so the example and its tests can watch what the syncs
do to it.

    python -m examples.syncs.fake_service 8099     # on its own, to point workers at
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

#: Records a partner hands out per request.
PAGE = 3


class Request(msgspec.Struct, frozen=True):
    integration: str
    started: float
    ended: float
    status: int


class FakeService:
    """A threaded HTTP server on 127.0.0.1 and what it saw."""

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.delays: dict[str, float] = {}
        self.failures: dict[str, list[int]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeService:
        threading.Thread(target=self.server.serve_forever, name="fake-service", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def slow(self, integration: str, seconds: float) -> None:
        """Each request for `integration` takes this long."""
        with self.lock:
            self.delays[integration] = seconds

    def fail_next(self, integration: str, *statuses: int) -> None:
        """The next requests for `integration` answer these error statuses, in order."""
        with self.lock:
            self.failures.setdefault(integration, []).extend(statuses)

    def seen(self, integration: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.integration == integration]

    def _answer(self, integration: str, since: int) -> tuple[int, dict[str, Any]]:
        with self.lock:
            delay = self.delays.get(integration, 0.0)
            failures = self.failures.get(integration)
            status = failures.pop(0) if failures else 200
        time.sleep(delay)
        if status != 200:
            return status, {"error": f"{integration} is unavailable"}
        records = [{"id": f"{integration}-{n}", "integration": integration} for n in range(since + 1, since + PAGE + 1)]
        return 200, {"records": records, "cursor": since + PAGE}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                started = time.time()
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 2 or parts[1] != "records":
                    self.send_error(404)
                    return
                since = int(parse_qs(url.query).get("since", ["0"])[0])
                status, body = service._answer(parts[0], since)
                data = json.dumps(body).encode()
                with service.lock:
                    service.requests.append(Request(parts[0], started, time.time(), status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


if __name__ == "__main__":
    service = FakeService(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(f"fake partner APIs on {service.url}; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        service.stop()
