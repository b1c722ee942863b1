"""The read model: what the client's list verbs and the dashboard show, read in bounded
ranges of the indexes (no KEYS, no SCAN) and in a fixed number of round trips however
many jobs are stored. Nothing here writes.

Which index a state's jobs are in comes from keys.STATE_INDEX (and, for a custom state,
the kind recorded in the custom-states registry when a job first entered it).
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import msgspec
import redis

from ..errors import ConfigError
from ..records import done_entry
from .keys import DERIVED_INDEXES, INDEX_KINDS, STATE_INDEX, Keys

#: States the dashboard lists, in menu order. Custom states are found in the registry.
STATES = ("Enqueued", "Scheduled", "Processing", "Awaiting", "Succeeded", "Failed", "Deleted")
#: Hourly buckets the history graphs show (a week; the buckets live 8 days).
HISTORY_HOURS = 7 * 24


#: The job fields a row of a list shows (Monitor.summaries).
_ROW_FIELDS = ("fn", "state", "queue", "created", "error_type", "retries", "started", "lease", "progress", "parent",
               "parent_kind", "batch", "done")


def _number(raw: bytes | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def _row(job_id: str, values: list[bytes | None], last: bytes | None, sizes: dict[str, int]) -> dict[str, Any]:
    fn, state, queue, created, error, retries, started, lease, progress, parent, parent_kind, batch, _ = (
        v.decode(errors="replace") if v is not None else None for v in values)
    entry: dict[str, Any] | None = None
    done = values[-1]
    try:
        if last:
            decoded = msgspec.json.decode(last)
            entry = decoded if isinstance(decoded, dict) else None
        elif done and state:  # a job on the happy path: its record keeps its final entry
            e = done_entry(done, state)
            entry = {"at": int(e.at.timestamp() * 1000), "state": e.state, "reason": e.reason, "data": e.data}
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        entry = None  # written by hand: the row shows what it can without it
    created_ms, started_ms = _number(values[3]), _number(values[6])
    try:
        progress_value = msgspec.json.decode(progress) if progress else None
    except msgspec.DecodeError:
        progress_value = None
    return {"id": job_id, "function": fn, "state": state, "queue": queue,
            "created": created_ms / 1000 if created_ms is not None else None, "error": error or None,
            "retries": int(retries) if retries and retries.isdigit() else 0,
            "started": started_ms / 1000 if started_ms is not None else None, "lease": lease,
            "progress": progress_value, "parent": parent, "parent_kind": parent_kind, "batch": batch,
            "last": entry, **{f"size_{field}": int(n) for field, n in sizes.items()}}


def waiting(list_length: int, stats: dict[str, int], queue: str) -> int:
    """Jobs waiting in a queue: its list's length less the ids left behind in it by jobs
    that moved on (deleted, requeued elsewhere) and that no fetch has popped yet."""
    return max(0, list_length - stats.get(f"{queue}:stale", 0))


def _stats(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


class QueueFacts(NamedTuple):
    name: str
    length: int                 # jobs waiting
    paused: bool
    oldest_created_ms: int | None  # when the next job to run was created
    jobs_in: int
    jobs_out: int


class Monitor:
    """The read model of one shard (monitor_shards.py sums and merges the shards'). A
    job's own keys are found by `keys_of` (its shard's, by its id), so the per-job reads
    work for any job."""

    def __init__(self, client: redis.Redis, keys: Keys, keys_of: Callable[[str], Keys] | None = None) -> None:
        self.redis = client
        self.keys = keys
        self.keys_of = keys_of or (lambda any_id: keys)

    # -- jobs by state -------------------------------------------------------------

    def index_kind(self, state: str) -> str | None:
        """The kind of a state's index (keys.STATE_INDEX), or None for a custom state
        no job has entered."""
        kind = STATE_INDEX.get(state)
        if kind is None:
            raw = self.redis.hget(self.keys.custom_states, state) or self.redis.type(self.keys.state(state))
            kind = raw.decode() if isinstance(raw, bytes) else str(raw)  # TYPE: a store from before the registry
        return kind if kind in INDEX_KINDS else None

    def job_ids_in_state(self, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
        """A page of a state's index. Enqueued (one queue's list) next to run first;
        Scheduled soonest due first; Processing nearest lease deadline first; the others
        newest first."""
        stop = offset + limit - 1
        kind = self.index_kind(state)
        ids: list[bytes]
        if kind == "queue":
            if queue is None:
                raise ConfigError("Enqueued jobs are listed per queue: pass queue=")
            ids = self.redis.lrange(self.keys.queue(queue), -offset - limit, -offset - 1)  # type: ignore[assignment]
            ids.reverse()
        elif kind in ("schedule", "processing"):
            key = self.keys.schedule if kind == "schedule" else self.keys.processing
            ids = self.redis.zrange(key, offset, stop)  # type: ignore[assignment]
        elif kind == "list":
            ids = self.redis.lrange(self.keys.state(state), offset, stop)  # type: ignore[assignment]
        elif kind in ("zset", "failed"):
            ids = self.redis.zrevrange(self.keys.state(state), offset, stop)  # type: ignore[assignment]
        else:
            ids = []  # a state no job has entered
        return [i.decode() for i in ids]

    def custom_states(self) -> dict[str, str]:
        """Every custom state a job has entered, and the kind of its index ("list" or "zset")."""
        h: dict[bytes, bytes] = self.redis.hgetall(self.keys.custom_states)  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in sorted(h.items())}

    def failed_ids(self, offset: int, limit: int, *, function: str | None = None,
                   exception: str | None = None) -> list[tuple[str, int]]:
        """A page of Failed jobs, newest failure first, as (id, failed at ms): all of them,
        or those of one function, or of one exception type (the failure indexes: any
        depth, one command). Pass at most one of `function` and `exception`."""
        if function and exception:
            raise ConfigError("failed jobs are listed by function or by exception type, not both at once")
        if function:
            key = self.keys.failed_by_function(function)
        elif exception:
            key = self.keys.failed_by_exception(exception)
        else:
            key = self.keys.state("Failed")
        found: list[tuple[bytes, float]] = self.redis.zrevrange(  # type: ignore[assignment]
            key, offset, offset + limit - 1, withscores=True)
        return [(i.decode(), int(score)) for i, score in found]

    def failure_groups(self) -> tuple[dict[str, int], dict[str, int]]:
        """Failed jobs per function and per exception type, largest first, in one trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.failed_functions)
        pipe.hgetall(self.keys.failed_exceptions)
        functions, exceptions = pipe.execute()

        def ranked(h: dict[bytes, bytes]) -> dict[str, int]:
            counted = ((k.decode(errors="replace"), int(v)) for k, v in h.items())
            return dict(sorted(((k, n) for k, n in counted if n > 0), key=lambda kv: (-kv[1], kv[0])))

        return ranked(functions), ranked(exceptions)

    def retry_ids(self, offset: int, limit: int) -> list[tuple[str, int]]:
        """A page of the jobs waiting for a retry, soonest first, as (id, due ms)."""
        found: list[tuple[bytes, float]] = self.redis.zrange(  # type: ignore[assignment]
            self.keys.retries, offset, offset + limit - 1, withscores=True)
        return [(i.decode(), int(score)) for i, score in found]

    def indexes_built(self) -> dict[str, bool]:
        """Whether each index a store written by an older version may lack is complete
        (keys.DERIVED_INDEXES; Storage.backfill builds them)."""
        raw = self.redis.hmget(self.keys.index_builds, list(DERIVED_INDEXES))
        return {name: v == b"done" for name, v in zip(DERIVED_INDEXES, raw, strict=True)}  # type: ignore[arg-type]

    def summaries(self, ids: Sequence[str], *, sizes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """One row per job, in one trip: function, state, queue, created (s), error (the
        exception type), retries, started (s), lease, progress, parent and parent_kind,
        batch; `last`, its last history entry (None while it is in its first state); and
        the size in bytes of each field named in `sizes` (`size_<field>`), so a caller
        reads only values small enough to show. A job that expired since its index was
        read has no function and no state."""
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            keys = self.keys_of(i)
            pipe.hmget(keys.job(i), *_ROW_FIELDS)
            pipe.lindex(keys.history(i), -1)
            for field in sizes:
                pipe.hstrlen(keys.job(i), field)
        replies = pipe.execute()
        width = 2 + len(sizes)
        return [_row(i, replies[n * width], replies[n * width + 1], dict(zip(sizes, replies[n * width + 2:(n + 1) * width],
                                                                           strict=True)))
                for n, i in enumerate(ids)]

    def functions_and_states(self, ids: Sequence[str]) -> list[tuple[str | None, str | None]]:
        """Each job's function and state (None for a job that expired), in one trip: the
        two fields a filter by function reads, for many jobs at once."""
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.keys_of(i).job(i), "fn", "state")
        return [(fn.decode(errors="replace") if fn else None, state.decode() if state else None)
                for fn, state in pipe.execute()]

    def field_values(self, wanted: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The value of each (job id, field) pair, in one trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id, field in wanted:
            pipe.hget(self.keys_of(job_id).job(job_id), field)
        return pipe.execute() if wanted else []  # type: ignore[no-any-return]

    def due_times(self, ids: Sequence[str]) -> list[float | None]:
        """When each scheduled job is due (ms), None for those not scheduled."""
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.zscore(self.keys_of(i).schedule, i)
        return pipe.execute() if ids else []  # type: ignore[no-any-return]

    def running(self, limit: int) -> list[tuple[str, str, str, int | None]]:
        """Up to `limit` running jobs, nearest lease deadline first: (id, lease token, fn,
        started ms). A lease token starts with its worker's id."""
        ids = self.job_ids_in_state("Processing", 0, limit)
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.keys_of(i).job(i), "lease", "fn", "started")
        out = []
        for i, (lease, fn, started) in zip(ids, pipe.execute(), strict=True):
            if lease and fn:
                out.append((i, lease.decode(), fn.decode(errors="replace"),
                            int(started) if started and started.isdigit() else None))
        return out

    # -- counts --------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Jobs per state (custom states too) and per queue, jobs waiting for a retry,
        totals, the last week's hourly buckets, and whether the indexes an older store
        lacks are built yet, in two round trips (about 17 commands, whatever the store
        holds)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(k.queues)
        pipe.hgetall(k.custom_states)
        pipe.hgetall(k.queue_stats)
        names, custom, stats = pipe.execute()
        stats = _stats(stats)
        queues = sorted(q.decode() for q in names)
        custom = {n.decode(): kind.decode() for n, kind in sorted(custom.items()) if n.decode() not in STATES}
        hour = int(time.time() // 3600)
        hours = range(hour - HISTORY_HOURS + 1, hour + 1)
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.llen(k.queue(q))
        for state in STATES[1:]:
            self._count(pipe, state, STATE_INDEX[state])
        for name, kind in custom.items():
            self._count(pipe, name, kind)
        # execute_command: a cluster pipeline refuses mget() by name, not MGET itself (every
        # key is in the prefix's slot)
        pipe.execute_command("MGET", *[k.stat(name) for name in ("Succeeded", "Failed", "Deleted")])
        pipe.execute_command("MGET", *[k.stat(name, h) for name in ("Succeeded", "Failed") for h in hours])
        pipe.zcard(k.servers)
        pipe.zcard(k.recurring)
        pipe.smembers(k.paused)
        pipe.zcard(k.retries)
        pipe.hmget(k.index_builds, list(DERIVED_INDEXES))
        r = pipe.execute()
        lengths = {q: waiting(n, stats, q) for q, n in zip(queues, r[:len(queues)], strict=True)}
        r = r[len(queues):]
        n = len(STATES) - 1
        states = dict(zip(STATES, [sum(lengths.values()), *r[:n]], strict=True))
        states.update(zip(custom, r[n:n + len(custom)], strict=True))
        totals, hourly, servers, recurring, paused, retries, builds = r[n + len(custom):]
        totals = {name: int(v or 0) for name, v in zip(("succeeded", "failed", "deleted"), totals, strict=True)}
        hourly_ok, hourly_failed = hourly[:len(hours)], hourly[len(hours):]
        kept = {"Succeeded": states["Succeeded"], "Deleted": states["Deleted"]}
        # Final states count every job that ever got there (as Hangfire does); their lists
        # keep the newest index_cap ids, each until its retention period ends.
        states["Succeeded"], states["Deleted"] = totals["succeeded"], totals["deleted"]
        return {
            "states": states, "kept": kept, "custom_states": list(custom),
            "queues": [{"name": q, "length": n, "paused": q.encode() in paused} for q, n in lengths.items()],
            "totals": totals,
            "servers": servers, "recurring": recurring, "retries": retries,
            "indexes_built": {name: v == b"done" for name, v in zip(DERIVED_INDEXES, builds, strict=True)},
            "hourly": {"first_hour": hours[0] * 3600, "succeeded": [int(v or 0) for v in hourly_ok],
                       "failed": [int(v or 0) for v in hourly_failed]},
            "time": time.time(),
        }

    def _count(self, pipe: Any, state: str, kind: str) -> None:
        key = {"schedule": self.keys.schedule, "processing": self.keys.processing}.get(kind) or self.keys.state(state)
        (pipe.llen if kind == "list" else pipe.zcard)(key)

    # -- queues --------------------------------------------------------------------

    def queue_facts(self) -> list[QueueFacts]:
        """Per known queue: its length, whether paused, when its next job was created, and
        the jobs that went in and out of it, in two round trips."""
        names = sorted(n.decode() for n in self.redis.smembers(self.keys.queues))  # type: ignore[union-attr]
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.paused)
        pipe.hgetall(self.keys.queue_stats)
        for n in names:
            pipe.llen(self.keys.queue(n))
            pipe.lindex(self.keys.queue(n), -1)
        paused, stats, *rest = pipe.execute()
        paused = {p.decode() for p in paused}
        stats = _stats(stats)
        heads = [rest[i * 2 + 1] for i in range(len(names))]
        for head in heads:
            if head:
                pipe.hget(self.keys_of(head.decode()).job(head.decode()), "created")
        created = iter(pipe.execute() if any(heads) else [])
        out = []
        for i, n in enumerate(names):
            when = next(created) if heads[i] else None
            out.append(QueueFacts(n, waiting(int(rest[i * 2]), stats, n), n in paused,
                                  int(when) if when and when.isdigit() else None,
                                  stats.get(f"{n}:in", 0), stats.get(f"{n}:out", 0)))
        return out

    def queue_names(self) -> list[str]:
        """Every queue a job was ever put in, sorted."""
        return sorted(n.decode() for n in self.redis.smembers(self.keys.queues))  # type: ignore[union-attr]

    def queue_lengths(self) -> dict[str, int]:
        """Jobs waiting in each known queue."""
        names = sorted(n.decode() for n in self.redis.smembers(self.keys.queues))  # type: ignore[union-attr]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.queue_stats)
        for name in names:
            pipe.llen(self.keys.queue(name))
        stats, *lengths = pipe.execute()
        stats = _stats(stats)
        return {name: waiting(n, stats, name) for name, n in zip(names, lengths, strict=True)}

    # -- batches -------------------------------------------------------------------

    def read_batch(self, batch_id: str) -> dict[bytes, bytes]:
        return self.redis.hgetall(self.keys_of(batch_id).batch(batch_id))  # type: ignore[return-value]

    def read_batches(self, offset: int, limit: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """A page of the batches index, newest first, with each batch's hash (empty for a
        batch that expired since), in one round trip."""
        ids: list[bytes] = self.redis.lrange(self.keys.batches, offset, offset + limit - 1)  # type: ignore[assignment]
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.batch(i.decode()))
        return list(zip((i.decode() for i in ids), pipe.execute(), strict=True))

    def batch_members(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        ids: list[bytes] = self.redis.lrange(self.keys_of(batch_id).batch_jobs(batch_id), start, stop)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    def continuations(self, kind: str, parent_id: str, limit: int = 1000) -> list[str]:
        """Ids of the jobs awaiting a job or batch ("job" or "batch"), the first `limit`."""
        ids: list[bytes] = self.redis.lrange(self.keys_of(parent_id).continuations(kind, parent_id), 0,  # type: ignore[assignment]
                                             limit - 1)
        return [i.decode() for i in ids]

    # -- servers and metrics -------------------------------------------------------

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

    def job_metrics(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.job_metrics)  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}
