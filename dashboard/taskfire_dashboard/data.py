"""What the dashboard shows, read through the storage layer's read model
(taskfire.storage.monitor) in bounded ranges: no KEYS, no SCAN, and at most one or two
round trips per page, however many jobs are stored."""

from __future__ import annotations

from typing import Any

from taskfire import Taskfire
from taskfire.storage.monitor import STATES as STATES  # the states the menu lists

#: Jobs looked at, at most, when a list is filtered by function.
FILTER_WINDOW = 5000
#: Running jobs looked at, at most, to say what each server is doing.
RUNNING_WINDOW = 1000


def counts(tf: Taskfire) -> dict[str, Any]:
    """Jobs per state and per queue, totals, and the last week's hourly buckets."""
    return tf.storage.monitor.counts()


def job_ids(tf: Taskfire, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
    """A page of a state's jobs: newest first, but Scheduled soonest first and
    Enqueued next-to-run first."""
    if state == "Enqueued" and not queue:
        return []  # the page asks for a queue first
    return tf.job_ids_in_state(state, offset, limit, queue=queue)


def summaries(tf: Taskfire, ids: list[str]) -> list[dict[str, Any]]:
    """One row per job (function, state, queue, created, error, retries)."""
    return tf.storage.monitor.summaries(ids)


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
    page = waiting[offset:offset + limit]
    due = tf.storage.monitor.due_times([r["id"] for r in page])
    rows = [{**r, "due": d / 1000 if d else None} for r, d in zip(page, due, strict=True)]
    return rows, len(waiting) > offset + limit


def servers(tf: Taskfire) -> list[dict[str, Any]]:
    """Live servers with their heartbeat age and the jobs they are running (a lease
    token starts with its worker's id, "<server id>/<slot>")."""
    now = tf.storage.server_time_ms()
    running: dict[str, list[dict[str, Any]]] = {}
    for job_id, lease, fn, started in tf.storage.monitor.running(RUNNING_WINDOW):
        server_id = lease.rpartition("/")[0]
        running.setdefault(server_id, []).append(
            {"id": job_id, "function": fn, "seconds": (now - (started or now)) / 1000})
    out = []
    for facts in tf.servers():
        out.append({**facts, "heartbeat_age": (now - int(facts.get("heartbeat", now))) / 1000,
                    "running": running.get(facts["id"], [])})
    return out
