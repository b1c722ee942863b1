"""A server: what one `taskfire worker` command runs.

It registers itself in Redis (host, pid, queues, processes, threads, heartbeat), forks
the worker processes, replaces any that die, and beats every `heartbeat_interval`; the
heartbeat also removes servers that stopped beating. On SIGTERM or SIGINT it tells its
workers to stop gracefully; a second signal tells them to stop at once. On SIGTSTP, or
when an operator asks (`taskfire server quiet ID`), it goes quiet before a deploy: running
jobs finish, no new job is taken, no dead process is replaced, until it is stopped.

A signal sent to the whole process group (systemd's default `KillMode=control-group`,
`kill -TERM -PGID`, Ctrl-C) reaches the worker processes as well as the server, and the
server passes its own on: each worker counts the signals it got itself and the ones the
server got (its stop level, shared with the workers, who read it when the server sends
them SIGINT) and obeys the larger count, so one delivery to the group is one graceful
stop, not two signals that mean "hurry".

The heartbeat, like every loop of the workers, survives any Redis error (backoff.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import socket
import threading
import time
from typing import Any, Callable

from ..backoff import Backoff
from ..storage import REDIS_ERRORS, Storage, describe_error
from .config import BURST_DRAINED, BURST_DRAINED_WITH_FAILURES, WorkerConfig

log = logging.getLogger("taskfire.server")

#: A worker process that dies sooner than this after its start counts as crashing, and
#: its replacement waits a little longer each time.
CRASH_WINDOW = 2.0


def _run_worker_process(config: WorkerConfig, worker_id: str, quiet: Any, stop_level: Any,
                        client_factory: Callable[[], Any]) -> None:
    from .worker import WorkerProcess
    code = WorkerProcess(config, worker_id, quiet, client_factory, stop_level).run()
    logging.shutdown()
    os._exit(code)  # threads still running a job are ended with the process


class Slot:
    """One of the server's worker processes, replaced when it dies."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.started = 0.0
        self.crashes = 0
        self.restart_at = 0.0
        self.drained: int | None = None  # --burst: the exit code of a process that found nothing left


