"""`Taskfire`: the client that stores, reads and moves jobs."""

from __future__ import annotations

import os
import random
import re
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

import msgspec

from .controls import JobControls
from .errors import ConfigError
from .job import JobFunction, JobOptions, registry
from .payload import encode_args
from .filters import (ApplyStateContext, CreatedContext, CreatingContext, ElectStateContext, FilterList,
                      global_filters, pipeline,
                      run_applied, run_created, run_creating, run_election)
from .payload import decode_value, encode_result, encode_value
from .records import PARAM_PREFIX, Job, build_job
from .batches import Batch, BatchBuilder, build_batch
from .queues import BulkResult, Queues, bulk_by_state
from .recurring import RecurringJobs
from .states import (AWAITING, DELETED, ENQUEUED, SCHEDULED, Deleted, Enqueued, Failed, Scheduled, State,
                     check_queue_name)
from .storage import NewJob, Storage, Transition

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "taskfire:"
DEFAULT_RETENTION = timedelta(days=1)

_opts_encoder = msgspec.msgpack.Encoder()

_default: Taskfire | None = None

NO_CONTROLS = JobControls()
#: `change_state(..., result=NO_RESULT)`: store no result.
NO_RESULT: Any = object()
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


def check_param_name(name: str) -> str:
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        raise ConfigError(f"job parameter name {name!r}: use up to 100 letters, digits, '_', '.' or '-'")
    return name


