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


#: Hourly buckets the history graphs show (a week; the buckets live 8 days).
HISTORY_HOURS = 7 * 24


def counts(tf: Taskfire) -> dict[str, Any]:
    """Jobs per state (custom states too) and per queue, totals, and the last week's
    hourly buckets, in two round trips (about 15 commands, whatever the store holds)."""
    s, k = tf.storage, tf.storage.keys
    pipe = s.redis.pipeline(transaction=False)
    pipe.smembers(k.queues)
    pipe.hgetall(k.custom_states)
    names, custom = pipe.execute()
    queues = sorted(q.decode() for q in names)
    custom = {n.decode(): kind for n, kind in sorted(custom.items()) if n.decode() not in STATES}
    hour = int(time.time() // 3600)
    hours = range(hour - HISTORY_HOURS + 1, hour + 1)
    pipe = s.redis.pipeline(transaction=False)
    for q in queues:
        pipe.llen(k.queue(q))
    pipe.zcard(k.schedule)
    pipe.zcard(k.processing)
    pipe.zcard(k.state("Awaiting"))
    pipe.llen(k.state("Succeeded"))
    pipe.zcard(k.state("Failed"))
    pipe.llen(k.state("Deleted"))
    for name, kind in custom.items():
        (pipe.llen if kind == b"list" else pipe.zcard)(k.state(name))
    # execute_command: a cluster pipeline refuses mget() by name, not MGET itself (every
    # key is in the prefix's slot)
    pipe.execute_command("MGET", *[k.stat(name) for name in ("Succeeded", "Failed", "Deleted")])
    pipe.execute_command("MGET", *[k.stat(name, h) for name in ("Succeeded", "Failed") for h in hours])
    pipe.zcard(k.servers)
    pipe.zcard(k.recurring)
    pipe.smembers(k.paused)
    r = pipe.execute()
    lengths = dict(zip(queues, r[:len(queues)], strict=True))
    r = r[len(queues):]
    states = dict(zip(STATES, [sum(lengths.values()), *r[:6]], strict=True))
    states.update(zip(custom, r[6:6 + len(custom)], strict=True))
    totals, hourly, servers, recurring, paused = r[6 + len(custom):]
    totals = {n: int(v or 0) for n, v in zip(("succeeded", "failed", "deleted"), totals, strict=True)}
    hourly_ok, hourly_failed = hourly[:len(hours)], hourly[len(hours):]
    kept = {"Succeeded": states["Succeeded"], "Deleted": states["Deleted"]}
    # Final states count every job that ever got there (as Hangfire does); their lists
    # keep the newest index_cap ids, each until its retention period ends.
    states["Succeeded"], states["Deleted"] = totals["succeeded"], totals["deleted"]
    return {
        "states": states, "kept": kept, "custom_states": list(custom),
        "queues": [{"name": q, "length": n, "paused": q.encode() in paused} for q, n in lengths.items()],
        "totals": totals,
        "servers": servers, "recurring": recurring,
        "hourly": {"first_hour": hours[0] * 3600, "succeeded": [int(v or 0) for v in hourly_ok],
                   "failed": [int(v or 0) for v in hourly_failed]},
        "time": time.time(),
    }


def job_ids(tf: Taskfire, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
    """A page of a state's jobs: newest first, but Scheduled soonest first and
    Enqueued next-to-run first."""
    if state == "Enqueued" and not queue:
        return []  # the page asks for a queue first
    return tf.job_ids_in_state(state, offset, limit, queue=queue)


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


def retries_page(tf: Taskfire, offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """(rows, more): Scheduled jobs that wait for another attempt (they have failed at
    least once), soonest first, among the first FILTER_WINDOW scheduled jobs."""
    window = summaries(tf, job_ids(tf, "Scheduled", 0, FILTER_WINDOW))
    waiting = [r for r in window if r["retries"] and r["state"] == "Scheduled"]
    due = tf.storage.redis.zmscore(tf.storage.keys.schedule, [r["id"] for r in waiting[offset:offset + limit]]) \
        if waiting[offset:offset + limit] else []
    rows = [{**r, "due": d / 1000 if d else None} for r, d in zip(waiting[offset:offset + limit], due, strict=True)]
    return rows, len(waiting) > offset + limit


#: Running jobs looked at, at most, to say what each server is doing.
RUNNING_WINDOW = 1000


def servers(tf: Taskfire) -> list[dict[str, Any]]:
    """Live servers with their heartbeat age and the jobs they are running (a lease
    token starts with its worker's id, "<server id>/<slot>")."""
    now = tf.storage.server_time_ms()
    running: dict[str, list[dict[str, Any]]] = {}
    ids = job_ids(tf, "Processing", 0, RUNNING_WINDOW)
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(tf.storage.keys.job(i), "lease", "fn", "started")
    for i, (lease, fn, started) in zip(ids, pipe.execute(), strict=True):
        if lease and fn:
            server_id = lease.decode().rpartition("/")[0]
            running.setdefault(server_id, []).append(
                {"id": i, "function": fn.decode(), "seconds": (now - int(started or now)) / 1000})
    out = []
    for facts in tf.servers():
        out.append({**facts, "heartbeat_age": (now - int(facts.get("heartbeat", now))) / 1000,
                    "running": running.get(facts["id"], [])})
    return out