class Server:
    """`client_factory` makes, in each worker process, the Taskfire its jobs see as
    `current_job().client`."""

    def __init__(self, config: WorkerConfig, client_factory: Callable[[], Any]) -> None:
        self.config = config
        self.client_factory = client_factory
        self.id = f"{config.server_name}:{os.getpid()}:{secrets.token_hex(2)}"
        self.storage = Storage(config.redis_url, config.prefix)
        self.stop_requested = threading.Event()
        self.signals = 0
        self.slots = [Slot(i) for i in range(config.processes)]
        self.started_ms = int(time.time() * 1000)
        self._context = multiprocessing.get_context("fork")
        self.quiet_event = self._context.Event()  # shared with the worker processes
        self.stop_level = self._context.RawValue("i", 0)  # shared: 1 stop gracefully, 2 stop at once
        self.beats = Backoff(f"server {self.id} heartbeat", describe_error)

    @property
    def quiet(self) -> bool:
        return self.quiet_event.is_set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTSTP, lambda signum, frame: self._go_quiet("SIGTSTP received"))
        log.info("server %s: %d process(es) x %d thread(s) on queues %s", self.id,
                 self.config.processes, self.config.threads, ",".join(self.config.queues))
        next_beat = 0.0
        while not self.stop_requested.is_set():
            now = time.monotonic()
            for slot in self.slots:
                self._tend(slot, now)
            if all(slot.drained is not None for slot in self.slots):
                log.info("server %s: burst over, every worker process found its queues empty", self.id)
                break
            if now >= next_beat:
                next_beat = now + self._beat()
            self.stop_requested.wait(0.1)
        self._stop_workers()
        try:
            self.storage.remove_server(self.id)
        except REDIS_ERRORS as exc:
            log.warning("server %s: could not remove itself from the servers list (%s); another server's "
                        "heartbeat will", self.id, exc)
        log.info("server %s stopped", self.id)
        return 1 if any(slot.drained == BURST_DRAINED_WITH_FAILURES for slot in self.slots) else 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("server %s: %s received, stopping gracefully (again to stop at once)",
                     self.id, signal.Signals(signum).name)
        self.stop_level.value = min(self.signals, 2)
        self._signal_workers()  # they read the stop level: the second signal makes them hurry
        self.stop_requested.set()

    def _tend(self, slot: Slot, now: float) -> None:
        """Starts the slot's process if it has none, or replaces it if it died."""
        p = slot.process
        if p is not None and p.is_alive():
            return
        if p is not None:
            p.join()
            if self.config.burst and p.exitcode in (BURST_DRAINED, BURST_DRAINED_WITH_FAILURES):
                slot.drained, slot.process = p.exitcode, None
        if slot.drained is not None:
            return
        if p is not None:
            how = f"signal {-p.exitcode}" if p.exitcode and p.exitcode < 0 else f"exit code {p.exitcode}"
            lived = now - slot.started
            slot.crashes = slot.crashes + 1 if lived < CRASH_WINDOW else 0
            slot.restart_at = now + min(0.1 * 2 ** slot.crashes, 10.0) if slot.crashes else now
            log.warning("server %s: worker process %d (pid %s) ended with %s after %.1f s; replacing it",
                        self.id, slot.index, p.pid, how, lived)
            slot.process = None
        if now < slot.restart_at or self.quiet:
            return  # a quiet server replaces no process: it is on its way out
        worker_id = f"{self.id}/{slot.index}"
        slot.process = self._context.Process(target=_run_worker_process,
                                             args=(self.config, worker_id, self.quiet_event, self.stop_level,
                                                   self.client_factory),
                                             name=f"taskfire-worker-{slot.index}", daemon=False)
        slot.process.start()
        slot.started = now

    def _beat(self) -> float:
        """Beats; returns the seconds until the next beat (sooner after a failure)."""
        pids = ",".join(str(s.process.pid) for s in self.slots if s.process is not None)
        facts = {
            "host": socket.gethostname(), "pid": str(os.getpid()), "name": self.config.server_name,
            "queues": ",".join(self.config.queues), "processes": str(self.config.processes),
            "state": "quiet" if self.quiet else ("stopping" if self.stop_requested.is_set() else "running"),
            "threads": str(self.config.threads), "started": str(self.started_ms), "workers": pids,
            "timeout": str(self.config.server_timeout),  # when a dashboard stops counting it alive
            "interval": str(self.config.heartbeat_interval),  # when a dashboard shows it as not responding
        }
        try:
            _, dead, quiet_requested = self.storage.heartbeat(self.id, int(self.config.server_timeout * 1000), facts)
        except Exception as exc:  # any error at all: the supervisor must outlive it
            return self.beats.failed(exc)
        self.beats.ok()
        if quiet_requested and not self.quiet:
            self._go_quiet("an operator asked")
            return 0.1  # beat again soon, to show the quiet state
        for other in dead:
            log.warning("server %s: server %s stopped beating and was removed; its jobs are "
                        "requeued as their leases lapse", self.id, other)
        return self.config.heartbeat_interval

    def _go_quiet(self, why: str) -> None:
        """Takes no new job from now on; running jobs finish. Until SIGTERM/SIGINT."""
        if self.quiet:
            return
        log.info("server %s quiet (%s): finishing running jobs, taking no new ones", self.id, why)
        self.quiet_event.set()
        for slot in self.slots:  # end their idle waits so that they notice
            if slot.process is not None:
                try:
                    self.storage.wake_worker(f"{self.id}/{slot.index}")
                except REDIS_ERRORS:
                    pass  # it notices at its next idle wait's end instead

    def _signal_workers(self) -> None:
        """Tells each worker process to read the stop level (SIGINT: the server's word;
        a worker takes SIGTERM as an operator's)."""
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                try:
                    os.kill(slot.process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def _stop_workers(self) -> None:
        deadline = time.monotonic() + self.config.shutdown_timeout + 10
        for slot in self.slots:
            p = slot.process
            if p is None:
                continue
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                log.error("server %s: worker process %s did not stop; killing it", self.id, p.pid)
                p.kill()
                p.join()
