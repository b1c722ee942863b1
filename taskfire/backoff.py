"""Waiting out a Redis outage: the same backoff and log lines for every loop."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("taskfire.worker")


class Backoff:
    """Waits after a Redis error: 50 ms, doubling up to 2 s; logs an outage once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.0

    def wait(self, exc: Exception, stop: threading.Event) -> None:
        if self.delay == 0:
            log.warning("%s: Redis unavailable (%s); retrying", self.what, exc)
        self.delay = min(max(self.delay * 2, 0.05), 2.0)
        stop.wait(self.delay)

    def ok(self) -> None:
        if self.delay:
            log.info("%s: Redis is back", self.what)
        self.delay = 0.0
