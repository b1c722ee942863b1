"""`Storage`: the one door to Redis. Everything above this package asks it by verb
(create these jobs, apply this change, fetch for this worker) and never sees a key, a
command or a script's argument layout.

    store.py      jobs: creation, changes of state, fetch and leases, a running job's
                  progress and log; queues; servers; job metrics (writes)
    recurring.py  recurring jobs' definitions, claims and runs
    monitor.py    the read model: lists and counts for the client's list verbs and the
                  dashboard
    shards.py     the shard layout: which prefix each shard has, which shard a job is in
    routing.py    which shard a call goes to; a worker's fetch and finish over shards
    fanout.py     an idle worker's wait on every shard; merged fetch replies
    aio.py        AsyncStorage, the asyncio twin of the client's verbs (aio_scripts.py
                  calls its scripts, aio_shards.py routes them by shard)
    monitor_shards.py  the read model summed and merged over shards
    scripts.py    how a script is called (library load, FCALL, MULTI, WAIT)
    wire.py       each script's argument and reply layout
    keys.py       every key's name, and each state's index kind

The client comes from `connection.connect`: one server, a Sentinel-watched primary, or a
Redis Cluster. One server has one shard (every key under the prefix); a cluster has a
shard per primary (shards.py), and each call goes to the shard of the job it is about.
With `wait_replicas`, every call that creates jobs is followed by WAIT on the same
connection (so on the shard's primary), in the same round trip.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, cast

import msgspec
import redis

from ..errors import ConfigError, EnqueueError, ReplicationTimeout
from . import connection, wire
from .fanout import ShardWaiter
from .faults import REDIS_ERRORS
from .keys import Keys
from .monitor import Monitor
from .monitor_shards import ShardedMonitor
from .recurring import RecurringStore
from .scripts import TRANSIENT_ERRORS, Call, Scripts, block_seconds
from .routing import REFRESH_S, ShardRouting
from .shards import Placer, Shard, register_shards
from .wire import Applied, Fetch, FetchRequest, NewBatch, NewJob, Transition
from .creating import ShardedCreate, created_replies, enqueue_error, retry_pause

__all__ = ["Storage", "TRANSIENT_ERRORS"]

#: Longest single block of a client waiting for an outcome (at most half its socket
#: timeout, so that a long wait is several blocks, never a read that times out).
WAIT_BLOCK_S = 5.0

#: A stored job as read: its hash, history entries, due time (if scheduled), the ids of
#: the jobs awaiting it, and its log.
RawJob = tuple[dict[bytes, bytes], list[bytes], float | None, list[bytes], list[bytes]]


def check_settings(url: str, prefix: str, wait_replicas: int, wait_timeout_ms: int) -> None:
    """A store's settings (sync or asyncio), or a ConfigError naming what is wrong."""
    if connection.is_cluster_url(url) and not connection.has_hash_tag(prefix):
        raise ConfigError(f"key prefix {prefix!r} has no hash tag: on Redis Cluster every taskfire key "
                          f"must be in one slot. Use a prefix such as '{{taskfire}}:' "
                          f"(--prefix / TASKFIRE_PREFIX / Taskfire(prefix=...))")
    if not isinstance(wait_replicas, int) or wait_replicas < 0:
        raise ConfigError(f"wait_replicas must be a whole number of replicas, 0 or more, not {wait_replicas!r}")
    if not isinstance(wait_timeout_ms, int) or wait_timeout_ms < 1:
        raise ConfigError(f"wait_timeout_ms must be at least 1 ms (WAIT 0 would block forever), "
                          f"not {wait_timeout_ms!r}")


def queue_job_reads(pipe: Any, keys: Keys | Callable[[str], Keys], job_ids: Sequence[str]) -> None:
    """What reading jobs asks of Redis (on a sync or an asyncio pipeline): per job, its
    hash, history, due time, awaiting jobs and log; `grouped_job_reads` reads the replies.
    `keys`: the store's keys, or which keys a job's are (its shard's)."""
    for job_id in job_ids:
        keys_of = keys(job_id) if callable(keys) else keys
        _job_reads(pipe, keys_of, job_id)


def _job_reads(pipe: Any, keys: Keys, job_id: str) -> None:
    pipe.hgetall(keys.job(job_id))
    pipe.lrange(keys.history(job_id), 0, -1)
    pipe.zscore(keys.schedule, job_id)
    pipe.lrange(keys.continuations("job", job_id), 0, -1)
    pipe.lrange(keys.log(job_id), 0, -1)


