"""What the dashboard shows, read through the storage layer's read model
(taskfire.storage.monitor) in bounded ranges: no KEYS, no SCAN, and a few round trips
per page, however many jobs are stored. Where a list is bounded (a text filter looks at
the newest FILTER_WINDOW jobs of a state), the listing says so in its `notice`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from taskfire import Taskfire
from taskfire.errors import PayloadError
from taskfire.payload import decode_args, decode_value
from taskfire.storage import DERIVED_INDEXES
from taskfire.storage import STATES as STATES  # the states the menu lists

from .formatting import call_preview, size, value_preview

#: Jobs looked at, at most, when a state other than Failed is filtered by function.
FILTER_WINDOW = 5000
#: Running jobs looked at, at most, to say what each server is doing.
RUNNING_WINDOW = 1000
#: Arguments and results bigger than this are not read for a list's preview.
PREVIEW_BYTES = 4096
#: Jobs an index backfill looks at per call, and the calls one request may spend on it.
BACKFILL_SLICE, BACKFILL_CALLS = 2000, 10


@dataclass
class Listing:
    """A page of a list: its rows, how many the whole list holds (None: unknown), and
    what it leaves out, if anything."""

    rows: list[dict[str, Any]]
    total: int | None
    page: int
    size: int
    notice: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, math.ceil(self.total / self.size))

    @property
    def more(self) -> bool:
        return self.page < (self.pages or 0)

    @property
    def numbers(self) -> list[int]:
        """The page numbers a pager links to: the first, the last, two either side of this."""
        pages = self.pages or 1
        return sorted({1, pages, *range(max(1, self.page - 2), min(pages, self.page + 2) + 1)})


def counts(tf: Taskfire) -> dict[str, Any]:
    """Jobs per state and per queue, retries, totals and the week's hourly buckets. A
    store written before the retry and failure indexes gets them built here, a bounded
    share per request, before they are read."""
    found = tf.storage.monitor.counts()
    if not all(found["indexes_built"].values()):
        for index in DERIVED_INDEXES:
            if not found["indexes_built"][index]:
                build_index(tf, index)
        found = tf.storage.monitor.counts()
    return found


def build_index(tf: Taskfire, index: str) -> bool:
    """Advances an index's backfill by a bounded number of slices; whether it is built."""
    for _ in range(BACKFILL_CALLS):
        if tf.storage.backfill(index, BACKFILL_SLICE).built:
            return True
    return False


# -- lists of jobs -------------------------------------------------------------------

def state_listing(tf: Taskfire, c: dict[str, Any], state: str, offset: int, per_page: int, *,
                  queue: str | None = None, function: str | None = None,
                  exception: str | None = None) -> Listing:
    """`per_page` of a state's jobs from `offset`, with the columns that state needs.
    Failed is filtered by function and exception type through its indexes (any depth);
    another state's function filter matches text among its newest FILTER_WINDOW jobs."""
    page = offset // per_page + 1
    monitor = tf.storage.monitor
    if state == "Failed":
        return failed_listing(tf, offset, per_page, function, exception, c)
    if state == "Enqueued":
        if not queue:
            return Listing([], 0, page, per_page)
        total = next((q["length"] for q in c["queues"] if q["name"] == queue), 0)
    else:
        total = c["kept"].get(state, c["states"].get(state, 0))
    if function:
        matching = matching_ids(tf, state, function, queue)
        notice = None
        if total > FILTER_WINDOW:
            notice = (f"Looked for “{function}” among the newest {FILTER_WINDOW:,} of {total:,} "
                      f"{state.lower()} jobs only: older ones were not searched.")
        rows = monitor.summaries(matching[offset:offset + per_page], sizes=preview_fields(state))
        return Listing(with_columns(tf, state, rows), len(matching), page, per_page, notice)
    ids = tf.job_ids_in_state(state, offset, per_page, queue=queue)
    return Listing(with_columns(tf, state, monitor.summaries(ids, sizes=preview_fields(state))), total, page,
                   per_page)


def matching_ids(tf: Taskfire, state: str, function: str, queue: str | None = None) -> list[str]:
    """The jobs whose function contains `function`, among the newest FILTER_WINDOW of a
    state (another bounded list: its page says so)."""
    ids = tf.job_ids_in_state(state, 0, FILTER_WINDOW, queue=queue)
    return [i for i, (fn, now) in zip(ids, tf.storage.monitor.functions_and_states(ids), strict=True)
            if fn and function in fn and now == state]


def failed_listing(tf: Taskfire, offset: int, per_page: int, function: str | None, exception: str | None,
                   c: dict[str, Any]) -> Listing:
    """Failed jobs, newest failure first: all, or one function's, or one exception
    type's (their indexes, at any depth). Both at once: the smaller of the two indexes
    is read, its newest FILTER_WINDOW jobs, and the page says so if it holds more."""
    monitor = tf.storage.monitor
    functions, exceptions = monitor.failure_groups()
    page = offset // per_page + 1
    groups = {"functions": functions, "exceptions": exceptions}
    notice = None
    if function and exception:
        by_function = functions.get(function, 0) <= exceptions.get(exception, 0)
        smaller = functions.get(function, 0) if by_function else exceptions.get(exception, 0)
        found = monitor.failed_ids(0, FILTER_WINDOW, **({"function": function} if by_function
                                                         else {"exception": exception}))
        rows = [r for r in monitor.summaries([i for i, _ in found])
                if r["function"] == function and r["error"] == exception]
        if smaller > FILTER_WINDOW:
            notice = (f"Both filters at once: looked among the newest {FILTER_WINDOW:,} of the {smaller:,} failed jobs "
                      f"of the {'function' if by_function else 'exception'} only.")
        failed_at = dict(found)
        for r in rows:
            r["failed_at_ms"] = failed_at.get(r["id"])
        return Listing(with_columns(tf, "Failed", rows[offset:offset + per_page]), len(rows), page, per_page,
                       notice, groups)
    if function:
        total = functions.get(function, 0)
    elif exception:
        total = exceptions.get(exception, 0)
    else:
        total = c["states"]["Failed"]
    found = monitor.failed_ids(offset, per_page, function=function or None, exception=exception or None)
    rows = monitor.summaries([i for i, _ in found])
    for r, (_, at) in zip(rows, found, strict=True):
        r["failed_at_ms"] = at
    return Listing(with_columns(tf, "Failed", rows), total, page, per_page, notice, groups)


