"""One worker process: a fetch loop feeding executor threads, and a lease keeper.

    fetch      takes as many jobs as there are idle threads, in one script call that
               also moves each to Processing under a lease; when there is nothing, it
               blocks on the queues' wake lists until a job arrives or the next
               scheduled job or lease deadline is due, with the next fetch sent behind
               the block, so that a woken worker has its job in the same round trip
    execute    each thread runs a job, then records its outcome and fetches its next
               job in the same round trip; outcomes of threads that finish while
               another's call is on its way go together in the next call (finisher.py)
    keep       renews the leases of every held job in one call, a few times per lease
               period; a job whose lease was taken away is told through its
               cancellation token
    metrics    adds the process's run-time and retry counts to Redis every few seconds
    shutdown   on SIGTERM, or when its server says so: no new fetches, cancellation
               tokens fire, running jobs get `shutdown_timeout` seconds, then whatever
               is left goes back to the front of its queue; a second stop (see server.py
               for how signals to the whole process group count) gives them back at once

Every loop survives any error, Redis's or ours, with a backoff and one log line per
change of state (backoff.py); a job that taskfire itself cannot run (a corrupt record)
fails with the reason, and its thread takes the next job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, Sequence

from ..backoff import Backoff
from ..context import LEASE_LOST, SHUTDOWN, TIMEOUT, CANCELLED, CancellationToken
from ..errors import JobTimeout
from ..filters import pipeline
from ..job import default_client, registry
from ..state_changer import StateChanger, transition_for
from ..states import PROCESSING, Enqueued, Failed, State
from ..storage import REDIS_ERRORS, Fetch, FetchedJob, FetchRequest, Storage, describe_error
from .config import BURST_DRAINED, BURST_DRAINED_WITH_FAILURES, BURST_HORIZON_S, WorkerConfig
from .finisher import Deferrals, Finished, Finisher
from .metrics import JobMetrics
from .performer import Outcome, Performer, failure
from .scheduler import RecurringScheduler

log = logging.getLogger("taskfire.worker")

#: Seconds a job past its timeout gets to stop after its cancellation token fires.
TIMEOUT_GRACE = 1.0


class Held:
    """A job this process fetched and holds a lease on, until its outcome is stored."""

    __slots__ = ("job", "cancellation", "lost", "finishing", "deadline", "timed_out")

    def __init__(self, job: FetchedJob) -> None:
        self.job = job
        self.cancellation = CancellationToken()
        self.lost = False
        self.finishing = False  # its outcome is being stored, which ends the lease
        self.deadline: float | None = None  # monotonic time its timeout ends
        self.timed_out: float | None = None  # when its cancellation token was fired for it


class WorkerProcess:
    """`client_factory` makes the Taskfire that jobs see as `current_job().client` (and
    that `job.enqueue(...)` uses inside them); by default, this process's newest."""

    def __init__(self, config: WorkerConfig, worker_id: str, quiet: Any = None,
                 client_factory: Callable[[], Any] = default_client, stop_level: Any = None) -> None:
        """`stop_level`: the server's (a shared int: 1 stop gracefully, 2 at once)."""
        self.config = config
        self.id = worker_id
        self.quiet = quiet if quiet is not None else threading.Event()  # set: take no new job
        self.client = client_factory()
        self.storage = Storage(config.redis_url, config.prefix, retention_s=int(config.retention))
        self.changer = StateChanger(self.storage)
        self.lease_ms = int(config.lease_timeout * 1000)
        self.stopping = threading.Event()  # no new jobs
        self.exiting = threading.Event()   # the process is about to end
        self.hurry = threading.Event()     # a second stop signal: do not wait for jobs
        self.signals = 0                   # SIGTERMs this process got itself
        self.stop_level = stop_level
        self.held: dict[str, Held] = {}
        self.lock = threading.Condition()
        self.idle = config.threads
        self.handoff: queue.SimpleQueue[FetchedJob | None] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.async_slots = threading.BoundedSemaphore(config.async_limit)
        self.metrics = JobMetrics()
        self.performer = Performer(worker_id, config.modules, self.metrics, lambda: self.client, self.storage)
        # a lane per shard: a shard failing over holds back only its own outcomes (finisher.py)
        self.finisher = Finisher(self._store_outcomes, lambda f: self.storage.shard_of(f.job.id).index)
        self.outcomes: dict[int, Backoff] = {}  # a shard's, for its one sender at a time
        self.deferrals = Deferrals(lambda group: self._store_now(group, self.request(0, pass_wake=False)),
                                   self._wait_for_shard, lambda group: self._let_go(*(o.job for o in group)))
        self.wake_keys = self.storage.wake_keys(worker_id, config.queue_names)
        self.drained = False  # --burst: stopped for want of jobs
        self.failed_here: set[str] = set()  # --burst: jobs whose last run in this process failed

    def request(self, max_jobs: int, pass_wake: bool = True) -> FetchRequest:
        return FetchRequest(self.id, self.config.queues, max_jobs, self.lease_ms,
                            self.config.max_recoveries, pass_wake)

    # -- the process -----------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_server_word)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        self._on_server_word(signal.SIGINT, None)  # a stop that came before the handlers
        threads = [threading.Thread(target=self._execute_loop, name=f"executor-{i}", daemon=True)
                   for i in range(self.config.threads)]
        self.fetcher = threading.Thread(target=self._fetch_loop, name="fetch", daemon=True)
        threads.append(self.fetcher)
        threads.append(threading.Thread(target=self._keep_leases, name="leases", daemon=True))
        threads.append(threading.Thread(target=self._watch_timeouts, name="timeouts", daemon=True))
        threads.append(threading.Thread(target=self._flush_metrics, name="metrics", daemon=True))
        if self.config.scheduler:
            scheduler = RecurringScheduler(self.storage, self.stopping, self.config.idle_wait, self.id)
            threads.append(threading.Thread(target=scheduler.run, name="scheduler", daemon=True))
        # The kernel gives a process's signal to any thread that does not block it, and
        # Python runs the handler only once the main thread wakes: a signal landing on a
        # thread waiting in Redis would wait out the main thread's one-second tick. The
        # threads inherit a mask that blocks them, so the main thread takes every signal.
        handled = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        try:
            for t in threads:
                t.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        log.info("worker %s taking jobs from %s with %d threads", self.id,
                 ",".join(self.config.queues), self.config.threads)
        while not self.stopping.wait(1.0):
            pass
        self._shutdown()
        if not self.drained:
            return 0
        return BURST_DRAINED_WITH_FAILURES if self.failed_here else BURST_DRAINED

    def stop(self, why: str) -> None:
        if not self.stopping.is_set():
            log.info("worker %s stopping: %s", self.id, why)
            self.stopping.set()

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM: an operator's, sent to this process or to its whole process group."""
        self.signals += 1
        self._obey(signal.Signals(signum).name)

    def _on_server_word(self, signum: int, frame: Any) -> None:
        """SIGINT: the server's word that its stop level changed (Ctrl-C sends one to the
        whole group too, and the server's own follows)."""
        self._obey("its server is stopping")

    def _obey(self, why: str) -> None:
        """Stops as the larger count of stop signals says: this process's own SIGTERMs or
        its server's signals. A signal to the whole group counts once in each, so once."""
        level = max(self.signals, self.stop_level.value if self.stop_level is not None else 0)
        if level >= 2 and not self.hurry.is_set():
            log.info("worker %s: stopping at once (second stop signal)", self.id)
            self.hurry.set()
            with self.lock:
                self.lock.notify_all()
        if level >= 1:
            self.stop(why)

    def _shutdown(self) -> None:
        try:
            self.storage.wake_worker(self.id)  # ends the fetch loop's wait
        except REDIS_ERRORS:
            pass  # it ends at its idle wait's end instead
        # A fetch in flight hands its jobs out before the executors' stop sentinels, so
        # they are given back at once rather than after the shutdown timeout.
        with self.lock:
            self.lock.notify_all()  # a fetch loop waiting for a free thread
        self.fetcher.join(self.config.idle_wait + 2)
        with self.lock:
            running = len(self.held)
            for h in self.held.values():
                h.cancellation.cancel(SHUTDOWN)
        for _ in range(self.config.threads):
            self.handoff.put(None)
        if running:
            log.info("worker %s: waiting up to %.0f s for %d running job(s)", self.id,
                     self.config.shutdown_timeout, running)
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self.lock:
            while self.held and not self.hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            left_behind = list(self.held.values())
        for h in left_behind:
            self._give_back(h.job, "Requeued: its worker shut down before the job finished")
        self.exiting.set()
        try:
            self.storage.forget_worker(self.id)
        except REDIS_ERRORS:
            pass  # a wake-up list of at most one token, left behind
        try:
            self.metrics.flush(self.storage)
        except REDIS_ERRORS as exc:
            log.warning("worker %s: job metrics of its last %.0f s lost (%s)", self.id,
                        self.config.metrics_interval, exc)
        log.info("worker %s stopped (%d job(s) returned to their queue)", self.id, len(left_behind))

    # -- fetch -----------------------------------------------------------------------

    def _fetch_loop(self) -> None:
        backoff = Backoff(f"worker {self.id} fetch", describe_error)
        batch = None  # the last fetch, when it found nothing: wait before fetching again
        while not self.stopping.is_set():
            with self.lock:
                while self.idle == 0 and not self.stopping.is_set():
                    self.lock.wait()
                free = self.idle
            if self.stopping.is_set():
                return
            if self.quiet.is_set():
                log.info("worker %s quiet: taking no new jobs", self.id)
                return
            try:
                if batch is None:
                    batch = self.storage.fetch(self.request(free))
                if self.config.burst and not batch.jobs:
                    if self._burst_over(batch):
                        return
                    batch = None
                    continue
                if not batch.jobs:
                    wait = self.config.idle_wait
                    if batch.next_wake_ms is not None:
                        wait = min(wait, max((batch.next_wake_ms - batch.now_ms) / 1000, 0.001))
                    batch = self.storage.wait_then_fetch(self.wake_keys, wait, self.request(free))
                backoff.ok()
                if batch.jobs:  # even when stopping: the executors give them back at once
                    self._hold(batch.jobs)
                    for j in batch.jobs:
                        self.handoff.put(j)
                    batch = None
            except Exception as exc:  # Redis's trouble or a bug: logged once, tried again
                batch = None
                backoff.wait(exc, self.stopping)

    def _burst_over(self, batch: Fetch) -> bool:
        """--burst, when a fetch found nothing: over (the process stops) if it holds no job
        and none is due within BURST_HORIZON_S; else it waits, for a running job to finish
        (it may enqueue more) or the next due time, before fetching again."""
        due_in = None if batch.next_wake_ms is None else (batch.next_wake_ms - batch.now_ms) / 1000
        with self.lock:
            if not self.held and (due_in is None or due_in > BURST_HORIZON_S):
                self.drained = True
                self.stop("burst: the queues are empty and nothing is due")
                return True
            self.lock.wait(BURST_HORIZON_S if self.held or due_in is None else max(due_in, 0.001))
        return False

    def _hold(self, jobs: list[FetchedJob]) -> None:
        with self.lock:
            for j in jobs:
                self.held[j.id] = Held(j)
            self.idle -= len(jobs)

    # -- execute ---------------------------------------------------------------------

    def _execute_loop(self) -> None:
        while True:
            job = self.handoff.get()
            if job is None:
                return
            while job is not None:
                job = self._run_safely(job)
            with self.lock:
                self.idle += 1
                self.lock.notify_all()

    def _run_safely(self, job: FetchedJob) -> FetchedJob | None:
        """Runs a job; if taskfire itself fails on it (a bug, a record it cannot read),
        the job fails with that reason and the thread goes on to its next job."""
        try:
            return self._run_one(job)
        except Exception as exc:
            log.exception("job %s (%s): taskfire failed to run it; it fails", job.id, job.fn)
            held = self.held.get(job.id)
            if held is None:
                return None
            try:
                return self._finish(job, held, Outcome(failure(exc), [], {}), fetch_next=True)
            except Exception:
                log.exception("job %s: its failure could not be stored either; it runs again when its lease "
                              "lapses", job.id)
                self._let_go(job)
                return None

    def _run_one(self, job: FetchedJob) -> FetchedJob | None:
        """Runs a held job and stores its outcome; returns the next job, if one came back."""
        held = self.held.get(job.id)
        if held is None:  # a shutdown that ran out of time gave it back before this thread got to it
            return None
        if self.stopping.is_set():
            self._give_back(job, "Requeued: its worker shut down before the job started")
            return None
        if self.quiet.is_set():  # fetched as the quiet request woke the worker
            self._give_back(job, "Requeued: its worker went quiet before the job started")
            return None
        timeout = self.performer.timeout_of(job)
        if timeout:
            held.deadline = time.monotonic() + timeout
        if self.performer.is_async(job):
            self.async_slots.acquire()  # at most `async_limit` async jobs at once
            asyncio.run_coroutine_threadsafe(self._perform_async(job, held, timeout), self._event_loop())
            return None  # this thread is free again; the event loop finishes the job
        outcome = self.performer.perform(job, held.cancellation, timeout)
        # The next job for this thread only: waking others is the fetch loop's business.
        return self._finish(job, held, outcome, fetch_next=True)

    async def _perform_async(self, job: FetchedJob, held: Held, timeout: float | None) -> None:
        """Runs an async job on the event loop; its outcome is stored from a thread, so
        the loop never waits for Redis."""
        try:
            outcome = await self.performer.perform_async(job, held.cancellation, timeout)
            await asyncio.get_running_loop().run_in_executor(None, self._finish, job, held, outcome, False)
        finally:
            self.async_slots.release()
            with self.lock:
                self.lock.notify_all()

    def _finish(self, job: FetchedJob, held: Held, run: Outcome, fetch_next: bool) -> FetchedJob | None:
        """Stores a run's outcome (and takes the thread's next job in the same call)."""
        with self.lock:
            if held.finishing:
                return None  # timed out, stored as such, and this process is being replaced
            held.finishing = True
        wants_next = fetch_next and not (self.stopping.is_set() or self.quiet.is_set())
        done = Finished(job, transition_for(job.id, run.state, (PROCESSING,), token=job.token,
                                            fields=run.fields, elected=run.elected), wants_next)
        done.after = lambda: self._stored(job, run, done)  # if it is stored after this thread moved on
        self.finisher.store(done)
        if done.code is None or done.deferred:
            return None  # not stored (its lease lapses and it runs again), or kept to be sent again
        self._stored(job, run, done)
        return done.next_job

    def _stored(self, job: FetchedJob, run: Outcome, done: Finished) -> None:
        """What follows an outcome stored: its log line, its filters' `applied`, metrics."""
        assert done.code is not None
        self._log_outcome(job, run.state, run.elected, done.code, done.old)
        if done.code == 1:
            fn = registry.get(job.fn)
            filters = pipeline(fn.filters) if fn is not None else pipeline()
            if filters:
                self.changer.applied(filters, job.id, job.fn, done.old, run.state)
            if "retries" in run.fields:  # the retry policy elected a retry
                self.metrics.retried(job.fn)
            if self.config.burst:
                failed = any(isinstance(s, Failed) for s in (run.state, *run.elected))
                (self.failed_here.add if failed else self.failed_here.discard)(job.id)

    def _store_outcomes(self, group: list[Finished]) -> None:
        """Stores finished jobs' outcomes (all of one shard: finisher.py) and fetches the
        next jobs their threads want, in one script call. If the shard's primary is away,
        the group is kept and sent again by a thread of its own until it is stored
        (Deferrals), and the threads go on: a shard failing over holds back no other."""
        lane = self.storage.shard_of(group[0].job.id).index
        if self.deferrals.take(lane, group):
            return  # the shard's earlier outcomes are still waiting for it: these wait with them
        try:
            self._store_now(group, self.request(sum(o.wants_next for o in group), pass_wake=False))
        except Exception as exc:  # Redis away, full, read-only...: kept until it is back
            if self.exiting.is_set():
                self._let_go(*(o.job for o in group))
                return
            self.deferrals.keep(lane, group, exc)

    def _wait_for_shard(self, lane: Any, exc: BaseException) -> bool:
        """Waits before a shard's kept outcomes are sent again (50 ms, doubling up to
        2 s); whether to send them (not if the process is exiting)."""
        backoff = self.outcomes.setdefault(lane, Backoff(f"worker {self.id} storing outcomes of shard {lane}",
                                                         describe_error))
        backoff.wait(exc, self.exiting)
        return not self.exiting.is_set()

    def _store_now(self, group: list[Finished], request: FetchRequest) -> None:
        """One call storing a group's outcomes (and fetching next jobs); raises if Redis
        could not be reached. A call Redis refuses for what it carried is repeated one
        outcome at a time, so one bad change harms no other."""
        try:
            results, fetched = self.storage.finish([o.change for o in group], request)
        except Exception as exc:
            if describe_error(exc).transient:
                raise
            self._refused(group, exc)  # this call's own data: trying again cannot help
            return
        lane = self.storage.shard_of(group[0].job.id).index
        if lane in self.outcomes:
            self.outcomes[lane].ok()
        jobs = iter(fetched.jobs)
        with self.lock:
            for o, (code, old) in zip(group, results, strict=True):
                o.code, o.old = code, old
                self.held.pop(o.job.id, None)
                if o.wants_next:
                    o.next_job = next(jobs, None)
                    if o.next_job is not None:
                        self.held[o.next_job.id] = Held(o.next_job)
            if self.stopping.is_set():
                self.lock.notify_all()  # the shutdown waits for `held` to empty

    def _refused(self, group: list[Finished], exc: Exception) -> None:
        """A call Redis refused for what it carried: each outcome is tried alone."""
        if len(group) > 1:
            for o in group:
                self._store_outcomes([o])
            return
        job = group[0].job
        log.error("job %s (%s): Redis refused its outcome; it runs again when its lease lapses", job.id, job.fn,
                  exc_info=exc)
        self._let_go(job)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The process's event loop for async jobs, started on first use."""
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="async-jobs", daemon=True).start()
            return self.loop

    def _let_go(self, *jobs: FetchedJob) -> None:
        """Stops holding jobs (no more lease renewals), and tells a waiting shutdown."""
        with self.lock:
            for job in jobs:
                self.held.pop(job.id, None)
            self.lock.notify_all()

    def _watch_timeouts(self) -> None:
        """Fires the cancellation token of a job past its timeout; if the job has not
        stopped TIMEOUT_GRACE seconds later, stores its failure and replaces this process
        (Python cannot stop a thread), returning its other jobs to their queue."""
        while not self.exiting.wait(0.1):
            now = time.monotonic()
            with self.lock:
                due = [h for h in self.held.values()
                       if h.deadline is not None and now >= h.deadline and not h.finishing]
            for h in due:
                if h.timed_out is None:
                    h.timed_out = now
                    h.cancellation.cancel(TIMEOUT)
                    log.warning("job %s (%s) ran past its timeout: asking it to stop", h.job.id, h.job.fn)
                elif now - h.timed_out >= TIMEOUT_GRACE:
                    try:
                        self._hard_stop(h)
                    except Exception:  # (its failure is stored, or its lease lapses: either way it ends)
                        log.exception("job %s: stopping it after its timeout failed", h.job.id)

    def _hard_stop(self, h: Held) -> None:
        with self.lock:
            if h.finishing or self.held.get(h.job.id) is not h:
                return
            h.finishing = True  # whatever its thread stores later is discarded
            del self.held[h.job.id]
        error = JobTimeout(f"ran longer than its timeout and did not stop within {TIMEOUT_GRACE:g} s "
                           f"of being asked; its worker process was replaced")
        state, elected, fields = self.performer.elect(h.job, None, error)
        try:
            self.storage.transition(transition_for(h.job.id, state, (PROCESSING,), token=h.job.token,
                                                   fields=fields, elected=elected))
        except REDIS_ERRORS as exc:
            log.warning("job %s: its timeout could not be stored (%s); its lease will lapse", h.job.id, exc)
        log.error("job %s (%s) ran past its timeout and ignored cancellation: replacing worker process %d; "
                  "its other running jobs go back to their queue", h.job.id, h.job.fn, os.getpid())
        self.stop("a job ran past its timeout")

    def _give_back(self, job: FetchedJob, reason: str) -> None:
        """Returns a held job to the front of its queue, if it is still ours."""
        try:
            self.storage.transition(transition_for(
                job.id, Enqueued(front=True, reason=reason), (PROCESSING,), token=job.token))
        except REDIS_ERRORS as exc:
            log.warning("job %s could not be requeued (%s); it will be when its lease lapses", job.id, exc)
        self._let_go(job)

    def _log_outcome(self, job: FetchedJob, state: State, elected: Sequence[State], code: int, old: str) -> None:
        if code != 1 and old == state.name:
            log.debug("job %s (%s) %s (stored by an earlier try of the same call)", job.id, job.fn, old)
        elif code != 1:
            log.warning("job %s (%s) became %s while it ran; its outcome (%s) was discarded",
                        job.id, job.fn, old or "missing", state.name)
        elif elected:
            log.warning("job %s (%s) failed, then %s: %s", job.id, job.fn, state.name, state.reason)
        elif isinstance(state, Failed):
            log.error("job %s (%s) failed: %s", job.id, job.fn, state.reason)
        else:
            log.debug("job %s (%s) %s", job.id, job.fn, state.name)

    # -- metrics ---------------------------------------------------------------------

    def _flush_metrics(self) -> None:
        """Adds this process's counts to Redis every `metrics_interval` (and once more at
        shutdown): one round trip, however many jobs ran. Counts Redis refuses are kept
        for the next flush."""
        backoff = Backoff(f"worker {self.id} metrics", describe_error)
        while not self.exiting.wait(self.config.metrics_interval):
            try:
                self.metrics.flush(self.storage)
                backoff.ok()
            except Exception as exc:
                backoff.failed(exc)  # the next try is the next interval's

    # -- leases ----------------------------------------------------------------------

    def _keep_leases(self) -> None:
        parent = os.getppid()
        backoff = Backoff(f"worker {self.id} leases", describe_error)
        while not self.exiting.wait(self.config.lease_timeout / 4):
            if os.getppid() != parent:
                self.stop("its server process is gone")
            with self.lock:
                leases = [(i, h.job.token) for i, h in self.held.items() if not (h.lost or h.finishing)]
            if not leases:
                continue
            try:
                lost, cancel = self.storage.extend_leases(self.lease_ms, leases)
                backoff.ok()
            except Exception as exc:
                backoff.wait(exc, self.exiting)
                continue
            with self.lock:
                for job_id in lost:
                    h = self.held.get(job_id)
                    if h is not None and not h.finishing:
                        h.lost = True
                        h.cancellation.cancel(LEASE_LOST)
                        log.warning("job %s was requeued, deleted or taken over while it ran", job_id)
                for job_id in cancel:
                    h = self.held.get(job_id)
                    if h is not None and not h.cancellation.is_cancelled:
                        h.cancellation.cancel(CANCELLED)
                        log.info("job %s: cancellation requested", job_id)

