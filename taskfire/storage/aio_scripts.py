"""How AsyncStorage calls taskfire's scripts: the asyncio twin of scripts.Scripts (the
same FCALLs, framing and library loading), with group commit (see AsyncScripts).

`AsyncScripts` sends on a connection of a plain client's pool (one server, or a
Sentinel-watched primary). `AsyncNodeScripts` sends one shard's calls of a Redis
Cluster (storage/aio_shards.py) straight to the primary that serves its slot: every
call of a shard is in that one slot, so routing each FCALL through the cluster client
(which would ask the server for an FCALL's keys, and send each command on its own)
buys nothing, while one connection keeps a pile of calls, MULTI/EXEC and WAIT one
round trip, as on one server. A reply saying the slot moved relearns the slots and
fails the call with a ConnectionError, which the caller may retry (creating calls
do, idempotently), as the sync path does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

from .library import FUNCTIONS, LIBRARY
from .scripts import (
    CLUSTER_CHANGES,
    Call,
    SlotMoving,
    frame,
    load_refused,
    take_replies,
    unframe,
)


async def _on_line(conn: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Commands sent together on one connection, past the client's per-command machinery;
    their replies, an error reply as an exception object in its place."""
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


class AsyncScripts:
    """Calls the library's functions through an asyncio client (see Scripts).

    Group commit, as a worker's finisher does: calls that tasks make while a round trip
    is on its way wait, and go together in the next one (each its own FCALL, with its
    own reply or error). One task alone still sends at once; a hundred tasks enqueueing
    share round trips and the client's per-call work."""

    def __init__(self, client: Any, url: str, prefix: str, declared: Sequence[str]) -> None:
        self.client = client
        self.url = url
        self.prefix = prefix
        self.declared = declared  # KEYS (see scripts.declared_keys): the first routes the call
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
            pending = take_replies(results, pending, replies, errors_in_place=True)
            if not pending:
                return results
            await self.load()
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
            return await _on_line(conn, commands)
        finally:
            await pool.release(conn)


class AsyncNodeScripts(AsyncScripts):
    """One shard's calls on a Redis Cluster, sent to the primary that serves its slot
    (see the module's docstring)."""

    def __init__(self, cluster: RedisCluster, url: str, prefix: str, declared: Sequence[str]) -> None:
        super().__init__(cluster, url, prefix, declared)
        self.cluster = cluster

    async def _node(self) -> ClusterNode:
        await self.cluster.initialize()  # the slots, learnt on first use (no-op after)
        node = self.cluster.get_node_from_key(self.declared[0])
        if node is None:
            raise redis.ConnectionError(f"no node of the cluster serves {self.declared[0]!r}'s slot")
        return node

    async def load(self) -> None:
        """Loads the library into this shard's primary (a primary that lacks it, new or
        restarted, is the only one that said so)."""
        node = await self._node()
        try:
            await node.execute_command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        except ResponseError as exc:
            raise load_refused(exc, self.url) from None

    async def _exchange(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        node = await self._node()
        conn = node.acquire_connection()
        try:
            replies = await _on_line(conn, commands)
        except (redis.ConnectionError, redis.TimeoutError):
            self.slot_moved()  # the primary may have failed over
            raise
        finally:
            node.release(conn)
        if any(isinstance(r, CLUSTER_CHANGES) for r in replies):
            self.slot_moved()
            raise SlotMoving()
        return replies

    def slot_moved(self) -> None:
        """After talking to a node directly failed: asks the cluster client to relearn
        the slots, which the next call's `_node` (its initialize()) does once, under
        the client's lock, however many tasks asked (as its own commands do)."""
        request = getattr(self.cluster, "_request_refresh", None)  # newer redis-py
        if request is not None:
            request()
        else:
            self.cluster._initialize = True
