"""Group commit: a worker process's threads store their jobs' outcomes together.

A thread that finishes a job while another thread's call to Redis is on its way sends no
call of its own: it waits, and the next call carries every outcome that piled up
meanwhile, with a fetch of as many next jobs as those threads want. Under load that is
one round trip and one script call for several jobs; a thread alone still sends its
outcome at once. The calls themselves are the caller's `send`.
"""

from __future__ import annotations

import threading
from typing import Callable

from ..storage import FetchedJob, Transition


class Finished:
    """One thread's finished job: the change to store, and, once stored, what came of it."""

    __slots__ = ("job", "change", "wants_next", "stored", "code", "old", "next_job")

    def __init__(self, job: FetchedJob, change: Transition, wants_next: bool) -> None:
        self.job = job
        self.change = change
        self.wants_next = wants_next
        self.stored = False
        self.code: int | None = None  # None: not stored (Redis unreachable while exiting)
        self.old = ""
        self.next_job: FetchedJob | None = None


class Finisher:
    def __init__(self, send: Callable[[list[Finished]], None]) -> None:
        """`send` stores a group of outcomes in one call and fills in their results."""
        self._send = send
        self._cond = threading.Condition()
        self._pending: list[Finished] = []
        self._sending = False

    def store(self, finished: Finished) -> None:
        """Returns once the outcome went to Redis, in this thread's call or another's.
        An exception from `send` is raised in the thread that sent the group; the others
        return with `code` None."""
        with self._cond:
            self._pending.append(finished)
            while not finished.stored:
                if self._sending:
                    self._cond.wait()
                    continue
                group, self._pending = self._pending, []
                self._sending = True
                self._cond.release()
                try:
                    self._send(group)
                finally:
                    self._cond.acquire()
                    self._sending = False
                    for o in group:
                        o.stored = True
                    self._cond.notify_all()
