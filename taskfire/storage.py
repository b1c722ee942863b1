"""The Redis layer: one connection pool, the Lua scripts, and one named method per script.

Scripts live in `lua/`. With `lua/prelude.lua` they make one Redis Functions library,
loaded once per server (FUNCTION LOAD) and called with FCALL: the prelude's definitions
are made at load, not at every call. The library's name carries a hash of its code, so
workers and clients of different versions share a server without calling each other's
scripts. A server that does not know the library (a new or flushed one) answers
"Function not found"; the library is loaded and only the refused calls are repeated, so
nothing runs twice.

The client comes from `connection.connect`: one server, a Sentinel-watched primary, or a
Redis Cluster (every key in the prefix's slot). With `wait_replicas`, every call that
creates jobs is followed by WAIT on the same connection, in the same round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence, cast

import hiredis
import msgspec
import redis
from redis.exceptions import (AskError, ClusterDownError, MovedError, RedisClusterException, ResponseError,
                              TryAgainError)

from . import connection
from .errors import ConfigError, ReplicationTimeout
from .keys import Keys

#: Errors after which a caller should wait and try again: Redis is down, restarting,
#: loading its data, or the connection dropped.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

#: Replies of a cluster node that no longer serves taskfire's slot, or not yet.
_CLUSTER_CHANGES = (MovedError, AskError, ClusterDownError, TryAgainError)

_LUA = Path(__file__).with_name("lua")
_PRELUDE = (_LUA / "prelude.lua").read_text()


_SCRIPT_NAMES = ("create", "fetch", "transition", "finish", "extend", "heartbeat", "recurring_claim",
                 "recurring_fire", "continue", "batch_open", "bulk")


def _library() -> tuple[str, str]:
    """The Lua library (the prelude, then each script as a function) and its version."""
    bodies = {name: (_LUA / f"{name}.lua").read_text() for name in _SCRIPT_NAMES}
    version = hashlib.sha1("\0".join([_PRELUDE, *bodies.values()]).encode()).hexdigest()[:12]
    parts = [f"#!lua name=taskfire_{version}", _PRELUDE]
    for name, body in bodies.items():
        parts.append(f"local function {name}_script()\n{body}\nend\n"
                     f"redis.register_function('tf_{version}_{name}', function(keys, args) "
                     f"return run({name}_script, keys, args) end)")
    return "\n".join(parts), version


LIBRARY, LIBRARY_VERSION = _library()


class Script:
    """One script of the library, called by its function name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.function = f"tf_{LIBRARY_VERSION}_{name}"


SCRIPTS = {name: Script(name) for name in _SCRIPT_NAMES}


def _unknown_function(reply: Any) -> bool:
    """Whether a reply says the server does not have the library (yet, or any more)."""
    return isinstance(reply, ResponseError) and str(reply).startswith("Function not found")


class NewJob(msgspec.Struct, frozen=True):
    id: str
    fn: str
    args: bytes
    queue: str
    opts: bytes = b""
    due: str = ""  # "" now, "+<ms>" after a delay, "<ms>" at an absolute time
    fields: dict[str, bytes | str] = {}  # more for the job hash: parameters, batch


class NewBatch(NamedTuple):
    id: str
    total: int       # members: jobs and nested batches
    parent: str = ""  # the enclosing batch


class FetchedJob(msgspec.Struct, frozen=True):
    id: str
    token: str
    fn: str
    args: bytes
    queue: str
    opts: bytes
    retries: int
    created_ms: int
    fetched_ms: int


class Fetch(NamedTuple):
    now_ms: int
    next_wake_ms: int | None
    jobs: list[FetchedJob]


class Transition(msgspec.Struct, frozen=True):
    """The arguments of one state change (see lua/transition.lua)."""

    job_id: str
    state: str
    entries: Sequence[tuple[str, bytes]]
    expected: Sequence[str] = ()  # the job must be in one of these (empty: any) ...
    unless: Sequence[str] = ()    # ... and in none of these
    token: str = ""
    queue: str = ""
    front: bool = False
    due: str = ""
    final: bool = False
    fields: dict[str, bytes | str] = {}


class FetchRequest(msgspec.Struct, frozen=True):
    worker_id: str
    queues: Sequence[str]
    max_jobs: int
    lease_ms: int
    recoveries_allowed: int
    pass_wake: bool = True  # a full worker leaves a wake-up for the next idle one


