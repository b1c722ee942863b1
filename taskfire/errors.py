"""Exceptions taskfire raises, or records as a job's failure reason."""

from __future__ import annotations


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
