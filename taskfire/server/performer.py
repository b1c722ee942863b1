"""Running one job: Hangfire's performer. It finds the job's function, fits the stored
arguments to it, runs it inside its filters (`on_performing`, then `on_performed` in the
reverse order), and elects what the run comes to (the retry policy first, then the
filters' `on_state_election`). Sync and async jobs share every step but the call itself.

It returns an outcome and stores nothing: the worker stores it (with others, in one
call) and runs the `on_state_applied` hooks once it is stored.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any, Callable, NamedTuple, Sequence

import msgspec

from ..context import CANCELLED, SHUTDOWN, TIMEOUT, CancellationToken, JobContext, JobStore, _current
from ..errors import JobCancelled, JobTimeout, PayloadError, UnknownJobError
from ..filters import ElectStateContext, JobFilter, PerformedContext, PerformingContext, pipeline, run_election
from ..job import JobFunction, JobOptions, registry
from ..payload import decode_args, encode_result
from ..retries import AutomaticRetry, RetryPolicy
from ..states import PROCESSING, Deleted, Enqueued, Failed, State, Succeeded
from ..storage import FetchedJob
from .metrics import JobMetrics

#: Longest traceback kept with a failure; longer ones keep their start and end.
DETAILS_LIMIT = 16_000

_opts_decoder = msgspec.msgpack.Decoder(JobOptions)
_default_policy = RetryPolicy()


def failure(exc: BaseException) -> Failed:
    """A Failed state describing an exception."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    details = "".join(traceback.format_exception(exc))
    if len(details) > DETAILS_LIMIT:
        half = DETAILS_LIMIT // 2
        details = details[:half] + "\n[... traceback shortened ...]\n" + details[-half:]
    return Failed(reason=f"{name}: {exc}"[:500], exception_type=name,
                  exception_message=str(exc), exception_details=details)


def stored_options(job: FetchedJob) -> JobOptions:
    """The options stored with a job (overrides of its function's); PayloadError naming
    the field if they cannot be read."""
    try:
        return _opts_decoder.decode(job.opts) if job.opts else JobOptions()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"the job's stored options (field 'opts') are corrupt and cannot be decoded "
                           f"({exc})") from None


def options_or_defaults(job: FetchedJob) -> JobOptions:
    """The job's stored options, or none if they cannot be read (the run fails on them
    in `_begin`, saying so; its timeout and retry policy are its function's)."""
    try:
        return stored_options(job)
    except PayloadError:
        return JobOptions()


class Outcome(NamedTuple):
    """What a run comes to: the state to store, the states elected before it (kept in
    the history: a failure that became a retry), and fields for the job's record."""

    state: State
    elected: Sequence[State]
    fields: dict[str, bytes | str]


class _Run:
    """One run in progress: what `_begin` prepared and what `_end` needs."""

    __slots__ = ("job", "fn", "filters", "context", "args", "kwargs", "entered", "candidate", "error",
                 "value", "started", "called")

    def __init__(self, job: FetchedJob, fn: JobFunction[..., Any] | None) -> None:
        self.job = job
        self.fn = fn
        self.filters = pipeline(fn.filters) if fn is not None else pipeline()
        self.context: JobContext | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.entered: list[JobFilter] = []  # filters whose on_performing ran
        self.candidate: State | None = None  # a state decided before the call (a filter cancelled it)
        self.error: BaseException | None = None
        self.value: Any = None
        self.started = time.monotonic()
        self.called = False  # the function was called (so on_performed runs)

    @property
    def ready(self) -> bool:
        """Whether the function is to be called (nothing failed or cancelled it first)."""
        return self.context is not None and self.candidate is None and self.error is None


