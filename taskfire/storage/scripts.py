"""The one way taskfire calls its scripts: FCALL of the library's functions, in one
round trip however many calls go together, with the library loaded on demand.

A server that does not know the library (new, flushed, restarted without persistence)
answers "Function not found". The library is then loaded and only the refused calls are
sent again, so nothing runs twice; inside a MULTI every call is a function of the same
library, so either all were refused or none.

On one server (or a Sentinel-watched primary) each thread sends on a connection of its
own, past the client's per-command machinery (pool checkout, hooks, retries), which
costs more Python time than the call itself on the worker's hot path; callers retry on
their own terms. On a Redis Cluster the client's own routing (slots, MOVED, failover) is
worth its cost, and calls that need one connection (MULTI, WAIT) go to the node that
serves the prefix's slot.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, NamedTuple, Sequence

import hiredis
import redis
from redis.exceptions import (AskError, ClusterDownError, ClusterError, MovedError, RedisClusterException,
                              ResponseError, TryAgainError)

from ..errors import ConfigError
from .keys import Keys
from .library import FUNCTIONS, LIBRARY

#: Errors after which a caller should wait and try again: Redis is down, restarting,
#: loading its data, or the connection dropped.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

#: Replies of a cluster node that no longer serves taskfire's slot, or not yet (and the
#: cluster client's word that redirections did not settle: a slot on the move).
CLUSTER_CHANGES = (MovedError, AskError, ClusterDownError, TryAgainError, ClusterError)


class SlotMoving(redis.ConnectionError):
    """A Redis Cluster node answered that a shard's slot moved to another node or is being
    moved (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): the call did not run there, and runs once
    the cluster client has relearnt the slots, or the move is done. A failover or a
    resharding takes seconds, so callers that retry a dropped connection once or twice
    retry this until their timeout (creating.retry_pause)."""

    def __init__(self) -> None:
        super().__init__("a Redis Cluster node answered that taskfire's slot moved or is moving; try again")


def declared_keys(keys: Keys) -> tuple[str, str]:
    """The keys every script call declares (the scripts read their keys from the prefix,
    not from KEYS). The `queues` set routes a call to the shard's slot on a cluster. The
    slot guard is a key taskfire never writes: while a cluster moves the slot between
    nodes (resharding, a key at a time), a call that declares a key one node lacks is
    answered TRYAGAIN (or ASK, then TRYAGAIN) before its script runs. Without it a script
    would run on a node holding only part of the shard's keys and stop at the first key
    that moved, after some of its writes: a job taken from its queue whose record had
    moved would be lost. With it, the shard's calls are refused until the move is done,
    and taskfire's callers retry them as they do a failover (docs/high-availability.md)."""
    return keys.queues, keys.slot_guard


class Call(NamedTuple):
    """One script call: the script's name and its arguments after the prefix."""

    script: str
    args: Sequence[Any]


def unknown_function(reply: Any) -> bool:
    """Whether a reply says the server does not have the library (yet, or any more)."""
    return isinstance(reply, ResponseError) and str(reply).startswith("Function not found")


def block_seconds(timeout: float) -> str:
    """A blocking command's timeout: whole milliseconds, rounded up, so that a wait for a
    due time never ends before it."""
    return f"{max(math.ceil(timeout * 1000), 1) / 1000:.3f}"


def load_refused(exc: ResponseError, url: str) -> Exception:
    """What to raise when a server refused FUNCTION LOAD."""
    if "unknown command" in str(exc).lower():
        return ConfigError(f"taskfire needs Redis 7.0 or later, or Valkey 7.2 or later (it runs its scripts as "
                           f"Redis Functions); the server at {url} does not know FUNCTION LOAD")
    return exc


def frame(commands: list[Sequence[Any]], transaction: bool, replicas: int, wait_timeout_ms: int,
          before: Sequence[Any]) -> list[Sequence[Any]]:
    """Script calls as sent in one round trip: after `before`, inside MULTI/EXEC if a
    transaction, followed by WAIT if replicas must have them (see Scripts.run)."""
    framed: list[Sequence[Any]] = [before] if before else []
    if transaction:
        framed.append(("MULTI",))
    framed += commands
    if transaction:
        framed.append(("EXEC",))
    if replicas:
        framed.append(("WAIT", replicas, wait_timeout_ms))
    return framed


def unframe(replies: list[Any], transaction: bool, replicas: int,
            before: Sequence[Any]) -> tuple[list[Any], int | None, bool]:
    """The calls' own replies from a round trip `frame` built, the replicas' count (if
    WAIT was sent), and whether a cluster answered that taskfire's slot moved."""
    if before:
        replies = replies[1:]
    acked: Any = replies.pop() if replicas else None
    # (in a transaction, a call the node refused to queue, TRYAGAIN say, is among the
    # replies before EXEC's, and EXEC's is then an EXECABORT)
    if any(isinstance(r, CLUSTER_CHANGES) for r in (*replies, acked)):
        return replies, None, True
    if transaction:
        replies = replies[-1]  # EXEC's: one per call
        if isinstance(replies, Exception):
            raise replies
        if any(isinstance(r, CLUSTER_CHANGES) for r in replies):
            return replies, None, True
    if isinstance(acked, Exception):
        raise acked
    return replies, None if acked is None else int(acked), False


