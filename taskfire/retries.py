"""Automatic retries, with Hangfire's defaults: 10 attempts, each waiting
(n-1)^4 + 15 + rand(0..29)*n seconds (about 4.5 hours for all ten)."""

from __future__ import annotations

import random
from typing import Sequence

from .errors import ConfigError, JobError
from .filters import ElectStateContext, JobFilter
from .states import Deleted, Enqueued, Failed, Scheduled, State

DEFAULT_RETRIES = 10
ON_EXHAUSTED = ("fail", "delete")


def default_delay(attempt: int) -> float:
    """Seconds before retry `attempt` (1-based): 15-44 s first, about 1 h 50 min tenth."""
    return (attempt - 1) ** 4 + 15 + random.randint(0, 29) * attempt


class RetryPolicy:
    """Elects what a failed run becomes: a scheduled retry, or its last state."""

    def __init__(self, retries: int = DEFAULT_RETRIES, delays: Sequence[float] | None = None,
                 retry_on: tuple[type[BaseException], ...] = (Exception,),
                 on_exhausted: str = "fail") -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, not {retries!r}")
        if delays is not None and (not delays or any(not isinstance(d, (int, float)) or d < 0 for d in delays)):
            raise ConfigError(f"retry_delays must be a non-empty list of seconds >= 0, not {delays!r}")
        if on_exhausted not in ON_EXHAUSTED:
            raise ConfigError(f"on_exhausted must be 'fail' or 'delete', not {on_exhausted!r}")
        self.retries = retries
        self.delays = list(delays) if delays is not None else None
        self.retry_on = retry_on
        self.on_exhausted = on_exhausted

    def delay(self, attempt: int) -> float:
        if self.delays is None:
            return default_delay(attempt)
        return self.delays[min(attempt, len(self.delays)) - 1]

    def elect(self, failed: Failed, error: BaseException, retry_count: int) -> tuple[State, int]:
        """The state after `failed`, and the job's new retry count."""
        if not isinstance(error, self.retry_on) or isinstance(error, JobError):
            return failed, retry_count  # not a failure a retry can fix
        if retry_count < self.retries:
            attempt = retry_count + 1
            message = failed.exception_message or ""
            if len(message) > 50:
                message = message[:50] + "…"
            reason = f"Retry attempt {attempt} of {self.retries}: {message}"
            delay = self.delay(attempt)
            if delay <= 0:
                return Enqueued(reason=reason), attempt
            return Scheduled(delay=delay, reason=reason), attempt
        if self.on_exhausted == "delete":
            reason = ("Retries were disabled for this job." if self.retries == 0
                      else "Exceeded the maximum number of retry attempts.")
            return Deleted(reason=reason, exception_type=failed.exception_type,
                           exception_message=failed.exception_message,
                           exception_details=failed.exception_details), retry_count
        return failed, retry_count


class AutomaticRetry(JobFilter):
    """The built-in election filter: a failed run becomes a scheduled retry (or, after the
    last one, stays Failed or is deleted), by the job's retry policy."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def on_state_election(self, ctx: ElectStateContext) -> None:
        if not isinstance(ctx.candidate, Failed) or ctx.exception is None:
            return
        after, retries = self.policy.elect(ctx.candidate, ctx.exception, ctx.retry_count)
        if after is not ctx.candidate:
            ctx.elect(after)
            if retries != ctx.retry_count:
                ctx.fields["retries"] = str(retries)
