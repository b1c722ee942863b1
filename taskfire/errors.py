"""Exceptions taskfire raises, or records as a job's failure reason."""

from __future__ import annotations

from typing import Any, Callable


class TaskfireError(Exception):
    """Base class of taskfire's own errors."""


class ConfigError(TaskfireError, ValueError):
    """An option, queue name or job definition is invalid; the message names the fix."""


class NotFoundError(TaskfireError, LookupError):
    """No job or batch has this id: it was never created, or it expired after its
    retention period."""


class JobError(TaskfireError):
    """A job could not be run at all. Retrying cannot help, so the job fails at once."""


class UnknownJobError(JobError):
    """The job names a function this worker did not register with @job."""


class PayloadError(JobError):
    """The job's stored arguments cannot be decoded or do not fit the function."""


class JobCancelled(TaskfireError):
    """Raised by `CancellationToken.raise_if_cancelled()` inside a job.

    A job cancelled because its worker is shutting down is returned to its queue, not
    failed.
    """


class JobTimeout(TaskfireError):
    """A job ran longer than its timeout. Retries apply, as to any failure."""


class ReplicationTimeout(TaskfireError):
    """Jobs were stored on the primary, but fewer replicas than asked for (`wait_replicas`)
    confirmed them in time. They exist and will run; they could be lost only if the
    primary failed before its replicas caught up. Enqueueing again would create a second
    copy: retry only if a duplicate is harmless."""

    def __init__(self, job_ids: list[str], acknowledged: int, wanted: int, timeout_ms: int) -> None:
        self.job_ids = job_ids
        self.acknowledged = acknowledged
        self.wanted = wanted
        shown = job_ids[0] + (f" and {len(job_ids) - 1:,} more" if len(job_ids) > 1 else "")
        super().__init__(f"job {shown} stored on the primary, but only {acknowledged} of {wanted} replica(s) "
                         f"acknowledged it within {timeout_ms} ms (WAIT): it would be lost if the primary "
                         f"failed before replicating it")


class EnqueueError(TaskfireError):
    """Jobs were not all stored; the error says which were, which were not, and which may
    have been (a call that got no answer: Redis hung, or the connection dropped on the
    way back):

        stored        ids of jobs in Redis: they will run
        not_stored    ids of jobs Redis refused (a full Redis, wrong credentials)
        maybe_stored  ids of jobs that may or may not be in Redis
        retry()       sends again the jobs not known to be stored, under the same ids:
                      creating is idempotent per id, so none is stored twice. Raises
                      EnqueueError again if they still are not all stored. From
                      AsyncTaskfire it is a coroutine: `await e.retry()`.

    Enqueueing the same call again instead (a new id) would run a maybe-stored job twice."""

    def __init__(self, problem: str, stored: list[str], not_stored: list[str], maybe_stored: list[str],
                 retry: Callable[[], object]) -> None:
        self.problem = problem
        self.stored = stored
        self.not_stored = not_stored
        self.maybe_stored = maybe_stored
        self._retry = retry
        parts = []
        if maybe_stored:
            parts.append(f"{_ids(maybe_stored)} may have been stored")
        if not_stored:
            parts.append(f"{_ids(not_stored)} {'was' if len(not_stored) == 1 else 'were'} not stored")
        if stored:
            parts.append(f"{len(stored):,} stored")
        super().__init__(f"{'; '.join(parts)}: {problem}. e.retry() sends the jobs not known to be stored "
                         f"again under the same ids, which stores each at most once")

    def retry(self) -> Any:
        return self._retry()


def _ids(ids: list[str]) -> str:
    return f"job {ids[0]}" if len(ids) == 1 else f"{len(ids):,} jobs ({ids[0]}, ...)"
