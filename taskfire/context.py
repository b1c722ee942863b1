"""What a running job can know about itself: `taskfire.current_job()`."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, Callable, Protocol

from .errors import JobCancelled
from .payload import decode_value, encode_value, param_field

SHUTDOWN = "shutdown"
LEASE_LOST = "lease lost"
TIMEOUT = "timeout"
CANCELLED = "cancelled by request"

#: Longest log line kept, and log lines kept per job (the oldest go first).
LOG_LINE_LIMIT = 2000
LOG_LINES_KEPT = 1000


class CancellationToken:
    """Set when the job should stop early: its worker is shutting down, the job was
    requeued, deleted or taken over while it ran ("lease lost"), it ran past its timeout,
    or someone called `tf.cancel(job_id)`. Long jobs should check it between steps. A job
    that raises `JobCancelled` goes back to its queue on shutdown, fails with JobTimeout
    after its timeout, and is deleted when cancelled by request."""

    def __init__(self) -> None:
        self.reason: str | None = None  # set once: the token has fired
        self._callbacks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._event: threading.Event | None = None  # made by the first wait(): most jobs never wait

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            event = self._event
            callbacks, self._callbacks = self._callbacks, []
        if event is not None:
            event.set()
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Calls `callback` when the token fires (at once if it has)."""
        with self._lock:
            if self.reason is None:
                self._callbacks.append(callback)
                return
        callback()

    @property
    def is_cancelled(self) -> bool:
        return self.reason is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Sleeps up to `timeout` seconds, waking early (True) if cancelled."""
        with self._lock:
            if self.reason is not None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self.reason is not None:
            raise JobCancelled(f"job cancelled: {self.reason}")


class JobStore(Protocol):
    """What a running job writes about itself (taskfire.storage.Storage)."""

    def set_job_field(self, job_id: str, field: str, value: bytes | str) -> None: ...
    def get_job_field(self, job_id: str, field: str) -> bytes | None: ...
    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None: ...
    def append_log(self, job_id: str, line: str, keep: int) -> None: ...


class JobContext:
    """The running job: its id, function, queue, attempt, cancellation token and named
    parameters; `client` is the worker's Taskfire, so jobs can enqueue jobs."""

    def __init__(self, job_id: str, name: str, queue: str, attempt: int,
                 args: tuple[Any, ...], kwargs: dict[str, Any], worker_id: str,
                 cancellation: CancellationToken | None = None, client: Any = None,
                 store: JobStore | None = None) -> None:
        self.id = job_id
        self.name = name
        self.queue = queue
        self.attempt = attempt  # 1 on the first run, 2 on the first retry, ...
        self.args = args
        self.kwargs = kwargs
        self.worker_id = worker_id
        self.cancellation = cancellation or CancellationToken()
        self.client = client
        self._store = store

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError(f"job {self.id} runs outside a worker: it has nowhere to store its parameters, "
                               f"progress or log")
        return self._store

    def set_param(self, name: str, value: Any) -> None:
        """Stores a named parameter on this job: it survives retries, and clients and
        the dashboard see it (`get_job(id).params`)."""
        self.store.set_job_field(self.id, param_field(name), encode_value(name, value))

    def get_param(self, name: str, default: Any = None) -> Any:
        raw = self.store.get_job_field(self.id, param_field(name))
        return default if raw is None else decode_value(raw)

    def progress(self, done: float, total: float | None = None) -> None:
        """Reports progress: a fraction (0.42), or `done` of `total` items. Shown in the
        job's details while it runs, and kept after."""
        if total is not None and total <= 0:
            raise ValueError("progress total must be > 0")
        fraction = done / total if total is not None else done
        self.store.set_progress(self.id, {"done": done, "total": total, "fraction": round(fraction, 6)})

    def log(self, line: str) -> None:
        """Appends a line to the job's log (the last 1,000 lines are kept, each up to
        2,000 characters), shown in its details."""
        self.store.append_log(self.id, str(line)[:LOG_LINE_LIMIT], LOG_LINES_KEPT)

    def __repr__(self) -> str:
        return f"<JobContext {self.name} id={self.id} attempt={self.attempt}>"


_current: ContextVar[JobContext | None] = ContextVar("taskfire_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this thread, or None outside a job."""
    return _current.get()
