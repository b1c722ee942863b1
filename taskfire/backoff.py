"""Riding out trouble with Redis: one backoff, and one voice, for every loop of a process.

Every loop of a server and its worker processes (heartbeat, fetch, outcomes, leases,
metrics, scheduler) survives any error: Redis down, restarting, loading its data, full,
read-only, refusing the credentials or the certificate, or a bug of ours. It waits 50 ms,
doubling up to 2 s, and tries again, for as long as it takes.

What is logged is a change of the process's state, not each failure: the first loop to
meet a kind of trouble logs one line that names it and its fix (a bug, with its
traceback); loops that meet it after stay quiet; the last one to get past it logs that
Redis is back. A password rotated under a running worker is one error line, not one a
second per loop.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, NamedTuple

log = logging.getLogger("taskfire.worker")

#: The longest wait between two tries.
MAX_DELAY = 2.0


class Trouble(NamedTuple):
    """What an error means to a loop (storage.describe_error says it for Redis's)."""

    kind: str               # one log line per kind: "unreachable", "credentials", "full", ...
    message: str            # the problem and its fix
    transient: bool = True  # the same call may succeed later; False: its own data is at fault, or a bug
    serious: bool = False   # someone must act: logged as an error, not a warning


def unexplained(exc: BaseException) -> Trouble:
    """An error nobody described: a bug, logged once with its traceback."""
    return Trouble("bug", f"{type(exc).__name__}: {exc}", transient=False, serious=True)


class _Troubles:
    """The process's current troubles: each kind, and the loops in it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loops: dict[str, set[int]] = {}

    def enter(self, kind: str, loop: int) -> bool:
        """Puts a loop in a kind of trouble; True if the process was not in it yet."""
        with self.lock:
            loops = self.loops.setdefault(kind, set())
            new = not loops
            loops.add(loop)
            return new

    def leave(self, kind: str, loop: int) -> bool:
        """Takes a loop out of a kind of trouble; True if no loop is left in it."""
        with self.lock:
            loops = self.loops.get(kind, set())
            loops.discard(loop)
            return not loops

    def forget(self) -> None:
        """A forked child starts with none: its parent's loops are not its own."""
        self.lock = threading.Lock()
        self.loops = {}


_troubles = _Troubles()
os.register_at_fork(after_in_child=_troubles.forget)


class Backoff:
    """One loop's waits after failures. Not shared between threads."""

    def __init__(self, what: str, describe: Callable[[BaseException], Trouble] = unexplained) -> None:
        self.what = what
        self.describe = describe
        self.delay = 0.0
        self.kind: str | None = None

    def failed(self, exc: BaseException) -> float:
        """Notes a failure (logged if it changes the process's state); returns the
        seconds to wait before trying again."""
        trouble = self.describe(exc)
        self.delay = min(max(self.delay * 2, 0.05), MAX_DELAY)
        if trouble.kind != self.kind:
            if self.kind is not None:
                _troubles.leave(self.kind, id(self))
            self.kind = trouble.kind
            if _troubles.enter(trouble.kind, id(self)):
                self._announce(trouble, exc)
                return self.delay
        log.debug("%s: %s; next try in %.2f s", self.what, trouble.message, self.delay)
        return self.delay

    def wait(self, exc: BaseException, stop: threading.Event) -> None:
        """Notes a failure, then waits (less if `stop` is set meanwhile)."""
        stop.wait(self.failed(exc))

    def ok(self) -> None:
        """The loop got through: if it was the last in its trouble, Redis is back."""
        if self.kind is not None and _troubles.leave(self.kind, id(self)):
            if self.kind == "bug":
                log.info("%s: working again", self.what)
            else:
                log.info("%s: Redis is back", self.what)
        self.kind = None
        self.delay = 0.0

    def _announce(self, trouble: Trouble, exc: BaseException) -> None:
        if trouble.kind == "bug":
            log.error("%s failed: %s; retrying", self.what, trouble.message, exc_info=exc)
        else:
            log.log(logging.ERROR if trouble.serious else logging.WARNING, "%s: %s; retrying until it is fixed"
                    if trouble.serious else "%s: %s; retrying", self.what, trouble.message)
