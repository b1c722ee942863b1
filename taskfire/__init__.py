"""taskfire: background jobs on Redis, with states, retries, schedules and workers."""

from .async_client import AsyncTaskfire
from .client import Taskfire
from .cron import Cron
from .context import CancellationToken, JobContext, current_job
from .errors import (ConfigError, EnqueueError, JobCancelled, NotFoundError, PayloadError, ReplicationTimeout,
                     TaskfireError,
                     UnknownJobError)
from .job import JobFunction, job
from .records import ExceptionInfo, HistoryEntry, Job
from .recurring import RecurringJob
from .states import Deleted, Enqueued, Failed, Scheduled, State, Succeeded

__all__ = [
    # client and jobs
    "Taskfire", "AsyncTaskfire", "job", "JobFunction", "Job", "HistoryEntry", "ExceptionInfo",
    # recurring jobs
    "Cron", "RecurringJob",
    # inside a running job
    "current_job", "JobContext", "CancellationToken",
    # states
    "State", "Enqueued", "Scheduled", "Succeeded", "Failed", "Deleted",
    # errors
    "TaskfireError", "ConfigError", "JobCancelled", "NotFoundError", "PayloadError", "UnknownJobError",
    "ReplicationTimeout", "EnqueueError",
]
