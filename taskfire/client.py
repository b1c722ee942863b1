"""`Taskfire`: the client that stores, reads and moves jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from .batches import Batch, BatchBuilder, build_batch
from .creation import Creator, new_job_id
from .errors import ConfigError
from .settings import client_settings
from .filters import FilterList, global_filters
from .job import JobFunction, default_client, set_default_client
from .payload import decode_value, encode_result, encode_value, param_field
from .queues import BulkResult, Queues, bulk_by_state
from .records import Job, build_job
from .recurring import RecurringJobs
from .state_changer import StateChanger, transition_for
from .states import AWAITING, DELETED, ENQUEUED, SCHEDULED, Deleted, Enqueued, Scheduled, State
from .storage import Storage
from .storage import DEFAULT_PREFIX, DEFAULT_URL
from .waiting import outcome_of_batch, outcome_of_job

__all__ = ["Taskfire", "DEFAULT_URL", "DEFAULT_PREFIX", "default_client", "new_job_id", "transition_for"]

#: `change_state(..., result=NO_RESULT)`: store no result.
NO_RESULT: Any = object()


def checked_id(value: object, what: str = "job") -> str:
    """An id as given to a verb, or a ConfigError saying what was given instead (None
    from an enqueue that was never made, say)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a {what} id is the non-empty string taskfire returned when it was created, "
                          f"not {value!r}")
    return value