def take_replies(results: list[Any], pending: list[int], replies: Sequence[Any],
                 errors_in_place: bool = False) -> list[int]:
    """Puts each pending call's reply in its place in `results`; raises the first error
    reply (unless `errors_in_place`: it is that call's reply); returns the calls to send
    again once the library is loaded."""
    missing = []
    for i, reply in zip(pending, replies, strict=True):
        if unknown_function(reply):
            missing.append(i)
        elif isinstance(reply, Exception) and not errors_in_place:
            raise reply
        else:
            results[i] = reply
    return missing


class Scripts:
    """Calls the library's functions through one client (see connection.connect)."""

    def __init__(self, client: redis.Redis, cluster: redis.RedisCluster | None, url: str, prefix: str,
                 declared: Sequence[str]) -> None:
        self.client = client
        self.cluster = cluster
        self.url = url
        self.prefix = prefix
        self.declared = declared  # KEYS (see declared_keys): the first routes the call
        self._lines = threading.local()

    def command(self, call: Call) -> tuple[Any, ...]:
        return ("FCALL", FUNCTIONS[call.script], len(self.declared), *self.declared, self.prefix, *call.args)

    def load(self) -> None:
        """Loads the library (on a cluster, into every primary). Replacing a library of
        the same version is harmless: same name, same code."""
        try:
            self.client.function_load(LIBRARY, replace=True)
        except ResponseError as exc:
            raise load_refused(exc, self.url) from None

    # -- calls ---------------------------------------------------------------------

    def call(self, script: str, args: Sequence[Any]) -> Any:
        """One script call; its reply (an error reply raised)."""
        return self.run([Call(script, args)])[0]

    def run(self, calls: Sequence[Call], *, transaction: bool = False, replicas: int = 0,
            wait_timeout_ms: int = 0, before: Sequence[Any] = (), errors_in_place: bool = False) -> list[Any]:
        """Script calls sent together, in one round trip, and their replies; the first
        error reply is raised (`errors_in_place`: returned as its call's reply, so the
        caller knows which calls did their work). `transaction`: inside MULTI/EXEC. `replicas`: then WAIT
        until that many replicas have this connection's writes (the acknowledged count
        is appended to the replies). `before`: a command sent first on the same
        connection, whose reply is dropped (an idle worker's BLPOP: Redis runs a blocked
        client's next command the moment its block ends)."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(2):
            replies, acked = self._round_trip([calls[i] for i in pending], transaction, replicas, wait_timeout_ms,
                                              () if attempt else before)
            pending = take_replies(results, pending, replies, errors_in_place)
            if not pending:
                return results + [acked] if replicas else results
            self.load()
        raise RuntimeError("Redis keeps forgetting taskfire's scripts")

    def _round_trip(self, calls: Sequence[Call], transaction: bool, replicas: int, wait_timeout_ms: int,
                    before: Sequence[Any]) -> tuple[list[Any], int | None]:
        """Sends the calls (see `run`); their replies, and the replicas' count if asked."""
        commands = frame([self.command(c) for c in calls], transaction, replicas, wait_timeout_ms, before)
        raw = self._exchange(commands, one_connection=transaction or bool(replicas))
        replies, acked, moved = unframe(raw, transaction, replicas, before)
        if moved:
            self.slot_moved()
            raise SlotMoving()
        return replies, acked

    def send(self, *command: Any) -> Any:
        """One plain command on this thread's connection (a BLPOP, say); its reply."""
        reply = self._exchange([command], one_connection=False)[0]
        if isinstance(reply, CLUSTER_CHANGES):
            self.slot_moved()
            raise SlotMoving()
        if isinstance(reply, Exception):
            raise reply
        return reply

    # -- connections ---------------------------------------------------------------

    def _exchange(self, commands: Sequence[Sequence[Any]], one_connection: bool) -> list[Any]:
        """Sends commands in one round trip; their replies, an error reply as an exception
        object in its place."""
        if self.cluster is None:
            return self._on_line(commands)
        if one_connection:
            # The node that holds the slot, directly (WAIT and MULTI have no key to route by).
            node = self.cluster.get_node_from_key(self.declared[0]).redis_connection
            pipe = node.pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            try:
                return pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
            except TRANSIENT_ERRORS:
                self.slot_moved()
                raise
        replies = []
        for c in commands:
            try:
                replies.append(self.cluster.execute_command(*c))
            except (ResponseError, ClusterError) as exc:  # (unframe tells a slot on the move)
                replies.append(exc)
        return replies

    def _on_line(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Commands sent together on this thread's own connection."""
        lines = self._lines
        conn = getattr(lines, "conn", None)
        if conn is None:
            conn = lines.conn = self.client.connection_pool.make_connection()
            lines.connected = False
        try:
            if not lines.connected:
                # Here, not by the send below: only connect() asks Sentinel where the
                # primary is (a send would dial the connection's default address).
                conn.connect()
                lines.connected = True
            conn.send_packed_command([hiredis.pack_command(tuple(c)) for c in commands], check_health=False)
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # a complete reply: the connection is fine
                    replies.append(exc)
            return replies
        except BaseException:
            conn.disconnect()  # the reply may still be on its way: never reuse this socket
            lines.connected = False
            raise

    def slot_moved(self) -> None:
        """Relearns a cluster's slots after talking to a node directly failed."""
        if self.cluster is not None:
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                self.cluster.nodes_manager.initialize()
