"""`@job`: turns a module-level function into something that can be enqueued.

A job is stored by name ("module:qualname") and arguments, never as code. A worker runs
only functions registered here by importing the modules it was given.
"""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta
from typing import Any, Callable, Generic, Iterable, ParamSpec, Protocol, TypeVar, overload

import msgspec

from .controls import JobControls
from .errors import ConfigError
from .filters import JobFilter
from .payload import Binder
from .retries import DEFAULT_RETRIES, ON_EXHAUSTED, RetryPolicy
from .states import check_queue_name

P = ParamSpec("P")
R = TypeVar("R")

#: Jobs by name, filled by @job as modules are imported.
registry: dict[str, JobFunction[Any, Any]] = {}


class JobClient(Protocol):
    """What a job function needs of a client (taskfire.Taskfire) to store its jobs."""

    def enqueue(self, target: Any, /, *args: Any, **kwargs: Any) -> str: ...
    def schedule(self, target: Any, when: datetime | timedelta | float, /, *args: Any, **kwargs: Any) -> str: ...
    def enqueue_many(self, target: Any, calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]: ...
    def _continue(self, kind: str, parent: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  on: str) -> str: ...


class AsyncJobClient(Protocol):
    """What a job function needs of an asyncio client (taskfire.AsyncTaskfire)."""

    async def enqueue(self, target: Any, /, *args: Any, **kwargs: Any) -> str: ...
    async def schedule(self, target: Any, when: datetime | timedelta | float, /, *args: Any,
                       **kwargs: Any) -> str: ...


_default: JobClient | None = None
_default_async: AsyncJobClient | None = None


def set_default_client(client: JobClient) -> None:
    """Makes `client` the one `job.enqueue(...)` uses (every new Taskfire does this)."""
    global _default
    _default = client


def default_client() -> Any:
    """The client `job.enqueue(...)` uses: the most recently created Taskfire."""
    if _default is None:
        raise RuntimeError("no Taskfire client yet: create one first, e.g. tf = Taskfire()")
    return _default


def set_default_async_client(client: AsyncJobClient) -> None:
    """Makes `client` the one `await job.enqueue_async(...)` uses (every new AsyncTaskfire
    does this)."""
    global _default_async
    _default_async = client


def default_async_client() -> Any:
    """The client `await job.enqueue_async(...)` uses: the most recently created AsyncTaskfire."""
    if _default_async is None:
        raise RuntimeError("no AsyncTaskfire client yet: create one first, e.g. tf = AsyncTaskfire()")
    return _default_async


class JobOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """Options that may be stored with a job, overriding its function's defaults."""

    retries: int | None = None
    retry_delays: list[float] | None = None
    on_exhausted: str | None = None
    timeout: float | None = None


def job_name(fn: Callable[..., Any]) -> str:
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", None)
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigError(
            f"@job cannot register {qualname!r}: a job must be a module-level function, "
            f"so that a worker can find it by name")
    if not qualname or not module:
        raise ConfigError(
            f"@job cannot register {fn!r}: it has no module-level name a worker could find it by "
            f"(a functools.partial or a callable object has none); decorate a module-level function, "
            f"or name it: @job(name='package.module:function')")
    return f"{module}:{qualname}"