def retries_listing(tf: Taskfire, c: dict[str, Any], offset: int, per_page: int) -> Listing:
    """Jobs waiting for their next attempt, soonest first, from the retries index."""
    page = offset // per_page + 1
    found = tf.storage.monitor.retry_ids(offset, per_page)
    rows = tf.storage.monitor.summaries([i for i, _ in found], sizes=("args",))
    for r, (_, due) in zip(rows, found, strict=True):
        r["due"] = due / 1000
    return Listing(with_columns(tf, "Retries", rows), c["retries"], page, per_page)


def preview_fields(state: str) -> tuple[str, ...]:
    """The fields a state's list previews: the call while a job waits, the result once
    it succeeded."""
    if state in ("Enqueued", "Scheduled", "Awaiting"):
        return ("args",)
    if state == "Succeeded":
        return ("result",)
    return ()


def with_columns(tf: Taskfire, state: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds what each state's list shows (its columns) to rows read by the monitor."""
    if state == "Scheduled":
        for r, due in zip(rows, tf.storage.monitor.due_times([r["id"] for r in rows]), strict=True):
            r["due"] = due / 1000 if due is not None else None
    _previews(tf, rows)
    for r in rows:
        last = r.get("last") or {}
        data = last.get("data") or {}
        r["entered"] = last["at"] / 1000 if isinstance(last.get("at"), int) else r["created"]
        r["reason"] = last.get("reason")
        r["message"] = data.get("exception_message")
        if r.get("failed_at_ms") is not None:
            r["entered"] = r["failed_at_ms"] / 1000
        r["server"] = (r["lease"] or "").rpartition("/")[0] or None
        duration_ms, latency_ms = data.get("duration_ms"), data.get("latency_ms")
        r["duration"] = duration_ms / 1000 if isinstance(duration_ms, (int, float)) else None
        if isinstance(duration_ms, (int, float)) and isinstance(latency_ms, (int, float)):
            r["total"] = (duration_ms + latency_ms) / 1000
        elif r["state"] in ("Succeeded", "Failed", "Deleted") and r["created"] and r["entered"]:
            r["total"] = max(0.0, r["entered"] - r["created"])
        else:
            r["total"] = None
    return rows


def _previews(tf: Taskfire, rows: list[dict[str, Any]]) -> None:
    """Fills `preview` with the arguments or result of each row, read only where small."""
    wanted: list[tuple[int, str]] = []
    for n, r in enumerate(rows):
        r["preview"] = None
        for name in ("args", "result"):
            stored = r.get(f"size_{name}")
            if stored is None or stored == 0:
                continue
            if stored > PREVIEW_BYTES:
                r["preview"] = f"({'arguments' if name == 'args' else 'result'}: {size(stored)})"
            else:
                wanted.append((n, name))
    values = tf.storage.monitor.field_values([(rows[n]["id"], name) for n, name in wanted])
    for (n, name), raw in zip(wanted, values, strict=True):
        if raw is None:
            continue
        try:
            if name == "args":
                rows[n]["preview"] = call_preview(*decode_args(raw))
            else:
                rows[n]["preview"] = value_preview(decode_value(raw))
        except (PayloadError, ValueError, TypeError):
            rows[n]["preview"] = "(cannot be decoded)"


def summaries(tf: Taskfire, ids: Sequence[str]) -> list[dict[str, Any]]:
    """One row per job (function, state, queue, created, error, retries, ...)."""
    return tf.storage.monitor.summaries(ids)


# -- servers -------------------------------------------------------------------------

def servers(tf: Taskfire) -> list[dict[str, Any]]:
    """Live servers with their heartbeat age, whether they still answer, and the jobs
    they are running (a lease token starts with its worker's id, "<server id>/<slot>").
    A server is "not responding" once its heartbeat is two intervals late, long before
    the server timeout removes it."""
    now = tf.storage.server_time_ms()
    running: dict[str, list[dict[str, Any]]] = {}
    for job_id, lease, fn, started in tf.storage.monitor.running(RUNNING_WINDOW):
        server_id = lease.rpartition("/")[0]
        running.setdefault(server_id, []).append(
            {"id": job_id, "function": fn, "seconds": (now - (started or now)) / 1000})
    out = []
    for facts in tf.servers():
        age = (now - int(facts.get("heartbeat", now))) / 1000
        interval = _float(facts.get("interval"))
        late_after = 2 * interval + 1 if interval else _float(facts.get("timeout")) or 30.0
        status = facts.get("state") or "running"
        out.append({**facts, "heartbeat_age": age, "responding": age <= late_after,
                    "status": status if age <= late_after else "not responding",
                    "running": running.get(facts["id"], [])})
    return out


def _float(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None