class Taskfire:
    """A connection to a taskfire store.

    url         a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL (see
                taskfire.storage.connection); "embedded" starts (or joins) the embedded Valkey
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
    timeout     seconds any call to Redis may take (TASKFIRE_TIMEOUT, default 5). An
                enqueue gives up after it, its retries after a dropped connection
                included, and raises EnqueueError with the ids of the jobs that may have
                been stored (a hung Redis may store them later); `e.retry()` sends them
                again without making duplicates

    The most recently created client is the one `job.enqueue(...)` uses.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None,
                 retention: timedelta | float | None = None, wait_replicas: int | None = None,
                 wait_timeout_ms: int | None = None, timeout: float | None = None) -> None:
        settings = client_settings(url, prefix, retention, wait_replicas, wait_timeout_ms, timeout)
        self.embedded = settings.embedded
        self.url = settings.url
        self.prefix = settings.prefix
        self.storage = Storage(self.url, self.prefix, retention_s=settings.retention_s,
                               wait_replicas=settings.wait_replicas, wait_timeout_ms=settings.wait_timeout_ms,
                               socket_timeout=settings.timeout)
        self.creator = Creator(self.storage)
        self.changer = StateChanger(self.storage)
        self.recurring = RecurringJobs(self.storage)
        self.queues = Queues(self.storage)
        set_default_client(self)

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

    def enqueue(self, target: JobFunction[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Stores a job in its queue for the next free worker; returns its id."""
        return self.creator.create(target, args, kwargs)

    def schedule(self, target: JobFunction[..., Any] | str, when: datetime | timedelta | float,
                 *args: Any, **kwargs: Any) -> str:
        """Stores a job to be enqueued at `when`: an aware datetime, a timedelta, or
        seconds from now (the Redis server's now)."""
        return self.creator.create(target, args, kwargs, Scheduled.when(when).due_arg())

    def enqueue_many(self, target: JobFunction[..., Any] | str,
                     calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """Enqueues one job per call (a tuple of positional arguments or a dict of keyword
        arguments). Every call is checked before any job is stored."""
        return self.creator.create_many(target, calls)

    # -- continuations and batches ---------------------------------------------------

    def continue_with(self, parent_id: str, target: JobFunction[..., Any] | str, *args: Any,
                      on: str = "succeeded", **kwargs: Any) -> str:
        """Creates a job that waits (Awaiting) for another job and is enqueued when that
        one succeeds (`on="succeeded"`, the default: if the parent is deleted, this job
        is deleted too; while it sits in Failed, this one waits) or reaches any outcome
        (`on="finished"`: Succeeded, Deleted, or Failed after its last retry). A parent
        that has already finished releases it at once. Returns its id."""
        return self._continue("job", checked_id(parent_id), target, args, kwargs, on)

    def continue_batch_with(self, batch_id: str, target: JobFunction[..., Any] | str, *args: Any,
                            on: str = "succeeded", **kwargs: Any) -> str:
        """Like `continue_with`, after every member of a batch has finished; with
        `on="succeeded"` only if all of them succeeded."""
        return self._continue("batch", checked_id(batch_id, "batch"), target, args, kwargs, on)

    def _continue(self, kind: str, parent: str, target: JobFunction[..., Any] | str,
                  args: tuple[Any, ...], kwargs: dict[str, Any], on: str) -> str:
        return self.creator.continue_job(kind, parent, target, args, kwargs, on)

    def batch(self) -> BatchBuilder:
        """A batch of jobs created together; see `taskfire.batches`."""
        return BatchBuilder(self.creator)

    def get_batch(self, batch_id: str) -> Batch | None:
        h = self.storage.monitor.read_batch(checked_id(batch_id, "batch"))
        return build_batch(batch_id, h) if h else None

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[Batch]:
        """Batches, newest first (the last 10,000 created; finished ones until they expire)."""
        return [build_batch(i, h) for i, h in self.storage.monitor.read_batches(offset, limit) if h]

    def batch_members(self, batch_id: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Ids of a batch's jobs and nested batches, in the order they were added."""
        return self.storage.monitor.batch_members(batch_id, offset, -1 if limit is None else offset + limit - 1)

    # -- reading -------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        """The job's record, or None if there is no such job (or it expired)."""
        return self.get_jobs([job_id])[0]

    def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        """The records of several jobs (None for those that do not exist), in one round trip."""
        job_ids = [checked_id(i) for i in job_ids]
        return [build_job(i, fields, history, due, [c.decode() for c in continuations], log_lines) if fields else None
                for i, (fields, history, due, continuations, log_lines)
                in zip(job_ids, self.storage.read_jobs(job_ids), strict=True)]

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Blocks until the job has an outcome (Succeeded, Failed after its last retry,
        Deleted, or another final state) and returns it; TimeoutError after `timeout`
        seconds (None: no limit), NotFoundError if there is no such job. It waits in
        Redis, with no polling: the outcome wakes it, and a job nobody waits for pays
        nothing."""
        status = self.storage.wait_for_outcome("job", checked_id(job_id), timeout)
        return outcome_of_job(job_id, timeout, status, self.get_job(job_id))

    def wait_batch(self, batch_id: str, timeout: float | None = None) -> Batch:
        """Blocks until every member of the batch has an outcome and returns the batch
        (`outcome` "succeeded", "failed" or "deleted"), as `wait` does for a job."""
        status = self.storage.wait_for_outcome("batch", checked_id(batch_id, "batch"), timeout)
        return outcome_of_batch(batch_id, timeout, status, self.get_batch(batch_id))

    def job_ids_in_state(self, state: str, offset: int = 0, limit: int = 100, *,
                         queue: str | None = None) -> list[str]:
        """Ids of jobs in a state (built-in or custom): Enqueued per `queue`, next to run
        first; Scheduled soonest first; Processing by lease deadline; the others newest
        first. Final states keep the last 10,000 ids. An index may list a job that moved
        on since it was read (get_job tells)."""
        return self.storage.monitor.job_ids_in_state(state, offset, limit, queue)

    def queue_lengths(self) -> dict[str, int]:
        """Jobs waiting in each known queue."""
        return self.storage.monitor.queue_lengths()

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
        return self.changer.change(checked_id(job_id), state, expected, unless=unless, fields=fields).code == 1

    # -- operators ------------------------------------------------------------------

    def requeue_all(self, state: str = "Failed", *, function: str | None = None,
                    exception: str | None = None, queue: str | None = None,
                    only_retries: bool = False) -> BulkResult:
        """Requeues every job in `state` (by default Failed), or only those of one
        function ("module:name"), exception type (as shown in the job, e.g.
        "TimeoutError" or "myapp.errors.SyncError") or queue. With state "Scheduled",
        `only_retries=True` takes only the jobs waiting for a retry (the dashboard's
        Retries) and runs them now. A job that enters Failed after the call began (one
        it requeued, run and failed again meanwhile) is left for the next request."""
        return bulk_by_state(self.storage, "requeue", state, function, exception, queue, only_retries)

    def delete_all(self, state: str, *, function: str | None = None, exception: str | None = None,
                   queue: str | None = None, only_retries: bool = False) -> BulkResult:
        """Deletes every job in `state` (not Enqueued: see `tf.queues.purge`), with the
        same filters as `requeue_all`."""
        return bulk_by_state(self.storage, "delete", state, function, exception, queue, only_retries)

    def servers(self) -> list[dict[str, str]]:
        """Every live server: id, host, pid, queues, processes, threads, state, heartbeat."""
        return self.storage.monitor.servers()

    def quiet_server(self, server_id: str) -> bool:
        """Asks a server to finish its running jobs and take no new ones (it does so at
        its next heartbeat); False if there is no such server."""
        return self.storage.request_quiet(server_id)

    # -- job parameters ------------------------------------------------------------

    def set_job_param(self, job_id: str, name: str, value: Any) -> None:
        """Stores a named parameter on a job (msgpack-encoded; shown in its details)."""
        self.storage.set_job_field(checked_id(job_id), param_field(name), encode_value(name, value))

    def get_job_param(self, job_id: str, name: str, default: Any = None) -> Any:
        raw = self.storage.get_job_field(checked_id(job_id), param_field(name))
        return default if raw is None else decode_value(raw)

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
        return self.storage.request_cancel(checked_id(job_id))

    def requeue(self, job_id: str, reason: str = "Requeued by request") -> bool:
        """Enqueues a job again, from any state, to run from the start. Its retry count
        is kept, as in Hangfire: a job that exhausted its retries gets one more run."""
        return self.change_state(job_id, Enqueued(reason=reason))


