"""Group commit: a worker process's threads store their jobs' outcomes together, a group
per shard.

A thread that finishes a job while another thread's call to Redis is on its way sends no
call of its own: it waits, and the next call carries every outcome that piled up
meanwhile, with a fetch of as many next jobs as those threads want. Under load that is
one round trip and one script call for several jobs; a thread alone still sends its
outcome at once. The calls themselves are the caller's `send`.

Each shard (storage/shards.py; one on a single Redis) has its own lane: its own pending
outcomes and its own call on its way. A group only ever holds one shard's outcomes, so
a shard whose primary is failing over, whose call is retried until the promoted replica
answers, holds back only the threads with a job of that shard: the others' outcomes,
and the next jobs fetched with them, go on as before.

Nor are those threads held: a group whose call failed for want of its shard's primary
is kept (Deferrals) and sent again by a thread of its own, with backoff, until the
promoted replica takes it; the threads that ran its jobs go on with other shards' jobs
meanwhile. Nothing is dropped, and an outcome stored twice (its first call reached
Redis but its reply did not) is answered "not applied" the second time, as any
repeated change is.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable

from ..storage import FetchedJob, Transition


class Finished:
    """One thread's finished job: the change to store, and, once stored, what came of it."""

    __slots__ = ("job", "change", "wants_next", "stored", "code", "old", "next_job", "deferred", "after")

    def __init__(self, job: FetchedJob, change: Transition, wants_next: bool) -> None:
        self.job = job
        self.change = change
        self.wants_next = wants_next
        self.stored = False
        self.code: int | None = None  # None: not stored (Redis unreachable while exiting)
        self.old = ""
        self.next_job: FetchedJob | None = None
        self.deferred = False  # kept to be sent again (Deferrals): its thread has moved on
        self.after: Callable[[], None] | None = None  # what its thread would have done once it was stored


class _Lane:
    """One shard's outcomes waiting to be sent, and whether a call of its is on its way."""

    __slots__ = ("pending", "sending")

    def __init__(self) -> None:
        self.pending: list[Finished] = []
        self.sending = False


class Finisher:
    def __init__(self, send: Callable[[list[Finished]], None],
                 lane_of: Callable[[Finished], Hashable] = lambda f: 0) -> None:
        """`send` stores a group of outcomes, all of one lane (a shard), in one call and
        fills in their results; `lane_of` tells an outcome's lane."""
        self._send = send
        self._lane_of = lane_of
        self._cond = threading.Condition()
        self._lanes: dict[Hashable, _Lane] = {}

    def store(self, finished: Finished) -> None:
        """Returns once the outcome went to Redis, in this thread's call or another's of
        the same lane. An exception from `send` is raised in the thread that sent the
        group; the others return with `code` None."""
        key = self._lane_of(finished)
        with self._cond:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            lane.pending.append(finished)
            while not finished.stored:
                if lane.sending:
                    self._cond.wait()
                    continue
                group, lane.pending = lane.pending, []
                lane.sending = True
                self._cond.release()
                try:
                    self._send(group)
                finally:
                    self._cond.acquire()
                    lane.sending = False
                    for o in group:
                        o.stored = True
                    self._cond.notify_all()


class Deferrals:
    """Outcomes a shard could not take (its primary away), kept per lane and sent again
    by a thread per lane until they are stored. `store_once(group)` tries once (raising
    if the call failed for want of Redis), `wait(lane, exc)` waits the lane's backoff
    and tells whether to go on (False: the process is exiting), `give_up(group)` lets
    the jobs go (their leases lapse, so they run again)."""

    def __init__(self, store_once: Callable[[list[Finished]], None], wait: Callable[[Hashable, BaseException], bool],
                 give_up: Callable[[list[Finished]], None]) -> None:
        self._store_once = store_once
        self._wait = wait
        self._give_up = give_up
        self._lock = threading.Lock()
        self._kept: dict[Hashable, list[Finished]] = {}

    def take(self, lane: Hashable, group: list[Finished]) -> bool:
        """Keeps `group` if its lane has outcomes kept already (a call now would only
        wait on the same failure); whether it did."""
        with self._lock:
            kept = self._kept.get(lane)
            if kept is None:
                return False
            self._mark(group)
            kept.extend(group)
            return True

    def keep(self, lane: Hashable, group: list[Finished], exc: BaseException) -> None:
        """Keeps the group of a lane whose call failed; a thread sends it again."""
        with self._lock:
            self._mark(group)
            if lane in self._kept:
                self._kept[lane].extend(group)
                return
            self._kept[lane] = list(group)
        threading.Thread(target=self._send_again, args=(lane, exc), name=f"outcomes-{lane}", daemon=True).start()

    def kept(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._kept.values())

    @staticmethod
    def _mark(group: list[Finished]) -> None:
        for o in group:
            o.deferred = True

    def _send_again(self, lane: Hashable, exc: BaseException) -> None:
        """Until the lane's kept outcomes are stored (those kept meanwhile too)."""
        while True:
            if not self._wait(lane, exc):
                with self._lock:
                    group = self._kept.pop(lane)
                self._give_up(group)
                return
            with self._lock:
                group = list(self._kept[lane])
            try:
                self._store_once(group)
            except Exception as again:  # noqa: BLE001 - the primary still away: wait and try again
                exc = again
                continue
            with self._lock:
                rest = self._kept[lane][len(group):]
                if rest:
                    self._kept[lane] = rest
                else:
                    del self._kept[lane]
            for o in group:
                if o.code is not None and o.after is not None:
                    o.after()
            if not rest:
                return
