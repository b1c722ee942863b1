"""`AsyncTaskfire`: the client for asyncio code (FastAPI or Starlette handlers, aiohttp,
any coroutine), with the sync client's verbs as coroutines: `await tf.enqueue(...)`,
`await tf.get_job(id)`, `await tf.wait(id)`.

It is the sync client's twin, not a second implementation: jobs are made by the same
factory (creation.build: arguments checked and encoded, client filters, controls, ids),
changes of state are elected by the same state changer (state_changer.elect), and they
reach Redis through storage/aio.py, which speaks the same Functions library in the same
wire layouts. A job stored by either client is the same job; on a Redis Cluster
(redis+cluster://) it is placed in the shard the sync client would place it in, by the
same rules (storage/shards.py), and every call about it goes to the shard its id names.

Filters run as they do in the sync client; a filter's hooks are plain functions, so a
slow one blocks the event loop.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from .batches import Batch, BatchPlan, build_batch
from .creation import build, build_calls, build_continuation, continued, resolve, same_shard, stored_ids
from .errors import ConfigError
from .job import JobFunction, set_default_async_client
from .payload import decode_value, encode_result, encode_value, param_field
from .records import Job, build_job
from .settings import client_settings
from .state_changer import elect
from .states import AWAITING, DELETED, ENQUEUED, SCHEDULED, Deleted, Enqueued, Scheduled, State
from .storage import AsyncStorage
from .waiting import outcome_of_batch, outcome_of_job

#: `change_state(..., result=NO_RESULT)`: store no result.
NO_RESULT: Any = object()


class AsyncTaskfire:
    """A connection to a taskfire store for asyncio code. It takes the settings
    `Taskfire` takes (url, prefix, retention, wait_replicas, wait_timeout_ms, timeout),
    with the same TASKFIRE_* defaults, and the same URLs, redis+cluster:// included (made
    on a cluster, it reads the shard list once, with a blocking call: make it at
    startup, not in a request handler). Close it with `await tf.close()`, or use
    `async with AsyncTaskfire() as tf:`.

    The most recently created one is the one `await job.enqueue_async(...)` uses.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None,
                 retention: timedelta | float | None = None, wait_replicas: int | None = None,
                 wait_timeout_ms: int | None = None, timeout: float | None = None) -> None:
        settings = client_settings(url, prefix, retention, wait_replicas, wait_timeout_ms, timeout)
        self.embedded = settings.embedded
        self.url = settings.url
        self.prefix = settings.prefix
        self.storage = AsyncStorage(self.url, self.prefix, retention_s=settings.retention_s,
                                    wait_replicas=settings.wait_replicas, wait_timeout_ms=settings.wait_timeout_ms,
                                    socket_timeout=settings.timeout)
        set_default_async_client(self)

    async def close(self) -> None:
        await self.storage.close()

    async def __aenter__(self) -> AsyncTaskfire:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- creating jobs -------------------------------------------------------------

    async def enqueue(self, target: JobFunction[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Stores a job in its queue for the next free worker; returns its id."""
        return await self._create(target, args, kwargs)

    async def schedule(self, target: JobFunction[..., Any] | str, when: datetime | timedelta | float,
                       *args: Any, **kwargs: Any) -> str:
        """Stores a job to be enqueued at `when` (see Taskfire.schedule)."""
        return await self._create(target, args, kwargs, Scheduled.when(when).due_arg())

    async def _create(self, target: JobFunction[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any],
                      due: str = "") -> str:
        made = [build(resolve(target), args, kwargs, due, place=self.storage.placement)]
        return stored_ids(made, await self.storage.create([made[0][0]]))[0]

    async def enqueue_many(self, target: JobFunction[..., Any] | str,
                           calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """Enqueues one job per call (see Taskfire.enqueue_many)."""
        made = build_calls(resolve(target), calls, self.storage.placement)
        return stored_ids(made, await self.storage.create([new for new, _ in made]))

    async def continue_with(self, parent_id: str, target: JobFunction[..., Any] | str, *args: Any,
                            on: str = "succeeded", **kwargs: Any) -> str:
        """Creates a job that runs after another (see Taskfire.continue_with)."""
        return await self._continue("job", parent_id, target, args, kwargs, on)

    async def continue_batch_with(self, batch_id: str, target: JobFunction[..., Any] | str, *args: Any,
                                  on: str = "succeeded", **kwargs: Any) -> str:
        """Creates a job that runs after a whole batch (see Taskfire.continue_batch_with)."""
        return await self._continue("batch", batch_id, target, args, kwargs, on)

    async def _continue(self, kind: str, parent: str, target: JobFunction[..., Any] | str,
                        args: tuple[Any, ...], kwargs: dict[str, Any], on: str) -> str:
        await self.storage.learn([parent])  # its shard known, so the job is marked for it
        new, created = build_continuation(target, args, kwargs, on, same_shard(self.storage, parent))
        continued(kind, parent, await self.storage.continue_job(kind, parent, on, new), created)
        return new.id

    def batch(self) -> AsyncBatchBuilder:
        """A batch of jobs created together: `async with tf.batch() as b: b.enqueue(...)`."""
        return AsyncBatchBuilder(self)

    # -- reading and waiting ---------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job's record, or None if there is no such job (or it expired)."""
        return (await self.get_jobs([job_id]))[0]

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        """The records of several jobs, in one round trip."""
        return [build_job(i, fields, history, due, [c.decode() for c in continuations], log_lines) if fields else None
                for i, (fields, history, due, continuations, log_lines)
                in zip(job_ids, await self.storage.read_jobs(job_ids), strict=True)]

    async def get_batch(self, batch_id: str) -> Batch | None:
        h = await self.storage.read_batch(batch_id)
        return build_batch(batch_id, h) if h else None

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Waits, without blocking the event loop, until the job has an outcome, and
        returns it (see Taskfire.wait)."""
        status = await self.storage.wait_for_outcome("job", job_id, timeout)
        return outcome_of_job(job_id, timeout, status, await self.get_job(job_id))

    async def wait_batch(self, batch_id: str, timeout: float | None = None) -> Batch:
        """Waits until every member of the batch has an outcome (see Taskfire.wait_batch)."""
        status = await self.storage.wait_for_outcome("batch", batch_id, timeout)
        return outcome_of_batch(batch_id, timeout, status, await self.get_batch(batch_id))

    async def get_job_param(self, job_id: str, name: str, default: Any = None) -> Any:
        raw = await self.storage.get_job_field(job_id, param_field(name))
        return default if raw is None else decode_value(raw)

    async def set_job_param(self, job_id: str, name: str, value: Any) -> None:
        await self.storage.set_job_field(job_id, param_field(name), encode_value(name, value))

    # -- moving jobs ---------------------------------------------------------------

    async def change_state(self, job_id: str, state: State, expected_state: str | Sequence[str] | None = None,
                           *, result: Any = NO_RESULT) -> bool:
        """Moves a job to `state` if it is in `expected_state` (see Taskfire.change_state)."""
        expected = (expected_state,) if isinstance(expected_state, str) else tuple(expected_state or ())
        fields: dict[str, bytes | str] = {}
        if result is not NO_RESULT:
            fields["result"] = encode_result(result)[0]
        return await self._change(job_id, state, expected, fields=fields)

    async def _change(self, job_id: str, state: State, expected: Sequence[str] = (), unless: Sequence[str] = (),
                      fields: dict[str, bytes | str] | None = None) -> bool:
        change = elect(job_id, state, expected, unless=unless, fields=fields)
        applied = await self.storage.transition(change.transition)
        change.stored(applied)
        return applied.code == 1

    async def delete(self, job_id: str, reason: str = "Deleted by request") -> bool:
        """Deletes a job in any state but Deleted (see Taskfire.delete)."""
        return await self._change(job_id, Deleted(reason=reason), unless=(DELETED,))

    async def cancel(self, job_id: str) -> bool:
        """Cancels a waiting job, or asks a running one to stop (see Taskfire.cancel)."""
        if await self._change(job_id, Deleted(reason="Cancelled by request"), (ENQUEUED, SCHEDULED, AWAITING)):
            return True
        return await self.storage.request_cancel(job_id)

    async def requeue(self, job_id: str, reason: str = "Requeued by request") -> bool:
        """Enqueues a job again, from any state (see Taskfire.requeue)."""
        return await self.change_state(job_id, Enqueued(reason=reason))


class AsyncBatchBuilder(BatchPlan):
    """A batch for asyncio code: `async with tf.batch() as b:`; its jobs, nested batches
    (`b.batch()`, a plain `with`) and continuations are stored together when the outer
    block ends (see taskfire.batches)."""

    def __init__(self, client: AsyncTaskfire, parent: AsyncBatchBuilder | None = None) -> None:
        super().__init__(client, parent)
        self.client = client

    async def __aenter__(self) -> AsyncBatchBuilder:
        if self.parent is not None:
            raise ConfigError("a nested batch is opened with a plain `with b.batch() as inner:`")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.commit()

    def __enter__(self) -> AsyncBatchBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self._discard()

    def batch(self) -> AsyncBatchBuilder:
        """A nested batch: one member of this one, committed with it."""
        child = AsyncBatchBuilder(self.client, self)
        self.children.append(child)
        return child

    async def commit(self) -> str:
        """Stores the batch, its nested batches and all their jobs at once; returns its id."""
        batches, jobs, created, builders = self._plan()
        await self.client.storage.create_batches(batches, jobs)
        for callback in created:
            callback()
        for b in builders:
            b.committed = True
            for target, args, kwargs, on in b.continuations:
                await self.client._continue("batch", b.id, target, args, kwargs, on)
        return self.id


__all__ = ["AsyncTaskfire", "AsyncBatchBuilder"]