class Performer:
    """Runs jobs for one worker process (`worker_id`), which imported `modules`."""

    def __init__(self, worker_id: str, modules: Sequence[str], metrics: JobMetrics,
                 client: Callable[[], Any], store: JobStore) -> None:
        self.worker_id = worker_id
        self.modules = modules
        self.metrics = metrics
        self.client = client  # the Taskfire jobs see as current_job().client
        self.store = store

    def timeout_of(self, job: FetchedJob) -> float | None:
        """The job's timeout in seconds: stored with the job, else its function's."""
        fn = registry.get(job.fn)
        return options_or_defaults(job).timeout or (fn.controls.timeout if fn else None)

    def is_async(self, job: FetchedJob) -> bool:
        fn = registry.get(job.fn)
        return fn is not None and fn.is_async

    def perform(self, job: FetchedJob, cancellation: CancellationToken, timeout: float | None) -> Outcome:
        run = self._begin(job, cancellation)
        if run.ready:
            run.called = True
            token = _current.set(run.context)
            try:
                run.value = run.fn.fn(*run.args, **run.kwargs)  # type: ignore[union-attr,misc]
            except BaseException as exc:  # a job's failure, whatever it is, is recorded
                run.error = exc
            finally:
                _current.reset(token)
        return self._end(run, cancellation, timeout)

    async def perform_async(self, job: FetchedJob, cancellation: CancellationToken,
                            timeout: float | None) -> Outcome:
        """Runs an async job on the running event loop, many at once."""
        run = self._begin(job, cancellation)
        if run.ready:
            run.called = True
            loop = asyncio.get_running_loop()
            _current.set(run.context)  # this task's own context: no reset needed
            task = asyncio.ensure_future(run.fn.fn(*run.args, **run.kwargs))  # type: ignore[union-attr,misc]
            cancellation.on_cancel(lambda: loop.call_soon_threadsafe(task.cancel))
            try:
                run.value = await task
            except asyncio.CancelledError:
                run.error = JobCancelled(f"job cancelled: {cancellation.reason}")
            except BaseException as exc:
                run.error = exc
        return self._end(run, cancellation, timeout)

    def _begin(self, job: FetchedJob, cancellation: CancellationToken) -> _Run:
        """Finds the function, fits the arguments and runs `on_performing`; a failure on
        the way is the run's error, a filter's cancellation its candidate state."""
        run = _Run(job, registry.get(job.fn))
        fn = run.fn
        try:
            if ":" not in job.fn:
                raise PayloadError(f"the job's function name (field 'fn') is corrupt: {job.fn!r} is not a "
                                   f"module:function name")
            if fn is None or fn.fn is None or fn.binder is None:
                raise UnknownJobError(
                    f"{job.fn!r} is not a @job registered in this worker (it imported "
                    f"{', '.join(self.modules) or 'no modules'}); start the worker "
                    f"with the module that defines it")
            stored_options(job)  # corrupt options fail the run here, saying so
            run.args, run.kwargs = fn.binder.bind(fn.name, *decode_args(job.args))
            run.context = JobContext(job.id, job.fn, job.queue, job.retries + 1, run.args, run.kwargs,
                                     self.worker_id, cancellation, self.client(), self.store)
            if run.filters:
                performing = PerformingContext(run.context)
                for f in run.filters:
                    f.on_performing(performing)
                    run.entered.append(f)
                    if performing.cancelled is not None:
                        run.candidate = Deleted(
                            reason=f"Not run: {type(f).__name__} cancelled it: {performing.cancelled}")
                        break
        except BaseException as exc:
            run.error = exc
        return run

    def _end(self, run: _Run, cancellation: CancellationToken, timeout: float | None) -> Outcome:
        """Runs `on_performed` (which may handle the exception), then settles the run."""
        if run.entered and run.called:
            try:
                performed = PerformedContext(run.context, run.value, run.error)
                for f in reversed(run.entered):
                    f.on_performed(performed)
                if performed.exception_handled:
                    run.error, run.value = None, performed.result
            except BaseException as exc:
                run.error = exc
        return self._settle(run, cancellation, timeout)

    def _settle(self, run: _Run, cancellation: CancellationToken, timeout: float | None) -> Outcome:
        """What a finished run comes to, given why its cancellation token fired, if it did:
        back to its queue on shutdown, JobTimeout after its timeout, Deleted when it
        stopped on request; else what the election makes of its outcome."""
        if run.fn is not None:  # registered functions only: a payload cannot invent metric labels
            self.metrics.observe(run.job.fn, time.monotonic() - run.started)
        error, candidate = run.error, run.candidate
        if isinstance(error, JobCancelled) and cancellation.reason == SHUTDOWN:
            return Outcome(Enqueued(front=True, reason="Requeued: the job stopped for its worker's shutdown"), [], {})
        if cancellation.reason == TIMEOUT:
            error = JobTimeout(f"ran longer than its timeout of {timeout:g} s")
        elif isinstance(error, JobCancelled) and cancellation.reason == CANCELLED:
            candidate = Deleted(reason="Cancelled by request: the job stopped")
        return self.elect(run.job, candidate, error, run.value, run.started)

    def elect(self, job: FetchedJob, candidate: State | None, error: BaseException | None, value: Any = None,
              started: float = 0.0) -> Outcome:
        """The state a run ends in, through the election filters (retries first)."""
        fn = registry.get(job.fn)
        filters = pipeline(fn.filters) if fn is not None else pipeline()
        fields: dict[str, bytes | str] = {}
        if candidate is None and error is not None:
            candidate = failure(error)
        elif candidate is None:
            duration = (time.monotonic() - started) * 1000
            data, note = encode_result(value)
            latency = max(0, job.fetched_ms - job.created_ms) if job.created_ms else None
            candidate = Succeeded(duration_ms=round(duration, 3), latency_ms=latency, result_error=note)
            fields["result"] = data
        if not filters and error is None:
            return Outcome(candidate, [], fields)  # nothing to elect: the common case, kept cheap
        policy = _default_policy if fn is None else fn.policy_for(options_or_defaults(job))
        election = ElectStateContext(job.id, job.fn, PROCESSING, candidate, error, job.retries)
        try:
            state = run_election([AutomaticRetry(policy), *filters], election)
        except Exception as exc:  # a broken election filter fails the job, visibly
            election.elected.clear()
            state = failure(exc)
        return Outcome(state, election.elected, {**fields, **election.fields})