class JobFunction(Generic[P, R]):
    """A registered job function (or a reference to one by name).

    Calling it runs the function here and now; `enqueue`, `schedule` and `enqueue_many`
    store a job for a worker. `options(...)` returns a copy with other options for the
    next enqueues, so the function's own keyword arguments are never taken for options.
    """

    def __init__(self, fn: Callable[P, R] | None, name: str, *, queue: str = "default",
                 retries: int = DEFAULT_RETRIES, retry_delays: list[float] | None = None,
                 retry_on: tuple[type[BaseException], ...] = (Exception,),
                 on_exhausted: str = "fail", client: JobClient | None = None,
                 overrides: JobOptions = JobOptions(), filters: tuple[JobFilter, ...] = (),
                 controls: JobControls = JobControls(), unique_key: str | None = None) -> None:
        self.fn = fn
        self.filters = filters
        self.controls = controls
        self.unique_key = unique_key
        self.name = name
        self.queue = check_queue_name(queue)
        self.retry_policy = RetryPolicy(retries, retry_delays, retry_on, on_exhausted)
        self.client = client
        self.overrides = overrides
        self.binder = Binder(fn) if fn is not None else None
        self.is_async = inspect.iscoroutinefunction(fn)
        controls.check(name, self.binder.signature if self.binder else None)
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.fn is None:
            raise TypeError(f"{self.name} is a reference by name; only a worker can run it")
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.name} queue={self.queue}>"

    def options(self, *, queue: str | None = None, retries: int | None = None,
                retry_delays: list[float] | None = None, on_exhausted: str | None = None,
                timeout: float | None = None, unique_key: str | None = None,
                client: JobClient | None = None) -> JobFunction[P, R]:
        """A copy that enqueues with these options (stored with each job it creates).
        `unique_key`: while a job with this key is pending, enqueueing returns its id."""
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise ConfigError(f"unique_key must be a non-empty string, not {unique_key!r}")
        overrides = msgspec.structs.replace(
            self.overrides,
            **{k: v for k, v in (("retries", retries), ("retry_delays", retry_delays),
                                 ("on_exhausted", on_exhausted), ("timeout", timeout)) if v is not None})
        policy = RetryPolicy(  # validates the overrides now, not in the worker
            retries if retries is not None else self.retry_policy.retries,
            retry_delays if retry_delays is not None else self.retry_policy.delays,
            self.retry_policy.retry_on,
            on_exhausted if on_exhausted is not None else self.retry_policy.on_exhausted)
        copy = JobFunction(self.fn, self.name, queue=queue or self.queue, retries=policy.retries,
                           retry_delays=policy.delays, retry_on=policy.retry_on,
                           on_exhausted=policy.on_exhausted, client=client or self.client,
                           overrides=overrides, filters=self.filters, controls=self.controls,
                           unique_key=unique_key if unique_key is not None else self.unique_key)
        return copy

    def _client(self) -> JobClient:
        return self.client or default_client()

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Stores the job in its queue; returns its id."""
        return self._client().enqueue(self, *args, **kwargs)

    def schedule(self, when: datetime | timedelta | float, *args: P.args, **kwargs: P.kwargs) -> str:
        """Stores the job to be enqueued at `when` (an aware datetime) or after a delay."""
        return self._client().schedule(self, when, *args, **kwargs)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """`enqueue` from asyncio code, through the most recently created AsyncTaskfire."""
        return await default_async_client().enqueue(self, *args, **kwargs)  # type: ignore[no-any-return]

    async def schedule_async(self, when: datetime | timedelta | float, *args: P.args, **kwargs: P.kwargs) -> str:
        """`schedule` from asyncio code, through the most recently created AsyncTaskfire."""
        return await default_async_client().schedule(self, when, *args, **kwargs)  # type: ignore[no-any-return]

    def continue_with(self, parent_id: str, *args: P.args, **kwargs: P.kwargs) -> str:
        """Stores the job to run once job `parent_id` has succeeded (Awaiting until
        then); `tf.continue_with(..., on="finished")` runs it whatever the outcome."""
        return self._client()._continue("job", parent_id, self, args, kwargs, "succeeded")

    def enqueue_many(self, calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """Enqueues one job per call (a tuple of positional or a dict of keyword
        arguments) in pipelined chunks; returns their ids in order."""
        return self._client().enqueue_many(self, calls)

    def policy_for(self, stored: JobOptions) -> RetryPolicy:
        """The retry policy of one job: this function's, with the job's stored overrides."""
        if stored == JobOptions():
            return self.retry_policy
        p = self.retry_policy
        return RetryPolicy(
            stored.retries if stored.retries is not None else p.retries,
            stored.retry_delays if stored.retry_delays is not None else p.delays,
            p.retry_on,
            stored.on_exhausted if stored.on_exhausted is not None else p.on_exhausted)


@overload
def job(fn: Callable[P, R], /) -> JobFunction[P, R]: ...
@overload
def job(*, queue: str = "default", retries: int = DEFAULT_RETRIES, retry_delays: list[float] | None = None,
        retry_on: tuple[type[BaseException], ...] | type[BaseException] = Exception,
        on_exhausted: str = "fail", name: str | None = None,
        filters: Iterable[JobFilter] = (), timeout: float | None = None, mutex: str | None = None,
        mutex_timeout: float = 600.0, concurrency: int | None = None, limit: tuple[str, int] | None = None,
        rate: tuple[int, float] | None = None,
        unique: str | bool | None = None) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(fn: Callable[..., Any] | None = None, /, *, queue: str = "default", retries: int = DEFAULT_RETRIES,
        retry_delays: list[float] | None = None,
        retry_on: tuple[type[BaseException], ...] | type[BaseException] = Exception,
        on_exhausted: str = "fail", name: str | None = None, filters: Iterable[JobFilter] = (),
        timeout: float | None = None, mutex: str | None = None, mutex_timeout: float = 600.0,
        concurrency: int | None = None, limit: tuple[str, int] | None = None,
        rate: tuple[int, float] | None = None, unique: str | bool | None = None) -> Any:
    """Registers a function as a job.

    queue          the queue it is enqueued to (lowercase letters, digits, '_', '-')
    retries        automatic retries after a failure (0 turns them off); Hangfire's 10
    retry_delays   seconds before each retry; the last repeats (default: Hangfire's curve)
    retry_on       exception types worth retrying; any other fails the job at once
    on_exhausted   "fail" keeps the job in Failed after its last retry; "delete" deletes it
    name           the stored name, if not "module:qualname" (keeps old jobs runnable
                   after a function moves)
    filters        JobFilter objects for this job only (see taskfire.filters)
    timeout, mutex, mutex_timeout, concurrency, limit, rate, unique
                   job controls: see taskfire.controls
    """
    controls = JobControls(timeout=timeout, mutex=mutex, mutex_timeout=mutex_timeout, concurrency=concurrency,
                           limit=tuple(limit) if limit is not None else None,  # type: ignore[arg-type]
                           rate=tuple(rate) if rate is not None else None, unique=unique)  # type: ignore[arg-type]
    filters = tuple(filters)
    if not all(isinstance(f, JobFilter) for f in filters):
        raise ConfigError(f"filters must be JobFilter objects, not {filters!r}")
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
        raise ConfigError(f"retry_on must be exception types, not {retry_on!r}")
    if on_exhausted not in ON_EXHAUSTED:
        raise ConfigError(f"on_exhausted must be 'fail' or 'delete', not {on_exhausted!r}")

    def register(f: Callable[P, R]) -> JobFunction[P, R]:
        if not callable(f):
            raise ConfigError(f"@job decorates a function, not {f!r}")
        if isinstance(f, JobFunction):
            raise ConfigError(f"{f.name} is already a job")
        jf: JobFunction[P, R] = JobFunction(
            f, name or job_name(f), queue=queue, retries=retries, retry_delays=retry_delays,
            retry_on=tuple(retry_on), on_exhausted=on_exhausted, filters=filters, controls=controls)
        registry[jf.name] = jf
        return jf

    return register(fn) if fn is not None else register
