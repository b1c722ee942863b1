"""`Taskfire`: the client that stores, reads and moves jobs."""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

import msgspec

from .errors import ConfigError
from .job import JobFunction, JobOptions
from .payload import encode_args
from .records import Job, build_job
from .batches import Batch, BatchBuilder, build_batch
from .recurring import RecurringJobs
from .states import DELETED, Deleted, Enqueued, Scheduled, State, check_queue_name
from .storage import NewJob, Storage, Transition

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "taskfire:"
DEFAULT_RETENTION = timedelta(days=1)

_opts_encoder = msgspec.msgpack.Encoder()

_default: Taskfire | None = None


def default_client() -> Taskfire:
    """The client `job.enqueue(...)` uses: the most recently created Taskfire."""
    if _default is None:
        raise RuntimeError("no Taskfire client yet: create one first, e.g. tf = Taskfire()")
    return _default


def new_job_id() -> str:
    """24 hex digits: milliseconds since the epoch, then 48 random bits. Ids sort by
    creation time, and two jobs made in the same millisecond differ by chance alone."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class Taskfire:
    """A connection to a taskfire store.

    url         a redis:// or rediss:// URL; "embedded" starts (or joins) the embedded
                Valkey server; default TASKFIRE_REDIS_URL, else redis://127.0.0.1:6379/0
    prefix      the prefix of every key (TASKFIRE_PREFIX, default "taskfire:")
    retention   how long Succeeded and Deleted jobs are kept (TASKFIRE_RETENTION in
                seconds, default 1 day)

    The most recently created client is the one `job.enqueue(...)` uses.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None,
                 retention: timedelta | float | None = None) -> None:
        global _default
        url = url or os.environ.get("TASKFIRE_REDIS_URL") or DEFAULT_URL
        self.embedded = None
        if url == "embedded":
            from .embedded import EmbeddedServer
            self.embedded = EmbeddedServer.shared()
            url = self.embedded.url
        if retention is None:
            retention = float(os.environ.get("TASKFIRE_RETENTION") or DEFAULT_RETENTION.total_seconds())
        seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
        if seconds < 1:
            raise ConfigError(f"retention must be at least one second, not {retention!r}")
        self.url = url
        self.prefix = prefix if prefix is not None else os.environ.get("TASKFIRE_PREFIX", DEFAULT_PREFIX)
        self.storage = Storage(url, self.prefix, retention_s=int(seconds))
        self.recurring = RecurringJobs(self)
        _default = self

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Taskfire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creating jobs -------------------------------------------------------------

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
            return self.job(target)
        if isinstance(target, JobFunction):
            return target
        if callable(target):
            name = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"
            raise ConfigError(f"{name} is not a job: decorate it with @job")
        raise ConfigError(f"cannot enqueue {target!r}: pass a @job function or a 'module:function' name")

    def _new_job(self, jf: JobFunction[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 due: str = "", fields: dict[str, bytes | str] | None = None) -> NewJob:
        if jf.name.startswith("__main__:"):
            raise ConfigError(
                f"cannot enqueue {jf.name}: it is defined in the script being run (__main__), "
                f"which a worker cannot import. Move it to a module (e.g. myapp/jobs.py), "
                f"import it from there, and start the worker with that module.")
        signature = None
        if jf.binder is not None:
            jf.binder.check(jf.name, args, kwargs)
            signature = jf.binder.signature
        opts = b"" if jf.overrides == JobOptions() else _opts_encoder.encode(jf.overrides)
        return NewJob(id=new_job_id(), fn=jf.name, args=encode_args(jf.name, args, kwargs, signature),
                      queue=jf.queue, opts=opts, due=due, fields=fields or {})

    def enqueue(self, target: JobFunction[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Stores a job in its queue for the next free worker; returns its id."""
        new = self._new_job(self._target(target), args, kwargs)
        self.storage.create([new])
        return new.id

    def schedule(self, target: JobFunction[..., Any] | str, when: datetime | timedelta | float,
                 *args: Any, **kwargs: Any) -> str:
        """Stores a job to be enqueued at `when`: an aware datetime, a timedelta, or
        seconds from now (the Redis server's now)."""
        new = self._new_job(self._target(target), args, kwargs, Scheduled.when(when).due_arg())
        self.storage.create([new])
        return new.id

    def enqueue_many(self, target: JobFunction[..., Any] | str,
                     calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """Enqueues one job per call (a tuple of positional arguments or a dict of keyword
        arguments). Every call is checked before any job is stored."""
        jf = self._target(target)
        jobs = []
        for call in calls:
            if isinstance(call, dict):
                jobs.append(self._new_job(jf, (), call))
            elif isinstance(call, tuple):
                jobs.append(self._new_job(jf, call, {}))
            else:
                raise TypeError(f"enqueue_many takes tuples of positional or dicts of keyword "
                                f"arguments, not {type(call).__name__}: {call!r}")
        self.storage.create(jobs)
        return [j.id for j in jobs]

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
        new = self._new_job(self._target(target), args, kwargs)
        if self.storage.continue_job(kind, parent, on, new) < 0:
            raise ConfigError(f"cannot continue {kind} {parent!r}: there is no such {kind} "
                              f"(never created, or expired after its retention)")
        return new.id

    def batch(self) -> BatchBuilder:
        """A batch of jobs created together; see `taskfire.batches`."""
        return BatchBuilder(self)

    def get_batch(self, batch_id: str) -> Batch | None:
        h = self.storage.read_batch(batch_id)
        return build_batch(batch_id, h) if h else None

    def batch_members(self, batch_id: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Ids of a batch's jobs and nested batches, in the order they were added."""
        return self.storage.batch_members(batch_id, offset, -1 if limit is None else offset + limit - 1)

    # -- reading -------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        """The job's record, or None if there is no such job (or it expired)."""
        fields, history, due, continuations = self.storage.read_job(job_id)
        if not fields:
            return None
        return build_job(job_id, fields, history, due, [c.decode() for c in continuations])

    def queue_lengths(self) -> dict[str, int]:
        """Jobs waiting in each known queue (ids left by deleted jobs included)."""
        r = self.storage.redis
        names = sorted(n.decode() if isinstance(n, bytes) else n for n in r.smembers(self.storage.keys.queues))
        pipe = r.pipeline(transaction=False)
        for name in names:
            pipe.llen(self.storage.keys.queue(name))
        return dict(zip(names, pipe.execute(), strict=True))

    # -- moving jobs ---------------------------------------------------------------

    def change_state(self, job_id: str, state: State,
                     expected_state: str | Sequence[str] | None = None) -> bool:
        """Moves a job to `state`, atomically, if it is in `expected_state` (any state
        when None). Returns False if there is no such job or it was in another state."""
        expected = (expected_state,) if isinstance(expected_state, str) else tuple(expected_state or ())
        return self._change(job_id, state, expected)

    def _change(self, job_id: str, state: State, expected: Sequence[str] = (),
                unless: Sequence[str] = ()) -> bool:
        code, _, _ = self.storage.transition(transition_for(job_id, state, expected, unless=unless))
        return code == 1

    def delete(self, job_id: str, reason: str = "Deleted by request") -> bool:
        """Deletes a job in any state but Deleted. A running job's outcome is then
        discarded and its cancellation token fires."""
        return self._change(job_id, Deleted(reason=reason), unless=(DELETED,))

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
    return Transition(job_id=job_id, state=state.name, entries=entries, expected=tuple(expected),
                      unless=tuple(unless), token=token, queue=queue, front=front, due=due, final=state.final,
                      fields=fields or {})

