"""Exceptions taskfire raises, or records as a job's failure reason."""

from __future__ import annotations


class TaskfireError(Exception):
    """Base class of taskfire's own errors."""


class ConfigError(TaskfireError, ValueError):
    """An option, queue name or job definition is invalid; the message names the fix."""


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
