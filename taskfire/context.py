"""What a running job can know about itself: `taskfire.current_job()`."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from .errors import JobCancelled

SHUTDOWN = "shutdown"
LEASE_LOST = "lease lost"


class CancellationToken:
    """Set when the job should stop early: its worker is shutting down, or the job was
    requeued, deleted or taken over while it ran ("lease lost"). Long jobs should check
    it between steps; a job that raises `JobCancelled` on shutdown goes back to its queue.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleeps up to `timeout` seconds, waking early (True) if cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled(f"job cancelled: {self.reason}")


class JobContext:
    """The running job: its id, function, queue, attempt, cancellation token and named
    parameters."""

    def __init__(self, job_id: str, name: str, queue: str, attempt: int,
                 args: tuple[Any, ...], kwargs: dict[str, Any], worker_id: str,
                 cancellation: CancellationToken | None = None, client: Any = None) -> None:
        self.id = job_id
        self.name = name
        self.queue = queue
        self.attempt = attempt  # 1 on the first run, 2 on the first retry, ...
        self.args = args
        self.kwargs = kwargs
        self.worker_id = worker_id
        self.cancellation = cancellation or CancellationToken()
        self.client = client

    def set_param(self, name: str, value: Any) -> None:
        """Stores a named parameter on this job: it survives retries, and clients and
        the dashboard see it (`get_job(id).params`)."""
        self.client.set_job_param(self.id, name, value)

    def get_param(self, name: str, default: Any = None) -> Any:
        return self.client.get_job_param(self.id, name, default)

    def __repr__(self) -> str:
        return f"<JobContext {self.name} id={self.id} attempt={self.attempt}>"


_current: ContextVar[JobContext | None] = ContextVar("taskfire_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this thread, or None outside a job."""
    return _current.get()
