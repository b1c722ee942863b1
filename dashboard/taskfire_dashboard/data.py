"""What the dashboard shows, read from Redis in bounded ranges: no KEYS, no SCAN, and at
most one or two round trips per page, however many jobs are stored."""

from __future__ import annotations

import time
from typing import Any

from taskfire import Taskfire

#: States the dashboard lists, in menu order. Custom states are found in `custom_states`.
STATES = ("Enqueued", "Scheduled", "Processing", "Awaiting", "Succeeded", "Failed", "Deleted")
#: Jobs looked at, at most, when a list is filtered by function.
FILTER_WINDOW = 5000


def counts(tf: Taskfire) -> dict[str, Any]:
    """Jobs per state and per queue, totals and the last 24 hourly buckets, in one trip."""
    s, k = tf.storage, tf.storage.keys
    queues = sorted(q.decode() for q in s.redis.smembers(k.queues))  # type: ignore[union-attr]
    hour = int(time.time() // 3600)
    pipe = s.redis.pipeline(transaction=False)
    for q in queues:
        pipe.llen(k.queue(q))
    pipe.zcard(k.schedule)
    pipe.zcard(k.processing)
    pipe.zcard(k.state("Awaiting"))
    pipe.llen(k.state("Succeeded"))
    pipe.zcard(k.state("Failed"))
    pipe.llen(k.state("Deleted"))
    for name in ("Succeeded", "Failed", "Deleted"):
        pipe.get(k.stat(name))
    for name in ("Succeeded", "Failed"):
        for h in range(hour - 23, hour + 1):
            pipe.get(k.stat(name, h))
    pipe.zcard(k.servers)
    pipe.zcard(k.recurring)
    pipe.smembers(k.paused)
    r = pipe.execute()
    lengths = dict(zip(queues, r[:len(queues)], strict=True))
    r = r[len(queues):]
    scheduled, processing, awaiting, succeeded, failed, deleted = r[:6]
    totals = {n: int(v or 0) for n, v in zip(("succeeded", "failed", "deleted"), r[6:9], strict=True)}
    hourly_ok = [int(v or 0) for v in r[9:33]]
    hourly_failed = [int(v or 0) for v in r[33:57]]
    servers, recurring, paused = r[57:60]
    return {
        "states": {"Enqueued": sum(lengths.values()), "Scheduled": scheduled, "Processing": processing,
                   "Awaiting": awaiting, "Succeeded": succeeded, "Failed": failed, "Deleted": deleted},
        "queues": [{"name": q, "length": n, "paused": q.encode() in paused} for q, n in lengths.items()],
        "totals": totals, "servers": servers, "recurring": recurring,
        "hourly": {"first_hour": (hour - 23) * 3600, "succeeded": hourly_ok, "failed": hourly_failed},
        "time": time.time(),
    }


def job_ids(tf: Taskfire, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
    """A page of a state's jobs: newest first, but Scheduled soonest first and
    Enqueued next-to-run first."""
    s, k = tf.storage, tf.storage.keys
    if state == "Enqueued":
        if not queue:
            return []
        ids: list[bytes] = s.redis.lrange(k.queue(queue), -offset - limit, -offset - 1 if offset else -1)  # type: ignore[assignment]
        return [i.decode() for i in reversed(ids)]
    if state == "Scheduled":
        return [i.decode() for i in s.redis.zrange(k.schedule, offset, offset + limit - 1)]  # type: ignore[union-attr]
    if state == "Processing":
        return [i.decode() for i in s.redis.zrange(k.processing, offset, offset + limit - 1)]  # type: ignore[union-attr]
    return tf.job_ids_in_state(state, offset, limit)


def summaries(tf: Taskfire, ids: list[str]) -> list[dict[str, Any]]:
    """One row per job (function, state, queue, created, error, retries), in one trip; jobs
    that expired or moved on since the index was read are marked."""
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(tf.storage.keys.job(i), "fn", "state", "queue", "created", "error_type", "retries")
    rows = []
    for i, values in zip(ids, pipe.execute(), strict=True):
        fn, state, queue, created, error, retries = (v.decode(errors="replace") if v else None for v in values)
        rows.append({"id": i, "function": fn, "state": state, "queue": queue,
                     "created": int(created) / 1000 if created else None, "error": error,
                     "retries": int(retries or 0)})
    return rows


def filtered_page(tf: Taskfire, state: str, offset: int, limit: int, queue: str | None,
                  function: str | None) -> tuple[list[dict[str, Any]], bool]:
    """(rows, more): a page, optionally only the jobs of one function among the first
    FILTER_WINDOW of the state, so a filter never walks an unbounded index."""
    if not function:
        rows = summaries(tf, job_ids(tf, state, offset, limit + 1, queue))
        return rows[:limit], len(rows) > limit
    window = summaries(tf, job_ids(tf, state, 0, FILTER_WINDOW, queue))
    matching = [r for r in window if r["function"] and function in r["function"]]
    return matching[offset:offset + limit], len(matching) > offset + limit


def servers(tf: Taskfire) -> list[dict[str, Any]]:
    now = tf.storage.server_time_ms()
    out = []
    for facts in tf.servers():
        out.append({**facts, "heartbeat_age": (now - int(facts.get("heartbeat", now))) / 1000})
    return out
