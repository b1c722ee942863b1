"""`drain(tf)`: runs every job waiting in the store, in the caller's own process, one at
a time, the way a worker would (fetched under a lease, run inside its filters, its
outcome elected and stored), until the queues are empty and nothing is due within a
second. Continuations released and retries scheduled on the way run too.

It is for tests: `enqueue → drain → assert`, with real Redis and real state changes, and
the job's code in the test's process (where the test's fakes and fixtures are). Nothing
is lost: a job still running when the drain's `timeout` passes, or when Ctrl-C stops
it, is handed back to the front of its queue, as a worker's shutdown does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from typing import Any, Sequence

import msgspec

from ..context import SHUTDOWN, TIMEOUT, CancellationToken
from ..errors import JobTimeout
from ..filters import pipeline
from ..job import registry
from ..server.config import BURST_HORIZON_S
from ..server.metrics import JobMetrics
from ..server.performer import Outcome, Performer
from ..state_changer import StateChanger, transition_for
from ..states import PROCESSING, Enqueued, Failed, Scheduled
from ..storage import FetchedJob, FetchRequest, Storage

#: Seconds a job past its own timeout gets to stop after its cancellation token fires.
TIMEOUT_GRACE = 1.0
#: The lease a drained job is held under (renewed while it runs).
LEASE_MS = 30_000


class Drained(msgspec.Struct, frozen=True):
    """What a drain did."""

    ran: list[str]     # ids of the runs, in order (a retried job appears once per run)
    failed: list[str]  # ids of the jobs whose last run failed (retried or not)


def drain(tf: Any, *, queues: Sequence[str] | None = None, timeout: float = 30.0,
          skip_retry_delays: bool = False) -> Drained:
    """Runs the jobs of `tf`'s store in this process until `queues` (default: every queue
    the store knows, rechecked as jobs add new ones) are empty and nothing is due within
    a second; returns what ran.

    skip_retry_delays  a failed run due for a retry goes back to its queue at once (and
                       runs in this drain) instead of waiting out its delay
    timeout            seconds for the whole drain: then the running job is asked to stop
                       and handed back to its queue, and TimeoutError says what is left

    Job functions must be imported (registered) in this process, as in a worker."""
    return _Drain(tf, queues, skip_retry_delays).run(timeout)


class _Drain:
    def __init__(self, tf: Any, queues: Sequence[str] | None, skip_retry_delays: bool) -> None:
        self.tf = tf
        self.storage: Storage = tf.storage
        self.queues = tuple(queues) if queues else None
        self.skip_retry_delays = skip_retry_delays
        self.id = f"drain:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.performer = Performer(self.id, ("the test process",), JobMetrics(), lambda: tf, self.storage)
        self.ran: list[str] = []
        self.failed: dict[str, None] = {}  # ordered

    def run(self, timeout: float) -> Drained:
        deadline = time.monotonic() + timeout
        while True:
            queues = self.queues or tuple(self.storage.monitor.queue_names())
            fetch = self.storage.fetch(FetchRequest(self.id, queues, 1, LEASE_MS, 5, pass_wake=False))
            if fetch.jobs:
                self._run(fetch.jobs[0], deadline, timeout)
                continue
            due_in = None if fetch.next_wake_ms is None else (fetch.next_wake_ms - fetch.now_ms) / 1000
            if due_in is None or due_in > BURST_HORIZON_S:
                break
            if time.monotonic() + due_in > deadline:
                raise TimeoutError(f"drain: still jobs due after {timeout:g} s (ran {len(self.ran)})")
            time.sleep(max(due_in, 0.001))  # until the next job comes due (a retry, a delayed job)
        return Drained(self.ran, list(self.failed))

    def _run(self, job: FetchedJob, deadline: float, timeout: float) -> None:
        """Runs one job in a thread of its own (so that the drain can give up on it) while
        this thread renews its lease; stores its outcome."""
        self.ran.append(job.id)
        token = CancellationToken()
        job_timeout = self.performer.timeout_of(job)
        outcome: list[Outcome] = []

        ended = threading.Event()  # not Thread.join: Ctrl-C inside a join makes the thread look ended

        def perform() -> None:
            try:
                if self.performer.is_async(job):
                    outcome.append(asyncio.run(self.performer.perform_async(job, token, job_timeout)))
                else:
                    outcome.append(self.performer.perform(job, token, job_timeout))
            finally:
                ended.set()

        runner = threading.Thread(target=perform, name=f"drain-{job.id}", daemon=True)
        started = time.monotonic()
        renew_at = started + LEASE_MS / 4000
        try:
            runner.start()
            while True:
                now = time.monotonic()
                if ended.wait(min(0.05 if job_timeout else LEASE_MS / 4000, max(deadline - now, 0.001))):
                    break
                now = time.monotonic()
                if now >= deadline:  # handed back below, as on Ctrl-C
                    raise TimeoutError(f"drain: job {job.id} ({job.fn}) still ran after {timeout:g} s; it was "
                                       f"handed back to its queue")
                if job_timeout and now - started >= job_timeout + TIMEOUT_GRACE:
                    self._store(job, self.performer.elect(job, None, JobTimeout(
                        f"ran longer than its timeout of {job_timeout:g} s and did not stop when asked")))
                    return
                if job_timeout and now - started >= job_timeout:
                    token.cancel(TIMEOUT)
                if now >= renew_at:
                    self.storage.extend_leases(LEASE_MS, [(job.id, job.token)])
                    renew_at = now + LEASE_MS / 4000
        except BaseException:  # Ctrl-C, or the drain's own timeout: never keep the job
            self._give_up(job, token, ended, outcome)
            raise
        self._store(job, outcome[0])

    def _store(self, job: FetchedJob, run: Outcome) -> None:
        state = run.state
        if self.skip_retry_delays and isinstance(state, Scheduled) and any(isinstance(s, Failed) for s in run.elected):
            state = Enqueued(reason=state.reason)
        applied = self.storage.transition(transition_for(job.id, state, (PROCESSING,), token=job.token,
                                                         fields=run.fields, elected=run.elected))
        if applied.code == 1:
            fn = registry.get(job.fn)
            filters = pipeline(fn.filters) if fn is not None else pipeline()
            if filters:
                StateChanger.applied(filters, job.id, job.fn, applied.old, state)
        if any(isinstance(s, Failed) for s in (state, *run.elected)):
            self.failed[job.id] = None
        else:
            self.failed.pop(job.id, None)

    def _give_up(self, job: FetchedJob, token: CancellationToken, ended: threading.Event,
                 outcome: list[Outcome]) -> None:
        """Asks the job to stop, as a worker's shutdown does: if it ends within the grace
        period its outcome is stored, else it goes back to the front of its queue (and its
        run, if it ends later, is discarded: the lease is gone)."""
        token.cancel(SHUTDOWN)
        ended.wait(TIMEOUT_GRACE)
        if outcome:
            self._store(job, outcome[0])
            return
        self.storage.transition(transition_for(
            job.id, Enqueued(front=True, reason="Requeued: the drain stopped before the job finished"),
            (PROCESSING,), token=job.token))
