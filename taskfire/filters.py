"""Job filters: code that runs around a job's creation, its run, and its changes of state,
at Hangfire's four hook points.

    client       on_creating (may set parameters, or cancel the creation) / on_created
    server       on_performing (may cancel the run) / on_performed (sees the result or
                 exception, may mark the exception handled)
    election     on_state_election: may replace the candidate state
    application  on_state_applied / on_state_unapplied, after a change is stored

Filters are registered for every job (`tf.filters.add(f)`, which is process-wide) or for
one (`@job(filters=[f])`). Order: the global filters in the order added, then the job's.
The "-ing" hooks and elections run in that order; the "-ed", applied and unapplied hooks
in the reverse order, so a filter wraps the ones after it. Automatic retries are the
built-in election filter `AutomaticRetry`, which runs before every other election.

Application hooks run where a change is asked for from Python (a worker storing an
outcome, `change_state`, `delete`, `requeue`); changes a script makes on its own (a
delayed job coming due, a lost worker's job requeued, a continuation released) do not
run Python hooks.
"""

from __future__ import annotations

from typing import Any

from .states import State


class CreationCancelled(Exception):
    """Raised by enqueue (and the like) when a client filter cancelled the creation."""


class CreatingContext:
    def __init__(self, job_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], queue: str,
                 job_id: str = "") -> None:
        self.job_id = job_id  # the id the job will have if it is stored
        self.job_name = job_name
        self.args = args
        self.kwargs = kwargs
        self.queue = queue
        self.params: dict[str, Any] = {}  # stored with the job: readable by it and by clients
        self.cancelled: str | None = None

    def set_param(self, name: str, value: Any) -> None:
        self.params[name] = value

    def cancel(self, reason: str) -> None:
        self.cancelled = reason


class CreatedContext:
    def __init__(self, job_id: str, creating: CreatingContext) -> None:
        self.job_id = job_id
        self.job_name = creating.job_name
        self.args = creating.args
        self.kwargs = creating.kwargs
        self.queue = creating.queue
        self.params = creating.params


class PerformingContext:
    def __init__(self, job: Any) -> None:
        self.job = job  # the JobContext: id, name, queue, attempt, params
        self.cancelled: str | None = None

    def cancel(self, reason: str) -> None:
        """Do not run the job: it is deleted with this reason."""
        self.cancelled = reason


class PerformedContext:
    def __init__(self, job: Any, result: Any, exception: BaseException | None) -> None:
        self.job = job
        self.result = result
        self.exception = exception
        self.exception_handled = False  # set True: the run counts as a success


class ElectStateContext:
    def __init__(self, job_id: str, job_name: str, current_state: str | None, candidate: State,
                 exception: BaseException | None = None, retry_count: int = 0) -> None:
        self.job_id = job_id
        self.job_name = job_name
        self.current_state = current_state  # "Processing" for a worker's outcome; None if unknown
        self.candidate = candidate
        self.exception = exception
        self.retry_count = retry_count
        self.fields: dict[str, bytes | str] = {}  # more fields for the job hash
        self.elected: list[State] = []  # the candidates replaced so far, for the history

    def elect(self, state: State) -> None:
        """Replaces the candidate; the replaced one is kept in the job's history."""
        if state is not self.candidate:
            self.elected.append(self.candidate)
            self.candidate = state


class ApplyStateContext:
    def __init__(self, job_id: str, job_name: str, old_state: str, new_state: State) -> None:
        self.job_id = job_id
        self.job_name = job_name
        self.old_state = old_state
        self.new_state = new_state


class JobFilter:
    """Override the hooks you need; the others do nothing."""

    def on_creating(self, ctx: CreatingContext) -> None: ...
    def on_created(self, ctx: CreatedContext) -> None: ...
    def on_performing(self, ctx: PerformingContext) -> None: ...
    def on_performed(self, ctx: PerformedContext) -> None: ...
    def on_state_election(self, ctx: ElectStateContext) -> None: ...
    def on_state_applied(self, ctx: ApplyStateContext) -> None: ...
    def on_state_unapplied(self, ctx: ApplyStateContext) -> None: ...


class FilterList:
    """The process-wide filters (`tf.filters`)."""

    def __init__(self) -> None:
        self._filters: list[JobFilter] = []

    def add(self, f: JobFilter) -> JobFilter:
        if not isinstance(f, JobFilter):
            raise TypeError(f"a filter must be a JobFilter, not {type(f).__name__}")
        self._filters.append(f)
        return f

    def remove(self, f: JobFilter) -> None:
        if f in self._filters:
            self._filters.remove(f)

    def __iter__(self) -> Any:
        return iter(list(self._filters))

    def __len__(self) -> int:
        return len(self._filters)


global_filters = FilterList()


def pipeline(job_filters: tuple[JobFilter, ...] = ()) -> list[JobFilter]:
    """The filters of one job, in order (an empty list costs next to nothing: the hot
    paths skip every context object when there are no filters)."""
    if not global_filters._filters:
        return list(job_filters)
    return [*global_filters._filters, *job_filters]


def run_creating(filters: list[JobFilter], ctx: CreatingContext) -> None:
    for f in filters:
        f.on_creating(ctx)
        if ctx.cancelled is not None:
            raise CreationCancelled(f"creating {ctx.job_name} was cancelled by "
                                    f"{type(f).__name__}: {ctx.cancelled}")


def run_created(filters: list[JobFilter], ctx: CreatedContext) -> None:
    for f in reversed(filters):
        f.on_created(ctx)


def run_election(filters: list[JobFilter], ctx: ElectStateContext) -> State:
    for f in filters:
        f.on_state_election(ctx)
    return ctx.candidate


def run_applied(filters: list[JobFilter], ctx: ApplyStateContext) -> None:
    for f in reversed(filters):
        f.on_state_unapplied(ctx)
    for f in reversed(filters):
        f.on_state_applied(ctx)