def grouped_job_reads(replies: list[Any]) -> list[RawJob]:
    return [tuple(replies[i:i + 5]) for i in range(0, len(replies), 5)]  # type: ignore[misc]


class Storage(ShardRouting):
    """All of taskfire's Redis I/O, for one key prefix (one shard, or one per primary of
    a cluster: see shards.py; which shard a call goes to: routing.py)."""

    def __init__(self, url: str, prefix: str = "taskfire:", *, retention_s: int = 86400,
                 index_cap: int = 10_000, socket_timeout: float = 10.0,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        """`socket_timeout`: the longest wait for any reply; a call that creates jobs gives
        up after it too, retries included (EnqueueError). `wait_replicas`: after creating
        jobs, wait until this many replicas have them (WAIT), at most `wait_timeout_ms`,
        else raise ReplicationTimeout."""
        check_settings(url, prefix, wait_replicas, wait_timeout_ms)
        self.url = url
        self.retention_s = retention_s
        self.index_cap = index_cap
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.timeout = socket_timeout
        # WAIT holds the reply back for up to its own timeout
        waited = wait_timeout_ms / 1000 if wait_replicas else 0.0
        client = connection.connect(url, socket_timeout=socket_timeout + waited)
        cluster = client if isinstance(client, redis.RedisCluster) else None
        # A RedisCluster answers the same commands (routed by key), so the rest of the
        # code needs to know only where the two differ.
        self.redis = cast(redis.Redis, client)
        self.cluster = cluster
        prefixes = register_shards(cluster, prefix) if cluster is not None else [prefix]
        self.shards = [Shard(i, self.redis, cluster, url, p) for i, p in enumerate(prefixes)]
        self.placer = Placer(len(self.shards))
        self.scripts = self.shards[0].scripts  # the home shard's (see shards.py)
        monitors = [Monitor(self.redis, s.keys, self.keys_of) for s in self.shards]
        self.monitor = monitors[0] if len(monitors) == 1 else ShardedMonitor(monitors)
        self.recurring = RecurringStore(self.redis, self.keys, self.scripts, self.write_if)
        self._current = 0  # the shard this process works in (routing.py)
        self._visit_due = 0.0  # when it moves on to the next
        self._away: dict[int, tuple[float, float]] = {}  # shards whose calls failed lately (routing.py)
        self._refresh_due = time.monotonic() + REFRESH_S  # when fetch next looks for new shards
        self.waiter = ShardWaiter(self.shards, self.redis)

    def close(self) -> None:
        self.waiter.close()
        connection.close(self.redis)

    def load_scripts(self) -> None:
        self.scripts.load()  # on a cluster, FUNCTION LOAD reaches every primary

    def server_time_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- creating jobs -------------------------------------------------------------

    def create(self, jobs: Sequence[NewJob], chunk: int = 500, repeated: bool = False) -> dict[str, str]:
        """Creates jobs, a script call per chunk, all in one round trip. Returns {id: id
        of the pending job holding its uniqueness key} for the jobs not created for that
        reason. Ids are the caller's, so a dropped connection is retried here: the retry
        (or a caller's own, with `repeated`) skips the ids that exist. Raises EnqueueError
        if not every chunk was stored."""
        plan = ShardedCreate(jobs, self._by_shard(jobs, lambda j: j.id), chunk, repeated, self.wait_timeout_ms,
                             lambda rest: self.create(rest, chunk, repeated=True))
        for g, shard, parts in plan.steps():
            try:
                replies = self._create_idempotent(plan.calls(parts), parts, plan.retry, shard.scripts)
            except ReplicationTimeout as exc:  # stored: the other shards' jobs are still sent
                plan.unconfirmed_by(parts, exc)
                continue
            except EnqueueError as exc:
                raise plan.failed(g, exc)  # noqa: B904 - (it carries its cause)
            plan.stored(parts, replies)
        return plan.result()

    def create_batches(self, batches: Sequence[NewBatch], jobs: Sequence[NewJob], chunk: int = 1000,
                       repeated: bool = False) -> None:
        """Creates batches and their jobs in one MULTI: no job can run, and no other
        client's call can come in between, before all of them exist. Idempotent per id
        (`repeated`: skip the ids that exist)."""
        parts = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]

        def calls(again: bool) -> list[Call]:
            return [Call("batch_open", wire.encode_batch_open(batches, self.retention_s, self.index_cap)),
                    *(Call("create", wire.encode_create(p, repeated or again)) for p in parts)]

        # Every batch and member is in the outermost batch's shard (the client marks them so)
        self._create_idempotent(calls, [[], *parts], lambda rest: self.create_batches(batches, jobs, chunk, True),
                                self.shard_of(batches[0].id).scripts if batches else self.scripts, transaction=True)

    def continue_job(self, kind: str, parent: str, on: str, job: NewJob) -> int:
        """Creates a continuation of a job or batch (see continue.lua): 1 created,
        0 created by an earlier try, -1 no such parent."""
        args = wire.encode_continue(kind, parent, on, job, self.retention_s, self.index_cap)
        return int(self._create_idempotent(lambda repeated: [Call("continue", args)], [[job]],
                                           lambda rest: self.continue_job(kind, parent, on, job),
                                           self.shard_of(parent).scripts)[0])

    def _create_idempotent(self, calls: Callable[[bool], list[Call]], groups: Sequence[Sequence[NewJob]],
                           retry: Callable[[list[NewJob]], object], scripts: Scripts,
                           transaction: bool = False) -> list[Any]:
        """Runs calls that create the jobs of `groups` (one group per call) and nothing
        twice when repeated (`calls(repeated)` says so to the scripts): after a dropped
        connection they are sent again, twice at most, within the timeout (after a
        cluster slot on the move, until the timeout: retry_pause). With
        wait_replicas, until the replicas have the jobs. If not every call was stored,
        raises EnqueueError saying which jobs were, were not, or may have been, with
        `retry` (given the jobs not known to be stored) to send them again."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:  # (retry_pause ends it)
            try:
                # A cluster client repeats a command whose connection failed on its own,
                # so there every call may be a repeat.
                repeated = attempt > 0 or scripts.cluster is not None
                replies = scripts.run(calls(repeated), transaction=transaction, replicas=self.wait_replicas,
                                      wait_timeout_ms=self.wait_timeout_ms, errors_in_place=True)
            except REDIS_ERRORS as exc:
                pause = retry_pause(exc, attempt, deadline)
                if pause is None:
                    raise enqueue_error(groups, [exc] * len(groups), retry, self.timeout) from exc
                time.sleep(pause)
                attempt += 1
                continue
            return created_replies(replies, groups, retry, self.wait_replicas, self.wait_timeout_ms, self.timeout)

    # -- changing state ------------------------------------------------------------

    def transition(self, t: Transition) -> Applied:
        """Applies a state change (see wire.Applied for what the code says)."""
        return wire.decode_transition(self.shard_of(t.job_id).scripts.call(
            "transition", wire.encode_transition(t, self.retention_s, self.index_cap)))

    def transitions(self, changes: Sequence[Transition]) -> list[Applied]:
        """Applies many state changes, a script call each, in one round trip per shard."""
        results: list[Applied] = [Applied(0, "")] * len(changes)
        for shard, positions in self._by_shard(changes, lambda t: t.job_id) if changes else []:
            calls = [Call("transition", wire.encode_transition(changes[i], self.retention_s, self.index_cap))
                     for i in positions]
            for i, reply in zip(positions, shard.scripts.run(calls), strict=True):
                results[i] = wire.decode_transition(reply)
        return results

    def request_cancel(self, job_id: str) -> bool:
        """Flags a running job for cancellation; False if it is not running."""
        key = self.keys_of(job_id).job(job_id)
        return self.write_if(key, lambda pipe: pipe.hget(key, "state") == b"Processing",
                              lambda pipe: pipe.hset(key, "cancel", "1"))

    def bulk(self, action: str, limit: int, offset: int, *args: str, shard: int = 0) -> wire.Slice:
        """One slice of an operator's action over many jobs in one shard (see bulk.lua);
        the caller walks the shards in turn (queues.py)."""
        return wire.decode_bulk(self.shards[shard].scripts.call(
            "bulk", wire.encode_bulk(action, limit, self.retention_s, self.index_cap, offset, *args)))

    def backfill(self, index: str, limit: int = 2000) -> wire.Backfill:
        """One slice of building an index that a store written by an older version lacks
        (keys.DERIVED_INDEXES; see backfill.lua): call until it says `built`. Stores from
        before the indexes had one shard: only the home shard can lack them."""
        return wire.decode_backfill(self.scripts.call("backfill", wire.encode_backfill(index, limit)))

    # -- workers -------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Fetch:
        """Takes jobs for a worker, each moved to Processing under a lease. With shards,
        from the shard this process works in, then the others in turn (routing.py)."""
        if len(self.shards) == 1 and not (self.cluster is not None and time.monotonic() >= self._refresh_due):
            return wire.decode_fetch(self.scripts.call("fetch", wire.encode_fetch(request)))
        return self.fetch_round(request)

    def finish(self, changes: Sequence[Transition], then_fetch: FetchRequest) -> tuple[list[Applied], Fetch]:
        """Applies state changes in order, then fetches, in one script call: a worker
        stores its threads' outcomes and takes their next jobs in one round trip. With
        shards, a call per shard the changes are in (routing.py)."""
        if len(self.shards) == 1 or not changes:
            reply = self.scripts.call("finish", wire.encode_finish(changes, then_fetch, self.retention_s,
                                                                   self.index_cap))
            return wire.decode_finish(reply, len(changes))
        return self.finish_round(changes, then_fetch)

    def wake_keys(self, worker_id: str, queues: Sequence[str]) -> list[str]:
        """What an idle worker blocks on: its own wake-up list, then its queues'."""
        return [self.keys.worker_wake(worker_id), *(self.keys.wake(q) for q in queues)]

    def wait_then_fetch(self, keys: Sequence[str], timeout: float, request: FetchRequest) -> Fetch:
        """Blocks until a wake-up token arrives on one of `keys` or `timeout` passes, then
        fetches, in one round trip: the fetch is sent behind the BLPOP, and Redis runs a
        blocked client's next command as soon as its block ends. With shards (no BLPOP
        spans slots) a thread per shard blocks on that shard's twin of each key, and the
        first to wake ends the others' wait with the worker's own wake-up (waiting.py)."""
        if len(self.shards) == 1:
            reply = self.scripts.run([Call("fetch", wire.encode_fetch(request))],
                                     before=("BLPOP", *keys, block_seconds(timeout)))[0]
            return wire.decode_fetch(reply)
        try:
            woken = self.waiter.wait(keys, timeout, skip=set(self._away))
        except TRANSIENT_ERRORS as exc:
            if isinstance(getattr(exc, "shard_index", None), int):
                self._failed(exc.shard_index)  # type: ignore[attr-defined]  # passed over next time
            raise
        try:
            if woken is not None:  # its jobs go to the threads at once: the other shards wait for the next fetch
                fetch = self.fetch_round(request, woken, probe=False, first_with_jobs=True)
                if fetch.jobs:
                    return fetch
            return self.fetch_round(request)
        finally:
            self.waiter.end_others()

    def wait_for_outcome(self, kind: str, id_: str, timeout: float | None) -> int:
        """Blocks until a job (`kind` "job") or batch has an outcome, or `timeout` seconds
        (None: no limit) pass: wire.HAS_OUTCOME, wire.MISSING (no such job or batch), or
        wire.WAITING (timed out). No polling: wait.lua counts this caller among the
        waiters (or finds the outcome already there), then a BLPOP waits for the token
        the outcome leaves; a token left by an earlier outcome (the job was requeued
        since) only makes it check again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shard = self.shard_of(id_)
        key = shard.keys.outcome(kind, id_)
        block = min(WAIT_BLOCK_S, self.timeout / 2)
        while True:
            status = wire.decode_wait(shard.scripts.call("wait", wire.encode_wait(kind, id_)))
            if status != wire.WAITING:
                return status
            while True:
                left = block if deadline is None else min(deadline - time.monotonic(), block)
                if left <= 0:
                    return wire.WAITING
                if shard.scripts.send("BLPOP", key, block_seconds(left)) is not None:
                    break

    def wait_for_recurring(self, timeout: float) -> bool:
        """Blocks until a recurring job is added or enabled, or `timeout` passes."""
        return self.scripts.send("BLPOP", self.keys.recurring_wake, block_seconds(timeout)) is not None

    def wake_worker(self, worker_id: str) -> None:
        """Ends a worker process's idle wait (in every shard: it may block on any)."""
        if len(self.shards) == 1:
            self.redis.lpush(self.keys.worker_wake(worker_id), "1")
            return
        pipe = self.redis.pipeline(transaction=False)
        for shard in self.shards:
            pipe.lpush(shard.keys.worker_wake(worker_id), "1")
            pipe.ltrim(shard.keys.worker_wake(worker_id), 0, 0)
        pipe.execute()

    def forget_worker(self, worker_id: str) -> None:
        """Removes a stopped worker process's own wake-up lists."""
        for shard in self.shards:
            self.redis.delete(shard.keys.worker_wake(worker_id))

    def extend_leases(self, lease_ms: int, leases: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Renews leases: (ids no longer held, ids someone asked to cancel)."""
        lost: list[str] = []
        cancel: list[str] = []
        for shard, positions in self._by_shard(leases, lambda lease: lease[0]):
            gone, asked = wire.decode_extend(shard.scripts.call(
                "extend", wire.encode_extend(lease_ms, [leases[i] for i in positions])))
            lost += gone
            cancel += asked
        return lost, cancel

    # -- a job's own data ----------------------------------------------------------

    def read_jobs(self, job_ids: Sequence[str]) -> list[RawJob]:
        """Each job as stored, all in one round trip (on a cluster, one per node)."""
        pipe = self.redis.pipeline(transaction=False)
        queue_job_reads(pipe, self.keys_of, job_ids)
        return grouped_job_reads(pipe.execute())

    def set_job_field(self, job_id: str, field: str, value: bytes | str) -> None:
        self.redis.hset(self.keys_of(job_id).job(job_id), field, value)

    def get_job_field(self, job_id: str, field: str) -> bytes | None:
        return self.redis.hget(self.keys_of(job_id).job(job_id), field)  # type: ignore[return-value]

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.set_job_field(job_id, "progress", msgspec.json.encode(progress))

    def append_log(self, job_id: str, line: str, keep: int) -> None:
        """Appends a line to a running job's log; the record notes that it has one, so
        that the log expires with the job (jobs that log nothing pay nothing for it)."""
        entry = msgspec.json.encode({"at": int(time.time() * 1000), "line": line})
        keys = self.keys_of(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(keys.log(job_id), entry)
        pipe.ltrim(keys.log(job_id), -keep, -1)
        pipe.hset(keys.job(job_id), "logged", "1")
        pipe.execute()

    # -- queues --------------------------------------------------------------------

    def set_paused(self, queue: str, paused: bool) -> bool:
        """Pauses or resumes a queue; False if it was so already. Resuming wakes idle workers.
        Pausing makes the queue known, jobs or not (a maintenance window is prepared ahead).
        Every shard has its own paused set (its fetch reads it): one MULTI per shard, so a
        worker may still take a job from a shard not yet paused while this runs."""
        changed = False
        for shard in self.shards:
            keys = shard.keys
            pipe = self.redis.pipeline(transaction=True)
            if paused:
                pipe.sadd(keys.paused, queue)
                pipe.sadd(keys.queues, queue)
            else:
                pipe.srem(keys.paused, queue)
                pipe.lpush(keys.wake(queue), "1")
                pipe.ltrim(keys.wake(queue), 0, 0)
            changed = bool(pipe.execute()[0]) or changed
        return changed

    def queue_known(self, queue: str) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        for shard in self.shards:
            pipe.sismember(shard.keys.queues, queue)
        return any(pipe.execute())

    # -- servers and metrics -------------------------------------------------------

    def heartbeat(self, server_id: str, timeout_ms: int, facts: dict[str, str]) -> wire.Beat:
        """Records the server's facts, and forgets servers that stopped beating."""
        return wire.decode_heartbeat(self.scripts.call("heartbeat", wire.encode_heartbeat(server_id, timeout_ms,
                                                                                          facts)))

    def request_quiet(self, server_id: str) -> bool:
        key = self.keys.server(server_id)
        return self.write_if(key, lambda pipe: bool(pipe.exists(key)),
                              lambda pipe: pipe.hsetnx(key, "quiet_request", "1"))

    def remove_server(self, server_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.servers, server_id)
        pipe.delete(self.keys.server(server_id))
        pipe.execute()

    def add_job_metrics(self, counts: dict[str, int]) -> None:
        """Adds a worker's counts to the job-metrics hash: one MULTI, one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        for field, n in counts.items():
            pipe.hincrby(self.keys.job_metrics, field, n)
        pipe.execute()

    def clear(self) -> int:
        """Deletes every key under this prefix (a test's store, thrown away); how many.
        Never meant for a store in use: jobs, queues and history all go."""
        keys: list[Any] = []
        for shard in self.shards:
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in shard.keys.prefix) + "*"
            keys += self.redis.scan_iter(match=pattern, count=1000)
        for i in range(0, len(keys), 1000):
            self.redis.delete(*keys[i:i + 1000])  # (a cluster client splits it by slot)
        return len(keys)

    # -- helpers -------------------------------------------------------------------

    def write_if(self, key: str, check: Callable[[Any], bool], write: Callable[[Any], Any]) -> bool:
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
