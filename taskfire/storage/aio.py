"""The asyncio door to Redis, for AsyncTaskfire: the verbs a client needs (create, change
state, read, wait), on redis-py's asyncio client.

It speaks the same protocol as the sync path and owns none of it: the same Functions
library (library.py, loaded on demand), the same argument and reply layouts (wire.py),
the same key names (keys.py), and the same framing of calls sent together
(scripts.frame / unframe / take_replies, sent by aio_scripts.py). Only the sending is
asynchronous. Each call takes a connection from the client's pool, so many tasks of one
event loop have calls on their way at once.

One server, a Sentinel-watched primary, or a Redis Cluster: there, as on the sync path,
the store has a shard per primary, and each call goes to the shard of the job it is
about, placed and routed by the sync path's rules (aio_shards.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Sequence

import redis

from ..errors import EnqueueError, ReplicationTimeout
from . import connection, wire
from .aio_scripts import AsyncScripts
from .aio_shards import AsyncShardRouting, open_shards
from .faults import REDIS_ERRORS
from .scripts import Call, block_seconds
from .shards import Placer
from .creating import ShardedCreate, created_replies, enqueue_error, retry_pause
from .store import WAIT_BLOCK_S, RawJob, check_settings, grouped_job_reads, queue_job_reads
from .wire import Applied, NewBatch, NewJob, Transition


class AsyncStorage(AsyncShardRouting):
    """The client's Redis I/O, for one key prefix, from asyncio code (see Storage; which
    shard a call goes to: aio_shards.py)."""

    def __init__(self, url: str, prefix: str = "taskfire:", *, retention_s: int = 86400,
                 index_cap: int = 10_000, socket_timeout: float = 10.0,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        check_settings(url, prefix, wait_replicas, wait_timeout_ms)
        self.url = url
        self.retention_s = retention_s
        self.index_cap = index_cap
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.timeout = socket_timeout
        self.redis = connection.connect_async(url, socket_timeout=socket_timeout)
        self.shards = open_shards(self.redis, url, prefix, socket_timeout)
        self.placer = Placer(len(self.shards))

    @property
    def scripts(self) -> AsyncScripts:
        """The home shard's (see shards.py)."""
        return self.shards[0].scripts

    async def close(self) -> None:
        await self.redis.aclose()

    # -- creating jobs -------------------------------------------------------------

    async def create(self, jobs: Sequence[NewJob], chunk: int = 500, repeated: bool = False) -> dict[str, str]:
        """See Storage.create (a call per shard the jobs are in); an EnqueueError's
        retry() is a coroutine here."""
        def retry(rest: list[NewJob]) -> Awaitable[dict[str, str]]:
            return self.create(rest, chunk, repeated=True)

        plan = ShardedCreate(jobs, await self.by_shard(jobs, lambda j: j.id), chunk, repeated,
                             self.wait_timeout_ms, retry)
        for g, shard, parts in plan.steps():
            try:
                replies = await self._create_idempotent(plan.calls(parts), parts, retry, shard.scripts)
            except ReplicationTimeout as exc:  # stored: the other shards' jobs are still sent
                plan.unconfirmed_by(parts, exc)
                continue
            except EnqueueError as exc:
                raise plan.failed(g, exc)  # noqa: B904 - (it carries its cause)
            plan.stored(parts, replies)
        return plan.result()

    async def create_batches(self, batches: Sequence[NewBatch], jobs: Sequence[NewJob], chunk: int = 1000,
                             repeated: bool = False) -> None:
        """See Storage.create_batches: in the outermost batch's shard, where the client
        placed every batch and member."""
        parts = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]

        def calls(again: bool) -> list[Call]:
            return [Call("batch_open", wire.encode_batch_open(batches, self.retention_s, self.index_cap)),
                    *(Call("create", wire.encode_create(p, repeated or again)) for p in parts)]

        shard = await self.shard_of(batches[0].id) if batches else self.shards[0]
        await self._create_idempotent(calls, [[], *parts], lambda rest: self.create_batches(batches, jobs, chunk, True),
                                      shard.scripts, transaction=True)

    async def continue_job(self, kind: str, parent: str, on: str, job: NewJob) -> int:
        """See Storage.continue_job: in the parent's shard."""
        args = wire.encode_continue(kind, parent, on, job, self.retention_s, self.index_cap)
        shard = await self.shard_of(parent)
        return int((await self._create_idempotent(lambda repeated: [Call("continue", args)], [[job]],
                                                  lambda rest: self.continue_job(kind, parent, on, job),
                                                  shard.scripts))[0])

    async def _create_idempotent(self, calls: Callable[[bool], list[Call]], groups: Sequence[Sequence[NewJob]],
                                 retry: Callable[[list[NewJob]], Awaitable[object]], scripts: AsyncScripts,
                                 transaction: bool = False) -> list[Any]:
        """See Storage._create_idempotent: a call sent again after a dropped connection
        says so to the scripts (`calls(repeated)`), so none creates a job twice. (Script
        calls are never repeated by redis-py here, on a cluster either: aio_scripts.py.)"""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:  # (retry_pause ends it)
            try:
                replies = await scripts.run(calls(attempt > 0), transaction=transaction,
                                            replicas=self.wait_replicas, wait_timeout_ms=self.wait_timeout_ms,
                                            errors_in_place=True)
            except REDIS_ERRORS as exc:
                pause = retry_pause(exc, attempt, deadline)
                if pause is None:
                    raise enqueue_error(groups, [exc] * len(groups), retry, self.timeout) from exc
                await asyncio.sleep(pause)
                attempt += 1
                continue
            return created_replies(replies, groups, retry, self.wait_replicas, self.wait_timeout_ms, self.timeout)

    # -- changing state ------------------------------------------------------------

    async def transition(self, t: Transition) -> Applied:
        shard = await self.shard_of(t.job_id)
        return wire.decode_transition(await shard.scripts.call(
            "transition", wire.encode_transition(t, self.retention_s, self.index_cap)))

    async def request_cancel(self, job_id: str) -> bool:
        """Flags a running job for cancellation; False if it is not running."""
        key = (await self.shard_of(job_id)).keys.job(job_id)
        pipe: Any
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    if await pipe.hget(key, "state") != b"Processing":
                        return False
                    pipe.multi()
                    pipe.hset(key, "cancel", "1")
                    await pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    # -- reading and waiting ---------------------------------------------------------

    async def read_jobs(self, job_ids: Sequence[str]) -> list[RawJob]:
        """Every job's keys are in its shard's slot; a cluster's pipeline sends each
        node its own."""
        await self.learn(job_ids)
        pipe = self.redis.pipeline(transaction=False)
        queue_job_reads(pipe, lambda i: self.shard(i).keys, job_ids)
        return grouped_job_reads(await pipe.execute())

    async def read_batch(self, batch_id: str) -> dict[bytes, bytes]:
        key = (await self.shard_of(batch_id)).keys.batch(batch_id)
        return await self.redis.hgetall(key)  # type: ignore[return-value,misc]

    async def set_job_field(self, job_id: str, field: str, value: bytes | str) -> None:
        await self.redis.hset((await self.shard_of(job_id)).keys.job(job_id), field, value)  # type: ignore[misc]

    async def get_job_field(self, job_id: str, field: str) -> bytes | None:
        key = (await self.shard_of(job_id)).keys.job(job_id)
        return await self.redis.hget(key, field)  # type: ignore[return-value,misc]

    async def wait_for_outcome(self, kind: str, id_: str, timeout: float | None) -> int:
        """See Storage.wait_for_outcome: the same calls (to the job's or batch's shard),
        without blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shard = await self.shard_of(id_)
        key = shard.keys.outcome(kind, id_)
        while True:
            status = wire.decode_wait(await shard.scripts.call("wait", wire.encode_wait(kind, id_)))
            if status != wire.WAITING:
                return status
            while True:
                block = min(WAIT_BLOCK_S, self.timeout / 2)
                left = block if deadline is None else min(deadline - time.monotonic(), block)
                if left <= 0:
                    return wire.WAITING
                if await shard.scripts.send("BLPOP", key, block_seconds(left)) is not None:
                    break
