"""The asyncio door to Redis, for AsyncTaskfire: the verbs a client needs (create, change
state, read, wait), on redis-py's asyncio client.

It speaks the same protocol as the sync path and owns none of it: the same Functions
library (library.py, loaded on demand), the same argument and reply layouts (wire.py),
the same key names (keys.py), and the same framing of calls sent together
(scripts.frame / unframe / take_replies). Only the sending is asynchronous. Each call
takes a connection from the client's pool, so many tasks of one event loop have calls
on their way at once.

One server or a Sentinel-watched primary; a Redis Cluster is for the sync client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Sequence

import hiredis
import redis
import redis.asyncio
from redis.exceptions import ResponseError

from . import connection, wire
from .keys import Keys
from .library import FUNCTIONS, LIBRARY
from .scripts import (Call, block_seconds, declared_keys, frame, load_refused, take_replies, unframe,
                      unknown_function)
from .faults import REDIS_ERRORS
from .store import (WAIT_BLOCK_S, RawJob, check_settings, created_replies, enqueue_error, grouped_job_reads,
                    queue_job_reads, retry_pause)
from .wire import Applied, NewBatch, NewJob, Transition


class AsyncScripts:
    """Calls the library's functions through an asyncio client (see Scripts).

    Group commit, as a worker's finisher does: calls that tasks make while a round trip
    is on its way wait, and go together in the next one (each its own FCALL, with its
    own reply or error). One task alone still sends at once; a hundred tasks enqueueing
    share round trips and the client's per-call work."""

    def __init__(self, client: redis.asyncio.Redis, url: str, prefix: str, declared: Sequence[str]) -> None:
        self.client = client
        self.url = url
        self.prefix = prefix
        self.declared = declared  # KEYS (see scripts.declared_keys)
        self._waiting: list[tuple[Sequence[Call], bool, asyncio.Future[list[Any]]]] = []
        self._sender: asyncio.Task[None] | None = None

    def command(self, call: Call) -> tuple[Any, ...]:
        return ("FCALL", FUNCTIONS[call.script], len(self.declared), *self.declared, self.prefix, *call.args)

    async def load(self) -> None:
        try:
            await self.client.function_load(LIBRARY, replace=True)
        except ResponseError as exc:
            raise load_refused(exc, self.url) from None

    async def call(self, script: str, args: Sequence[Any]) -> Any:
        return (await self.run([Call(script, args)]))[0]

    async def run(self, calls: Sequence[Call], *, transaction: bool = False, replicas: int = 0,
                  wait_timeout_ms: int = 0, errors_in_place: bool = False) -> list[Any]:
        """Script calls sent together in one round trip (see Scripts.run); without a
        transaction or WAIT, in the same round trip as other tasks' calls."""
        if transaction or replicas:
            return await self._run_framed(calls, transaction, replicas, wait_timeout_ms, errors_in_place)
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((calls, errors_in_place, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        return await done

    async def _send_waiting(self) -> None:
        """Sends the calls that piled up, one round trip per pile, until none is left."""
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    replies = await self._replies([c for calls, _, _ in group for c in calls])
                except BaseException as exc:  # the round trip failed: every caller in it hears so
                    for _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                at = 0
                for calls, errors_in_place, done in group:
                    mine, at = replies[at:at + len(calls)], at + len(calls)
                    error = None if errors_in_place else next((r for r in mine if isinstance(r, Exception)), None)
                    if done.done():
                        continue  # its task was cancelled
                    if error is not None:
                        done.set_exception(error)
                    else:
                        done.set_result(mine)
        finally:
            self._sender = None

    async def _replies(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's reply, an error reply as an exception in its place; calls the
        server did not know the library for are sent again once it is loaded."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            replies = await self._exchange([self.command(calls[i]) for i in pending])
            missing = []
            for i, reply in zip(pending, replies, strict=True):
                if unknown_function(reply):
                    missing.append(i)
                else:
                    results[i] = reply
            if not missing:
                return results
            await self.load()
            pending = missing
        raise RuntimeError("Redis keeps forgetting taskfire's scripts")

    async def _run_framed(self, calls: Sequence[Call], transaction: bool, replicas: int,
                          wait_timeout_ms: int, errors_in_place: bool) -> list[Any]:
        """Calls inside MULTI/EXEC and/or followed by WAIT: one connection, no company."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            commands = frame([self.command(calls[i]) for i in pending], transaction, replicas, wait_timeout_ms, ())
            replies, acked, _moved = unframe(await self._exchange(commands), transaction, replicas, ())
            pending = take_replies(results, pending, replies, errors_in_place)
            if not pending:
                return results + [acked] if replicas else results
            await self.load()
        raise RuntimeError("Redis keeps forgetting taskfire's scripts")

    async def send(self, *command: Any) -> Any:
        """One plain command (a BLPOP, say); its reply."""
        reply = (await self._exchange([command]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _exchange(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Commands sent together on one connection of the pool, past the client's
        per-command machinery (as the sync path does); their replies, an error reply as
        an exception object in its place."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command([hiredis.pack_command(tuple(c)) for c in commands], check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # a complete reply: the connection is fine
                    replies.append(exc)
            return replies
        except BaseException:
            await conn.disconnect()  # the reply may still be on its way: never reuse this socket
            raise
        finally:
            await pool.release(conn)


class AsyncStorage:
    """The client's Redis I/O, for one key prefix, from asyncio code (see Storage)."""

    def __init__(self, url: str, prefix: str = "taskfire:", *, retention_s: int = 86400,
                 index_cap: int = 10_000, socket_timeout: float = 10.0,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        check_settings(url, prefix, wait_replicas, wait_timeout_ms)
        self.url = url
        self.keys = Keys(prefix)
        self.retention_s = retention_s
        self.index_cap = index_cap
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.timeout = socket_timeout
        self.redis = connection.connect_async(url, socket_timeout=socket_timeout)
        self.scripts = AsyncScripts(self.redis, url, prefix, declared_keys(self.keys))

    async def close(self) -> None:
        await self.redis.aclose()

    # -- creating jobs -------------------------------------------------------------

    async def create(self, jobs: Sequence[NewJob], chunk: int = 500, repeated: bool = False) -> dict[str, str]:
        """See Storage.create; an EnqueueError's retry() is a coroutine here."""
        parts = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
        replies = await self._create_idempotent(
            lambda again: [Call("create", wire.encode_create(p, repeated or again)) for p in parts], parts,
            lambda rest: self.create(rest, chunk, repeated=True))
        duplicates: dict[str, str] = {}
        for part, reply in zip(parts, replies, strict=True):
            duplicates.update(wire.decode_create(reply, part))
        return duplicates

    async def create_batches(self, batches: Sequence[NewBatch], jobs: Sequence[NewJob], chunk: int = 1000,
                             repeated: bool = False) -> None:
        """See Storage.create_batches."""
        parts = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]

        def calls(again: bool) -> list[Call]:
            return [Call("batch_open", wire.encode_batch_open(batches, self.retention_s, self.index_cap)),
                    *(Call("create", wire.encode_create(p, repeated or again)) for p in parts)]

        await self._create_idempotent(calls, [[], *parts],
                                      lambda rest: self.create_batches(batches, jobs, chunk, True), transaction=True)

    async def continue_job(self, kind: str, parent: str, on: str, job: NewJob) -> int:
        """See Storage.continue_job."""
        args = wire.encode_continue(kind, parent, on, job, self.retention_s, self.index_cap)
        return int((await self._create_idempotent(lambda repeated: [Call("continue", args)], [[job]],
                                                  lambda rest: self.continue_job(kind, parent, on, job)))[0])

    async def _create_idempotent(self, calls: Callable[[bool], list[Call]], groups: Sequence[Sequence[NewJob]],
                                 retry: Callable[[list[NewJob]], Awaitable[object]],
                                 transaction: bool = False) -> list[Any]:
        """See Storage._create_idempotent: a call sent again after a dropped connection
        says so to the scripts (`calls(repeated)`), so none creates a job twice."""
        deadline = time.monotonic() + self.timeout
        for attempt in range(3):
            try:
                replies = await self.scripts.run(calls(attempt > 0), transaction=transaction,
                                                 replicas=self.wait_replicas, wait_timeout_ms=self.wait_timeout_ms,
                                                 errors_in_place=True)
            except REDIS_ERRORS as exc:
                pause = retry_pause(exc, attempt, deadline)
                if pause is None:
                    raise enqueue_error(groups, [exc] * len(groups), retry, self.timeout) from exc
                await asyncio.sleep(pause)
                continue
            return created_replies(replies, groups, retry, self.wait_replicas, self.wait_timeout_ms, self.timeout)
        raise AssertionError("unreachable")

    # -- changing state ------------------------------------------------------------

    async def transition(self, t: Transition) -> Applied:
        return wire.decode_transition(await self.scripts.call(
            "transition", wire.encode_transition(t, self.retention_s, self.index_cap)))

    async def request_cancel(self, job_id: str) -> bool:
        """Flags a running job for cancellation; False if it is not running."""
        key = self.keys.job(job_id)
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
        pipe = self.redis.pipeline(transaction=False)
        queue_job_reads(pipe, self.keys, job_ids)
        return grouped_job_reads(await pipe.execute())

    async def read_batch(self, batch_id: str) -> dict[bytes, bytes]:
        return await self.redis.hgetall(self.keys.batch(batch_id))  # type: ignore[return-value,misc]

    async def set_job_field(self, job_id: str, field: str, value: bytes | str) -> None:
        await self.redis.hset(self.keys.job(job_id), field, value)  # type: ignore[misc]

    async def get_job_field(self, job_id: str, field: str) -> bytes | None:
        return await self.redis.hget(self.keys.job(job_id), field)  # type: ignore[return-value,misc]

    async def wait_for_outcome(self, kind: str, id_: str, timeout: float | None) -> int:
        """See Storage.wait_for_outcome: the same calls, without blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.keys.outcome(kind, id_)
        while True:
            status = wire.decode_wait(await self.scripts.call("wait", wire.encode_wait(kind, id_)))
            if status != wire.WAITING:
                return status
            while True:
                block = min(WAIT_BLOCK_S, self.timeout / 2)
                left = block if deadline is None else min(deadline - time.monotonic(), block)
                if left <= 0:
                    return wire.WAITING
                if await self.scripts.send("BLPOP", key, block_seconds(left)) is not None:
                    break