class DueRun(msgspec.Struct, frozen=True):
    """A recurring job claimed for firing: what its scheduler needs to compute the run."""

    id: str
    fn: str
    cron: str
    tz: str
    misfire: str
    next_ms: int


class Claim(NamedTuple):
    now_ms: int
    next_ms: int | None  # the earliest run still pending after the claim
    due: list[DueRun]


class Storage:
    """All of taskfire's Redis I/O."""

    def __init__(self, url: str, prefix: str = "taskfire:", *, retention_s: int = 86400,
                 index_cap: int = 10_000, socket_timeout: float = 10.0,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        """`wait_replicas`: after creating jobs, wait until this many replicas have them
        (WAIT), at most `wait_timeout_ms`, else raise ReplicationTimeout."""
        if connection.is_cluster_url(url) and not connection.has_hash_tag(prefix):
            raise ConfigError(f"key prefix {prefix!r} has no hash tag: on Redis Cluster every taskfire key "
                              f"must be in one slot. Use a prefix such as '{{taskfire}}:' "
                              f"(--prefix / TASKFIRE_PREFIX / Taskfire(prefix=...))")
        if not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ConfigError(f"wait_replicas must be a whole number of replicas, 0 or more, not {wait_replicas!r}")
        if not isinstance(wait_timeout_ms, int) or wait_timeout_ms < 1:
            raise ConfigError(f"wait_timeout_ms must be at least 1 ms (WAIT 0 would block forever), "
                              f"not {wait_timeout_ms!r}")
        self.url = url
        self.keys = Keys(prefix)
        self.retention_s = retention_s
        self.index_cap = index_cap
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        client = connection.connect(url, socket_timeout=socket_timeout)
        self.cluster = client if isinstance(client, redis.RedisCluster) else None
        # A RedisCluster answers the same commands (routed by key), so the rest of the
        # code needs to know only where the two differ.
        self.redis = cast(redis.Redis, client)
        self._lines = threading.local()

    def close(self) -> None:
        connection.close(self.redis)

    # -- scripts -------------------------------------------------------------------

    def _command(self, script: Script, args: Sequence[Any]) -> tuple[Any, ...]:
        """The FCALL of a script. KEYS[1], the queues set, only routes it on a cluster."""
        return ("FCALL", script.function, 1, self.keys.queues, self.keys.prefix, *args)

    def _call(self, pipe: Any, script: Script, args: Sequence[Any]) -> None:
        pipe.execute_command(*self._command(script, args))

    def _line_call(self, *command: Any) -> Any:
        """One command on this thread's own connection (see _line_calls)."""
        reply = self._line_calls(command)[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def _line_calls(self, *commands: Sequence[Any]) -> list[Any]:
        """Commands sent together on this thread's own connection, and their replies (an
        error reply as a ResponseError in its place). The worker's hot path uses it to
        skip the client's per-command machinery (pool checkout, hooks, retries), which
        costs more Python time than the call itself; callers retry on their own terms.
        On a cluster the client's own routing (slots, MOVED, failover) is worth its cost."""
        if self.cluster is not None:
            replies = []
            for command in commands:
                try:
                    replies.append(self.cluster.execute_command(*command))
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        lines = self._lines
        conn = getattr(lines, "conn", None)
        if conn is None:
            conn = lines.conn = self.redis.connection_pool.make_connection()
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

    def _run_one(self, script: Script, args: Sequence[Any]) -> Any:
        """One script call (loading the library if the server does not have it)."""
        command = self._command(script, args)
        try:
            return self._line_call(*command)
        except ResponseError as exc:
            if not _unknown_function(exc):
                raise
            self.load_scripts()
            return self._line_call(*command)

    def _run(self, calls: list[tuple[Script, Sequence[Any]]], transaction: bool = False) -> list[Any]:
        """Runs script calls in one round trip (in one MULTI with `transaction`); loads the
        library if the server lacks it and repeats the refused calls. Every call is a
        function of one library, so in a MULTI either all of them were refused or none."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=transaction)
            for i in pending:
                self._call(pipe, *calls[i])
            replies = pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(pending, replies, strict=True):
                if _unknown_function(reply):
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                return results
            self.load_scripts()
            pending = missing
        raise RuntimeError("Redis keeps forgetting taskfire's scripts")

    def load_scripts(self) -> None:
        """Loads the library (on a cluster, into every primary). Replacing a library of
        the same version is harmless: same name, same code."""
        try:
            self.redis.function_load(LIBRARY, replace=True)
        except ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise ConfigError(f"taskfire needs Redis 7.0 or later, or Valkey 7.2 or later (it runs its "
                                  f"scripts as Redis Functions); the server at {self.url} does not know "
                                  f"FUNCTION LOAD") from None
            raise

    def _replicated(self, calls: list[tuple[Script, Sequence[Any]]], job_ids: list[str],
                    transaction: bool = False) -> list[Any]:
        """Runs script calls (in a MULTI with `transaction`), then WAIT, on one connection
        in one round trip: WAIT counts the replicas that have this connection's writes.
        Raises ReplicationTimeout if fewer than `wait_replicas` confirm in time."""
        for attempt in range(2):
            if attempt:
                # Every call is a function of one library: inside MULTI too, either all
                # of them ran or none did.
                self.load_scripts()
            # On a cluster: the node that holds the slot, directly (WAIT has no key to route by).
            client = self.redis if self.cluster is None else \
                self.cluster.get_node_from_key(self.keys.queues).redis_connection
            pipe = client.pipeline(transaction=False)
            if transaction:
                pipe.execute_command("MULTI")
            for script, args in calls:
                self._call(pipe, script, args)
            if transaction:
                pipe.execute_command("EXEC")
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                *replies, acked = pipe.execute(raise_on_error=False)
            except TRANSIENT_ERRORS:
                self._slot_moved()
                raise
            if transaction:
                replies = replies[-1]  # EXEC's: one per call
                if isinstance(replies, Exception):
                    raise replies
            if any(isinstance(r, _CLUSTER_CHANGES) for r in (*replies, acked)):
                self._slot_moved()
                raise redis.ConnectionError("the cluster moved taskfire's slot; try again")
            if any(_unknown_function(r) for r in replies) and not attempt:
                continue
            for reply in (*replies, acked):
                if isinstance(reply, Exception):
                    raise reply
            if int(acked) < self.wait_replicas:
                raise ReplicationTimeout(job_ids, int(acked), self.wait_replicas, self.wait_timeout_ms)
            return replies
        raise RuntimeError("Redis keeps forgetting taskfire's scripts")

    def _slot_moved(self) -> None:
        """Relearns a cluster's slots after talking to a node directly failed."""
        if self.cluster is not None:
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                self.cluster.nodes_manager.initialize()

    # -- jobs ----------------------------------------------------------------------

    @staticmethod
    def _create_calls(jobs: Sequence[NewJob], chunk: int) -> list[tuple[Script, Sequence[Any]]]:
        calls: list[tuple[Script, Sequence[Any]]] = []
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            args: list[Any] = [len(part)]
            for j in part:
                args += (j.id, j.fn, j.args, j.queue, j.opts, j.due, len(j.fields))
                for field, value in j.fields.items():
                    args += (field, value)
            calls.append((SCRIPTS["create"], args))
        return calls

    def create_batches(self, batches: Sequence[NewBatch], jobs: Sequence[NewJob], chunk: int = 1000) -> None:
        """Creates batches and their jobs in one MULTI: no job can run, and no other
        client's call can come in between, before all of them exist. Idempotent per id,
        so a retry after a dropped connection is safe."""
        opening: list[Any] = [self.retention_s, self.index_cap, len(batches)]
        for b in batches:
            opening += (b.id, b.total, b.parent)
        calls = [(SCRIPTS["batch_open"], opening), *self._create_calls(jobs, chunk)]
        self._run_idempotent(calls, [j.id for j in jobs], transaction=True)

    def _run_idempotent(self, calls: list[tuple[Script, Sequence[Any]]], job_ids: list[str],
                        transaction: bool = False) -> list[Any]:
        """Runs calls that create nothing twice when repeated (the job ids are the
        caller's), so a dropped connection is retried here, twice; with wait_replicas,
        until the replicas have the jobs."""
        for attempt in range(3):
            try:
                if self.wait_replicas:
                    return self._replicated(calls, job_ids, transaction=transaction)
                if len(calls) == 1 and not transaction:
                    return [self._run_one(*calls[0])]
                return self._run(calls, transaction=transaction)
            except TRANSIENT_ERRORS:
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def continue_job(self, kind: str, parent: str, on: str, job: NewJob) -> int:
        """Creates a continuation of a job or batch (see continue.lua): 1 created,
        0 created by an earlier try, -1 no such parent."""
        args: list[Any] = [kind, parent, on, self.retention_s, self.index_cap, job.id, job.fn, job.args,
                           job.queue, job.opts, len(job.fields)]
        for field, value in job.fields.items():
            args += (field, value)
        return int(self._run_idempotent([(SCRIPTS["continue"], args)], [job.id])[0])

    def job_ids_in_state(self, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
        """A page of a state's index. Enqueued (one queue's list) next to run first;
        Scheduled soonest due first; Processing nearest lease deadline first; the others
        newest first: a capped list for final states, a sorted set for the rest (a custom
        state's kind is in the custom-states registry, so no TYPE-then-read race)."""
        stop = offset + limit - 1
        if state == "Enqueued":
            if queue is None:
                raise ConfigError("Enqueued jobs are listed per queue: pass queue=")
            ids: list[bytes] = self.redis.lrange(self.keys.queue(queue), -offset - limit,  # type: ignore[assignment]
                                                 -offset - 1)
            ids.reverse()
        elif state in ("Scheduled", "Processing"):
            ids = self.redis.zrange(self.keys.schedule if state == "Scheduled" else self.keys.processing,  # type: ignore[assignment]
                                    offset, stop)
        else:
            kind = {"Succeeded": b"list", "Deleted": b"list", "Failed": b"zset", "Awaiting": b"zset"}.get(state) \
                or self.redis.hget(self.keys.custom_states, state) \
                or self.redis.type(self.keys.state(state))  # a store from before the registry
            if kind == b"list":
                ids = self.redis.lrange(self.keys.state(state), offset, stop)  # type: ignore[assignment]
            elif kind == b"zset":
                ids = self.redis.zrevrange(self.keys.state(state), offset, stop)  # type: ignore[assignment]
            else:
                ids = []  # a state no job has entered
        return [i.decode() for i in ids]

    def read_batch(self, batch_id: str) -> dict[bytes, bytes]:
        return self.redis.hgetall(self.keys.batch(batch_id))  # type: ignore[return-value]

    def read_batches(self, offset: int, limit: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """A page of the batches index, newest first, with each batch's hash (empty for a
        batch that expired since), in one round trip."""
        ids: list[bytes] = self.redis.lrange(self.keys.batches, offset, offset + limit - 1)  # type: ignore[assignment]
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.batch(i.decode()))
        return list(zip((i.decode() for i in ids), pipe.execute(), strict=True))

    def custom_states(self) -> dict[str, str]:
        """Every custom state a job has entered, and the kind of its index ("list" or "zset")."""
        h: dict[bytes, bytes] = self.redis.hgetall(self.keys.custom_states)  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in sorted(h.items())}

    def batch_members(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        ids: list[bytes] = self.redis.lrange(self.keys.batch_jobs(batch_id), start, stop)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    def create(self, jobs: Sequence[NewJob], chunk: int = 500) -> dict[str, str]:
        """Creates jobs in chunks of one script call each, all in one round trip.
        Returns {id: id of the pending job holding its uniqueness key} for the jobs not
        created for that reason.

        Creating is idempotent per id, so the client's own retry after a dropped
        connection is safe here."""
        calls = self._create_calls(jobs, chunk)
        if len(calls) > 1 and not self.wait_replicas:
            replies = self._run(calls)  # the pipeline's own retry
        else:
            replies = self._run_idempotent(calls, [j.id for j in jobs])
        duplicates: dict[str, str] = {}
        for n, reply in enumerate(replies):
            for i in range(1, len(reply), 2):
                duplicates[jobs[n * chunk + int(reply[i]) - 1].id] = reply[i + 1].decode()
        return duplicates

    def _transition_args(self, t: Transition) -> list[Any]:
        args: list[Any] = [
            t.job_id, _state_set(t.expected), _state_set(t.unless), t.token, t.state,
            t.queue, "1" if t.front else "0", t.due, "1" if t.final else "0",
            self.retention_s, self.index_cap, len(t.fields)]
        for field, value in t.fields.items():
            args += (field, value)
        args.append(len(t.entries))
        for state, body in t.entries:
            args += (state, body)
        return args

    def _fetch_args(self, f: FetchRequest) -> list[Any]:
        return [f.worker_id, f.max_jobs, f.lease_ms, f.recoveries_allowed, "1" if f.pass_wake else "0",
                random.randint(1, 2**31 - 2), *f.queues]

    def transition(self, t: Transition) -> tuple[int, str]:
        """Applies a state change. Returns (code, previous state): code 1 applied, 0 no
        such job, -1 not in an expected state, -2 the caller's lease is gone."""
        code, old = self._run_one(SCRIPTS["transition"], self._transition_args(t))
        return int(code), old.decode()

    def finish(self, changes: Sequence[Transition], then_fetch: FetchRequest) -> tuple[list[tuple[int, str]], Fetch]:
        """Applies state changes in order, then fetches, in one script call: a worker
        stores its threads' outcomes and takes their next jobs in one round trip.
        Returns (code, previous state) per change, as `transition` does, and the fetch."""
        args: list[Any] = [len(changes)]
        for t in changes:
            args += self._transition_args(t)
        reply = self._run_one(SCRIPTS["finish"], args + self._fetch_args(then_fetch))
        n = len(changes) * 2
        outcomes = [(int(reply[i]), reply[i + 1].decode()) for i in range(0, n, 2)]
        return outcomes, _parse_fetch(reply[n:])

    def fetch(self, request: FetchRequest) -> Fetch:
        return _parse_fetch(self._run_one(SCRIPTS["fetch"], self._fetch_args(request)))

    def extend_leases(self, lease_ms: int, leases: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Renews leases: (ids no longer held, ids someone asked to cancel)."""
        args: list[Any] = [lease_ms]
        for job_id, token in leases:
            args += (job_id, token)
        lost, cancel = self._run_one(SCRIPTS["extend"], args)
        return [i.decode() for i in lost], [i.decode() for i in cancel]

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.redis.hset(self.keys.job(job_id), "progress", msgspec.json.encode(progress))

    def append_log(self, job_id: str, line: str, keep: int) -> None:
        entry = msgspec.json.encode({"at": int(time.time() * 1000), "line": line})
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.keys.log(job_id), entry)
        pipe.ltrim(self.keys.log(job_id), -keep, -1)
        pipe.execute()

    def request_cancel(self, job_id: str) -> bool:
        """Flags a running job for cancellation; False if it is not running."""
        key = self.keys.job(job_id)
        return self._write_if(key, lambda pipe: pipe.hget(key, "state") == b"Processing",
                              lambda pipe: pipe.hset(key, "cancel", "1"))

    def wait_for_work(self, keys: Sequence[str], timeout: float) -> bool:
        """Blocks until a wake-up token arrives on one of `keys` or `timeout` passes."""
        return self._line_call("BLPOP", *keys, _block_seconds(timeout)) is not None

    def wait_then_fetch(self, keys: Sequence[str], timeout: float, request: FetchRequest) -> Fetch:
        """Blocks until a wake-up token arrives on one of `keys` or `timeout` passes, then
        fetches, in one round trip: the fetch is sent behind the BLPOP, and Redis runs a
        blocked client's next command as soon as its block ends, with no trip back to
        the worker in between."""
        fetch = self._command(SCRIPTS["fetch"], self._fetch_args(request))
        _, reply = self._line_calls(("BLPOP", *keys, _block_seconds(timeout)), fetch)
        if _unknown_function(reply):
            self.load_scripts()
            reply = self._line_call(*fetch)
        elif isinstance(reply, Exception):
            raise reply
        return _parse_fetch(reply)

    def wake_worker(self, worker_id: str) -> None:
        self.redis.lpush(self.keys.worker_wake(worker_id), "1")

    def read_jobs(self, job_ids: Sequence[str]
                  ) -> list[tuple[dict[bytes, bytes], list[bytes], float | None, list[bytes], list[bytes]]]:
        """Per job: its hash, history entries, due time (if scheduled), the ids of the
        jobs awaiting it and its log; all the jobs in one trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
            pipe.lrange(self.keys.history(job_id), 0, -1)
            pipe.zscore(self.keys.schedule, job_id)
            pipe.lrange(self.keys.continuations("job", job_id), 0, -1)
            pipe.lrange(self.keys.log(job_id), 0, -1)
        r = pipe.execute()
        return [tuple(r[i:i + 5]) for i in range(0, len(r), 5)]  # type: ignore[misc]

    # -- recurring jobs --------------------------------------------------------------

    def server_time_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def claim_recurring(self, limit: int, claim_ms: int) -> Claim:
        reply = self._run_one(SCRIPTS["recurring_claim"], [limit, claim_ms])
        now, head, n = int(reply[0]), int(reply[1]), int(reply[2])
        due = []
        for i in range(n):
            rid, fn, cron, tz, misfire, nxt = (v.decode() for v in reply[3 + i * 6: 9 + i * 6])
            due.append(DueRun(rid, fn, cron, tz, misfire, int(nxt)))
        return Claim(now, None if head < 0 else head, due)

    def fire_recurring(self, recurring_id: str, expected_ms: int | None, next_ms: int | None,
                       error: str, reason: str, jobs: Sequence[tuple[str, int]]) -> int:
        """One run (see recurring_fire.lua); -1 if it was no longer due."""
        args: list[Any] = [recurring_id, "" if expected_ms is None else expected_ms,
                           "" if next_ms is None else next_ms, error, reason, len(jobs)]
        for job_id, tick in jobs:
            args += (job_id, tick)
        return int(self._run_one(SCRIPTS["recurring_fire"], args))

    def read_recurring_fields(self, recurring_id: str, *names: str) -> list[str | None]:
        values: list[bytes | None] = self.redis.hmget(self.keys.recurring_job(recurring_id), names)  # type: ignore[assignment]
        return [v.decode() if v is not None else None for v in values]

    def save_recurring(self, recurring_id: str, fields: dict[str, str | bytes],
                       next_ms: int | None, reschedule: bool) -> None:
        """Writes a recurring job's definition; with `reschedule`, also its next run."""
        key = self.keys.recurring_job(recurring_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        if "opts" not in fields:
            pipe.hdel(key, "opts")
        if reschedule:
            pipe.hdel(key, "error")
            self._set_next(pipe, recurring_id, next_ms)
        pipe.execute()

    def _set_next(self, pipe: Any, recurring_id: str, next_ms: int | None) -> None:
        key = self.keys.recurring_job(recurring_id)
        if next_ms is None:
            pipe.hdel(key, "next")
            pipe.zadd(self.keys.recurring, {recurring_id: "inf"})
        else:
            pipe.hset(key, "next", next_ms)
            pipe.zadd(self.keys.recurring, {recurring_id: next_ms})
            pipe.lpush(self.keys.recurring_wake, "1")  # a scheduler may be asleep past it
            pipe.ltrim(self.keys.recurring_wake, 0, 0)

    def set_recurring_enabled(self, recurring_id: str, enabled: bool, next_ms: int | None) -> bool:
        """Enables (with its next run) or disables a recurring job; False if absent."""
        key = self.keys.recurring_job(recurring_id)

        def write(pipe: Any) -> None:
            pipe.hset(key, "enabled", "1" if enabled else "0")
            self._set_next(pipe, recurring_id, next_ms if enabled else None)

        return self._write_if(key, lambda pipe: bool(pipe.exists(key)), write)

    def _write_if(self, key: str, check: Any, write: Any) -> bool:
        """Runs `write` in a MULTI if `check` (read under WATCH of `key`) holds; tries
        again if the key changed in between. Returns whether it wrote."""
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if not check(pipe):
                        return False
                    pipe.multi()
                    write(pipe)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def remove_recurring(self, recurring_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.recurring_job(recurring_id))
        pipe.zrem(self.keys.recurring, recurring_id)
        return bool(pipe.execute()[0])

    def recurring_ids(self) -> list[str]:
        """Every recurring job's id, soonest next run first."""
        ids: list[bytes] = self.redis.zrange(self.keys.recurring, 0, -1)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    def read_recurring(self, ids: Sequence[str]) -> list[tuple[dict[bytes, bytes], bytes | None]]:
        """Each recurring job's hash and its last job's state, in two round trips."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(self.keys.recurring_job(rid))
        hashes = pipe.execute()
        last_jobs = [h[b"last_job"].decode() for h in hashes if h.get(b"last_job")]
        for job_id in last_jobs:
            pipe.hget(self.keys.job(job_id), "state")
        states = iter(pipe.execute() if last_jobs else [])
        return [(h, (next(states) or None) if h.get(b"last_job") else None) for h in hashes]

    # -- operators ------------------------------------------------------------------

    def bulk(self, action: str, limit: int, offset: int, *args: Any) -> tuple[int, int, int]:
        """One slice of an operator's action (see bulk.lua): (changed, looked at, next offset)."""
        changed, looked, offset = self._run_one(SCRIPTS["bulk"], [action, limit, self.retention_s,
                                                                  self.index_cap, offset, *args])
        return int(changed), int(looked), int(offset)

    def queue_facts(self) -> list[tuple[str, int, bool, bytes | None, int, int]]:
        """Per known queue: (name, length, paused, oldest job id, jobs in, jobs out)."""
        names = sorted(n.decode() for n in self.redis.smembers(self.keys.queues))  # type: ignore[union-attr]
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.paused)
        pipe.hgetall(self.keys.queue_stats)
        for n in names:
            pipe.llen(self.keys.queue(n))
            pipe.lindex(self.keys.queue(n), -1)
        paused, stats, *rest = pipe.execute()
        paused = {p.decode() for p in paused}
        stats = {k.decode(): int(v) for k, v in stats.items()}
        return [(n, int(rest[i * 2]), n in paused, rest[i * 2 + 1], stats.get(f"{n}:in", 0), stats.get(f"{n}:out", 0))
                for i, n in enumerate(names)]

    def set_paused(self, queue: str, paused: bool) -> bool:
        """Pauses or resumes a queue; False if it was so already. Resuming wakes idle workers."""
        pipe = self.redis.pipeline(transaction=True)
        if paused:
            pipe.sadd(self.keys.paused, queue)
        else:
            pipe.srem(self.keys.paused, queue)
            pipe.lpush(self.keys.wake(queue), "1")
            pipe.ltrim(self.keys.wake(queue), 0, 0)
        return bool(pipe.execute()[0])

    def queue_known(self, queue: str) -> bool:
        return bool(self.redis.sismember(self.keys.queues, queue))

    # -- metrics -------------------------------------------------------------------

    def add_job_metrics(self, counts: dict[str, int]) -> None:
        """Adds a worker's counts to the job-metrics hash: one MULTI, one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        for field, n in counts.items():
            pipe.hincrby(self.keys.job_metrics, field, n)
        pipe.execute()

    def read_job_metrics(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.job_metrics)  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    # -- servers -------------------------------------------------------------------

    def heartbeat(self, server_id: str, timeout_ms: int, facts: dict[str, str]) -> tuple[int, list[str], bool]:
        """Records the server's facts: (now, servers found dead, quiet requested)."""
        args: list[Any] = [server_id, timeout_ms]
        for k, v in facts.items():
            args += (k, v)
        now, dead, quiet = self._run_one(SCRIPTS["heartbeat"], args)
        return int(now), [d.decode() for d in dead], bool(quiet)

    def servers(self) -> list[dict[str, str]]:
        """Every live server's facts, with its id."""
        ids = [i.decode() for i in self.redis.zrange(self.keys.servers, 0, -1)]  # type: ignore[union-attr]
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.server(i))
        out = []
        for i, h in zip(ids, pipe.execute(), strict=True):
            if h:
                out.append({"id": i, **{k.decode(): v.decode() for k, v in h.items()}})
        return out

    def request_quiet(self, server_id: str) -> bool:
        key = self.keys.server(server_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.exists(key)
        pipe.hsetnx(key, "quiet_request", "1")
        exists, _ = pipe.execute()
        if not exists:
            self.redis.delete(key)  # hsetnx made an empty server record: take it back
        return bool(exists)

    def remove_server(self, server_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.servers, server_id)
        pipe.delete(self.keys.server(server_id))
        pipe.execute()


def _state_set(states: Sequence[str]) -> str:
    return f",{','.join(states)}," if states else ""


def _block_seconds(timeout: float) -> str:
    """A blocking command's timeout: whole milliseconds, rounded up, so that a wait for a
    due time never ends before it."""
    return f"{max(math.ceil(timeout * 1000), 1) / 1000:.3f}"


def _parse_fetch(reply: list[Any]) -> Fetch:
    now, next_wake, n = int(reply[0]), int(reply[1]), int(reply[2])
    jobs = []
    for i in range(n):
        jid, token, fn, args, queue, opts, retries, created = reply[3 + i * 8: 11 + i * 8]
        jobs.append(FetchedJob(
            id=jid.decode(), token=token.decode(), fn=(fn or b"").decode(errors="replace"), args=args or b"",
            queue=queue.decode(), opts=opts or b"", retries=int(retries), created_ms=int(created or 0),
            fetched_ms=now))
    return Fetch(now, None if next_wake < 0 else next_wake, jobs)