def _number_from_env(name: str, default: float, kind: type[int] | type[float] = int) -> Any:
    """A number from the environment variable `name` (default when unset), or a
    ConfigError naming the variable."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None


def default_client() -> Taskfire:
    """The client `job.enqueue(...)` uses: the most recently created Taskfire."""
    if _default is None:
        raise RuntimeError("no Taskfire client yet: create one first, e.g. tf = Taskfire()")
    return _default


_NO_OVERRIDES = JobOptions()


def new_job_id() -> str:
    """24 hex digits: milliseconds since the epoch, then 48 random bits. Ids sort by
    creation time, and two jobs made in the same millisecond differ by chance alone.
    (`random` is seeded from the OS and reseeded in a forked child; `secrets` would cost
    a system call per id.)"""
    return f"{int(time.time() * 1000):012x}{random.getrandbits(48):012x}"


class Taskfire:
    """A connection to a taskfire store.

    url         a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL (see
                taskfire.connection); "embedded" starts (or joins) the embedded Valkey
                server; default TASKFIRE_REDIS_URL, else redis://127.0.0.1:6379/0
    prefix      the prefix of every key (TASKFIRE_PREFIX, default "taskfire:"; on a
                cluster it needs a hash tag, such as "{taskfire}:")
    retention   how long Succeeded and Deleted jobs are kept (TASKFIRE_RETENTION in
                seconds, default 1 day)
    wait_replicas, wait_timeout_ms
                after storing jobs, wait until this many replicas have them (Redis WAIT,
                at most wait_timeout_ms, default 1000), else raise ReplicationTimeout: an
                acknowledged job then survives a failover. TASKFIRE_WAIT_REPLICAS and
                TASKFIRE_WAIT_TIMEOUT_MS; default 0, no wait

    The most recently created client is the one `job.enqueue(...)` uses.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None,
                 retention: timedelta | float | None = None, wait_replicas: int | None = None,
                 wait_timeout_ms: int | None = None) -> None:
        global _default
        url = url or os.environ.get("TASKFIRE_REDIS_URL") or DEFAULT_URL
        self.embedded = None
        if url == "embedded":
            from .embedded import EmbeddedServer
            self.embedded = EmbeddedServer.shared()
            url = self.embedded.url
        if retention is None:
            retention = _number_from_env("TASKFIRE_RETENTION", DEFAULT_RETENTION.total_seconds(), float)
        seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
        if seconds < 1:
            raise ConfigError(f"retention must be at least one second, not {retention!r}")
        self.url = url
        self.prefix = prefix if prefix is not None else os.environ.get("TASKFIRE_PREFIX", DEFAULT_PREFIX)
        if wait_replicas is None:
            wait_replicas = _number_from_env("TASKFIRE_WAIT_REPLICAS", 0)
        if wait_timeout_ms is None:
            wait_timeout_ms = _number_from_env("TASKFIRE_WAIT_TIMEOUT_MS", 1000)
        self.storage = Storage(url, self.prefix, retention_s=int(seconds), wait_replicas=wait_replicas,
                               wait_timeout_ms=wait_timeout_ms)
        self.recurring = RecurringJobs(self)
        self.queues = Queues(self)
        _default = self

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Taskfire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creating jobs -------------------------------------------------------------

    @property
    def filters(self) -> FilterList:
        """The process-wide job filters (see taskfire.filters)."""
        return global_filters

    def job(self, name: str, *, queue: str = "default", **options: Any) -> JobFunction[..., Any]:
        """A reference to a job by name ("package.module:function"), for enqueueing from
        a process that does not import it. The worker supplies the function's options;
        those given here are stored with each job and override them."""
        if ":" not in name:
            raise ConfigError(f"job name {name!r} must look like 'package.module:function'")
        ref: JobFunction[..., Any] = JobFunction(None, name, queue=queue, client=self)
        return ref.options(**options) if options else ref

    def _target(self, target: JobFunction[..., Any] | str) -> JobFunction[..., Any]:
        if isinstance(target, str):
            # A name this process has registered keeps its queue, retries and controls
            # (a mutex, say), as the function itself would: a recurring job declared by
            # name in a TOML file must not lose them.
            return registry.get(target) or self.job(target)
        if isinstance(target, JobFunction):
            return target
        if callable(target):
            name = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"
            raise ConfigError(f"{name} is not a job: decorate it with @job")
        raise ConfigError(f"cannot enqueue {target!r}: pass a @job function or a 'module:function' name")

    def _new_job(self, jf: JobFunction[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 due: str = "", fields: dict[str, bytes | str] | None = None
                 ) -> tuple[NewJob, Callable[[], None] | None]:
        """The job to store, and what to call once it is stored (its filters' on_created)."""
        if jf.name.startswith("__main__:"):
            raise ConfigError(
                f"cannot enqueue {jf.name}: it is defined in the script being run (__main__), "
                f"which a worker cannot import. Move it to a module (e.g. myapp/jobs.py), "
                f"import it from there, and start the worker with that module.")
        signature = None
        if jf.binder is not None:
            jf.binder.check(jf.name, args, kwargs)
            signature = jf.binder.signature
        opts = b"" if jf.overrides == _NO_OVERRIDES else _opts_encoder.encode(jf.overrides)
        filters = pipeline(jf.filters) if jf.filters or len(global_filters) else None
        creating = None
        if filters:
            fields = dict(fields or {})
            creating = CreatingContext(jf.name, args, kwargs, jf.queue)
            run_creating(filters, creating)
            for name, value in creating.params.items():
                fields[PARAM_PREFIX + check_param_name(name)] = encode_value(name, value)
        encoded = encode_args(jf.name, args, kwargs, signature)
        if jf.controls != NO_CONTROLS or jf.unique_key is not None:
            fields = {**(fields or {}), **jf.controls.fields(jf.name, signature, args, kwargs, jf.unique_key, encoded)}
        new = NewJob(id=new_job_id(), fn=jf.name, args=encoded, queue=jf.queue, opts=opts, due=due,
                     fields=fields or {})
        if creating is None or filters is None:
            return new, None
        done = CreatedContext(new.id, creating)
        return new, lambda: run_created(filters, done)

    def enqueue(self, target: JobFunction[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Stores a job in its queue for the next free worker; returns its id."""
        new, created = self._new_job(self._target(target), args, kwargs)
        pending = self.storage.create([new]).get(new.id)
        if pending is not None:
            return pending  # a pending job holds its uniqueness key
        if created:
            created()
        return new.id

    def schedule(self, target: JobFunction[..., Any] | str, when: datetime | timedelta | float,
                 *args: Any, **kwargs: Any) -> str:
        """Stores a job to be enqueued at `when`: an aware datetime, a timedelta, or
        seconds from now (the Redis server's now)."""
        new, created = self._new_job(self._target(target), args, kwargs, Scheduled.when(when).due_arg())
        pending = self.storage.create([new]).get(new.id)
        if pending is not None:
            return pending
        if created:
            created()
        return new.id

    def enqueue_many(self, target: JobFunction[..., Any] | str,
                     calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """Enqueues one job per call (a tuple of positional arguments or a dict of keyword
        arguments). Every call is checked before any job is stored."""
        jf = self._target(target)
        made = []
        for call in calls:
            if isinstance(call, dict):
                made.append(self._new_job(jf, (), call))
            elif isinstance(call, tuple):
                made.append(self._new_job(jf, call, {}))
            else:
                raise TypeError(f"enqueue_many takes tuples of positional or dicts of keyword "
                                f"arguments, not {type(call).__name__}: {call!r}")
        pending = self.storage.create([new for new, _ in made])
        for new, created in made:
            if created and new.id not in pending:
                created()
        return [pending.get(new.id, new.id) for new, _ in made]

    # -- continuations and batches ---------------------------------------------------

    def continue_with(self, parent_id: str, target: JobFunction[..., Any] | str, *args: Any,
                      on: str = "succeeded", **kwargs: Any) -> str:
        """Creates a job that waits (Awaiting) for another job and is enqueued when that
        one succeeds (`on="succeeded"`, the default: if the parent is deleted, this job
        is deleted too; while it sits in Failed, this one waits) or reaches any outcome
        (`on="finished"`: Succeeded, Deleted, or Failed after its last retry). A parent
        that has already finished releases it at once. Returns its id."""
        return self._continue("job", parent_id, target, args, kwargs, on)

    def continue_batch_with(self, batch_id: str, target: JobFunction[..., Any] | str, *args: Any,
                            on: str = "succeeded", **kwargs: Any) -> str:
        """Like `continue_with`, after every member of a batch has finished; with
        `on="succeeded"` only if all of them succeeded."""
        return self._continue("batch", batch_id, target, args, kwargs, on)

    def _continue(self, kind: str, parent: str, target: JobFunction[..., Any] | str,
                  args: tuple[Any, ...], kwargs: dict[str, Any], on: str) -> str:
        if on not in ("succeeded", "finished"):
            raise ConfigError(f"on must be 'succeeded' or 'finished', not {on!r}")
        new, created = self._new_job(self._target(target), args, kwargs)
        if self.storage.continue_job(kind, parent, on, new) < 0:
            raise ConfigError(f"cannot continue {kind} {parent!r}: there is no such {kind} "
                              f"(never created, or expired after its retention)")
        if created:
            created()
        return new.id

    def batch(self) -> BatchBuilder:
        """A batch of jobs created together; see `taskfire.batches`."""
        return BatchBuilder(self)

    def get_batch(self, batch_id: str) -> Batch | None:
        h = self.storage.read_batch(batch_id)
        return build_batch(batch_id, h) if h else None

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[Batch]:
        """Batches, newest first (the last 10,000 created; finished ones until they expire)."""
        return [build_batch(i, h) for i, h in self.storage.read_batches(offset, limit) if h]

    def batch_members(self, batch_id: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Ids of a batch's jobs and nested batches, in the order they were added."""
        return self.storage.batch_members(batch_id, offset, -1 if limit is None else offset + limit - 1)

    # -- reading -------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        """The job's record, or None if there is no such job (or it expired)."""
        return self.get_jobs([job_id])[0]

    def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        """The records of several jobs (None for those that do not exist), in one round trip."""
        return [build_job(i, fields, history, due, [c.decode() for c in continuations], log_lines) if fields else None
                for i, (fields, history, due, continuations, log_lines)
                in zip(job_ids, self.storage.read_jobs(job_ids), strict=True)]

    def job_ids_in_state(self, state: str, offset: int = 0, limit: int = 100, *,
                         queue: str | None = None) -> list[str]:
        """Ids of jobs in a state (built-in or custom): Enqueued per `queue`, next to run
        first; Scheduled soonest first; Processing by lease deadline; the others newest
        first. Final states keep the last 10,000 ids. An index may list a job that moved
        on since it was read (get_job tells)."""
        return self.storage.job_ids_in_state(state, offset, limit, queue)

    def queue_lengths(self) -> dict[str, int]:
        """Jobs waiting in each known queue (ids left by deleted jobs included)."""
        r = self.storage.redis
        names = sorted(n.decode() if isinstance(n, bytes) else n for n in r.smembers(self.storage.keys.queues))
        pipe = r.pipeline(transaction=False)
        for name in names:
            pipe.llen(self.storage.keys.queue(name))
        return dict(zip(names, pipe.execute(), strict=True))

    # -- moving jobs ---------------------------------------------------------------

    def change_state(self, job_id: str, state: State, expected_state: str | Sequence[str] | None = None,
                     *, result: Any = NO_RESULT) -> bool:
        """Moves a job to `state`, atomically, if it is in `expected_state` (any state
        when None), storing `result` with it if given. The process-wide filters elect
        and see the change. Returns False if there is no such job or it was in another
        state."""
        expected = (expected_state,) if isinstance(expected_state, str) else tuple(expected_state or ())
        fields: dict[str, bytes | str] = {}
        if result is not NO_RESULT:
            fields["result"] = encode_result(result)[0]
        return self._change(job_id, state, expected, fields=fields)

    def _change(self, job_id: str, state: State, expected: Sequence[str] = (),
                unless: Sequence[str] = (), fields: dict[str, bytes | str] | None = None) -> bool:
        filters = pipeline()
        elected: list[State] = []
        if filters:
            election = ElectStateContext(job_id, "", expected[0] if len(expected) == 1 else None, state)
            state = run_election(filters, election)
            elected, fields = election.elected, {**(fields or {}), **election.fields}
        code, old = self.storage.transition(
            transition_for(job_id, state, expected, unless=unless, fields=fields, elected=elected))
        if code == 1 and filters:
            run_applied(filters, ApplyStateContext(job_id, "", old, state))
        return code == 1

    # -- operators ------------------------------------------------------------------

    def requeue_all(self, state: str = "Failed", *, function: str | None = None,
                    exception: str | None = None, queue: str | None = None) -> BulkResult:
        """Requeues every job in `state` (by default Failed), or only those of one
        function ("module:name"), exception type (as shown in the job, e.g.
        "TimeoutError" or "myapp.errors.SyncError") or queue."""
        return bulk_by_state(self, "requeue", state, function, exception, queue)

    def delete_all(self, state: str, *, function: str | None = None, exception: str | None = None,
                   queue: str | None = None) -> BulkResult:
        """Deletes every job in `state` (not Enqueued: see `tf.queues.purge`), with the
        same filters as `requeue_all`."""
        return bulk_by_state(self, "delete", state, function, exception, queue)

    def servers(self) -> list[dict[str, str]]:
        """Every live server: id, host, pid, queues, processes, threads, state, heartbeat."""
        return self.storage.servers()

    def quiet_server(self, server_id: str) -> bool:
        """Asks a server to finish its running jobs and take no new ones (it does so at
        its next heartbeat); False if there is no such server."""
        return self.storage.request_quiet(server_id)

    # -- job parameters ------------------------------------------------------------

    def set_job_param(self, job_id: str, name: str, value: Any) -> None:
        """Stores a named parameter on a job (msgpack-encoded; shown in its details)."""
        self.storage.redis.hset(self.storage.keys.job(job_id), PARAM_PREFIX + check_param_name(name),
                                encode_value(name, value))

    def get_job_param(self, job_id: str, name: str, default: Any = None) -> Any:
        raw = self.storage.redis.hget(self.storage.keys.job(job_id), PARAM_PREFIX + name)
        return default if raw is None else decode_value(raw)  # type: ignore[arg-type]

    def delete(self, job_id: str, reason: str = "Deleted by request") -> bool:
        """Deletes a job in any state but Deleted. A running job's outcome is then
        discarded and its cancellation token fires."""
        return self._change(job_id, Deleted(reason=reason), unless=(DELETED,))

    def cancel(self, job_id: str) -> bool:
        """Cancels a job. One that waits (Enqueued, Scheduled, Awaiting) is deleted at
        once; a running one is asked to stop: its cancellation token fires within a
        quarter of the lease, and if it stops (raises JobCancelled) it is Deleted; if it
        ignores the request it runs on. False if the job is in none of those states."""
        if self._change(job_id, Deleted(reason="Cancelled by request"), (ENQUEUED, SCHEDULED, AWAITING)):
            return True
        return self.storage.request_cancel(job_id)

    def requeue(self, job_id: str, reason: str = "Requeued by request") -> bool:
        """Enqueues a job again, from any state, to run from the start. Its retry count
        is kept, as in Hangfire: a job that exhausted its retries gets one more run."""
        return self.change_state(job_id, Enqueued(reason=reason))


def transition_for(job_id: str, state: State, expected: Sequence[str] = (), *,
                   unless: Sequence[str] = (), token: str = "",
                   fields: dict[str, bytes | str] | None = None,
                   elected: Sequence[State] = ()) -> Transition:
    """The storage call for moving a job to `state`, recording any states elected before
    it (a failure that became a retry) in its history first."""
    queue, front, due = "", False, ""
    if isinstance(state, Enqueued):
        queue, front = state.queue or "", state.front
        if queue:
            check_queue_name(queue)
    elif isinstance(state, Scheduled):
        due = state.due_arg()
    entries = [(s.name, s.entry()) for s in (*elected, state)]
    failure = next((s for s in (state, *elected) if isinstance(s, Failed) and s.exception_type), None)
    if failure is not None:  # what bulk actions filter on, and the retries list shows
        fields = {**(fields or {}), "error_type": failure.exception_type or ""}
    return Transition(job_id=job_id, state=state.name, entries=entries, expected=tuple(expected),
                      unless=tuple(unless), token=token, queue=queue, front=front, due=due, final=state.final,
                      fields=fields or {})

