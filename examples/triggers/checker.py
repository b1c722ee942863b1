"""Checking triggers, with any number of workers: `taskfire worker examples.triggers.checker`.

A recurring job, `check_due_triggers`, runs every second. Its mutex lets one run at a
time cluster-wide, so it alone moves due triggers to their next check: a trigger is
claimed once per interval however many workers there are. For each due trigger it
enqueues `check_trigger`, unique per trigger, so a slow URL never has two checks
running or piling up; checks of different triggers run in parallel on any worker.

A check that fails (connection refused, timeout, an error status) records the error and
leaves the trigger on its schedule: it is tried again at its next interval. A 429 backs
the trigger off for the response's Retry-After (an HTTP date or seconds; 60 s if absent).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from taskfire import Cron, JobFunction, Taskfire, current_job, job
from taskfire.job import registry

from .store import INTERVAL, Trigger, Triggers

CHECKER_ID = "workflow-triggers"
#: Longest body read from a polled URL (a longer one is an error).
MAX_BODY = 1024 * 1024
DEFAULT_BACKOFF_S = 60.0
MAX_BACKOFF_S = 86400.0


def install(tf: Taskfire, cron: str = Cron.every_second()) -> None:
    """Registers the checker as a recurring job (once per deployment is enough; doing it
    again changes nothing). Its cron is the finest resolution of every trigger."""
    tf.recurring.add_or_update(CHECKER_ID, check_due_triggers, cron)


def _client() -> Taskfire:
    ctx = current_job()
    assert ctx is not None, "this runs as a job"
    client: Taskfire = ctx.client
    return client


def _job_id() -> str:
    ctx = current_job()
    assert ctx is not None, "this runs as a job"
    return ctx.id


@job(mutex="workflow-trigger-checker", mutex_timeout=30, retries=0)
def check_due_triggers() -> int:
    """Claims each due trigger for its next interval and enqueues its check."""
    tf = _client()
    triggers = Triggers(tf)
    now = triggers.now_ms()
    # Intervals count from the checker's tick, not from when this run started, so a
    # trigger due every second is checked at every tick rather than every other one.
    me = tf.get_job(_job_id())
    tick = int(me.recurring_tick.timestamp() * 1000) if me and me.recurring_tick else now
    claimed = 0
    for trigger_id in triggers.due(now):
        trigger = triggers.get(trigger_id)
        if trigger is None:
            continue
        triggers.not_before(trigger_id, tick + int(trigger.every * 1000))
        check_trigger.enqueue(trigger_id, tick)
        claimed += 1
    return claimed


@job(unique="trigger-{trigger_id}", retries=0)
def check_trigger(trigger_id: str, tick_ms: int) -> str:
    """Fires an interval trigger, or polls a URL and fires on a change; records the outcome."""
    tf = _client()
    triggers = Triggers(tf)
    trigger = triggers.get(trigger_id)
    if trigger is None:
        return "removed"
    if trigger.kind == INTERVAL:
        job_id = tf.enqueue(workflow(trigger), trigger_id=trigger_id, fired_at_ms=tick_ms)
        triggers.record(trigger_id, fired=True, last_checked=tick_ms, last_fired=tick_ms,
                        last_job=job_id)
        return f"fired {job_id}"
    return poll(tf, triggers, trigger)


def workflow(trigger: Trigger) -> JobFunction[..., Any] | str:
    """The workflow's function if this worker imported it (so its queue and options
    apply), else a reference by name."""
    return registry.get(trigger.workflow) or trigger.workflow


def poll(tf: Taskfire, triggers: Triggers, trigger: Trigger) -> str:
    assert trigger.url is not None
    checked = triggers.now_ms()
    try:
        status, headers, body = fetch(trigger.url, trigger.timeout)
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, too large
        triggers.record(trigger.id, last_checked=checked, last_error=f"GET {trigger.url} failed: {_describe(exc)}")
        return "error"
    if status == 429:
        wait = retry_after(headers.get("Retry-After"), checked)
        until = checked + int(wait * 1000)
        triggers.not_before(trigger.id, until)
        triggers.record(trigger.id, last_checked=checked, last_status=status, backoff_until=until,
                        last_error=f"GET {trigger.url} answered 429 Too Many Requests: backing off for {wait:g} s")
        return "backing off"
    if status >= 400:
        triggers.record(trigger.id, last_checked=checked, last_status=status,
                        last_error=f"GET {trigger.url} answered {status}")
        return "error"
    digest = hashlib.sha256(body).hexdigest()
    changed = trigger.last_hash is not None and digest != trigger.last_hash
    state: dict[str, Any] = {"last_checked": checked, "last_status": status, "last_hash": digest,
                             "last_error": None, "backoff_until": None}
    if not (changed or trigger.fire_always):
        triggers.record(trigger.id, **state)
        return "unchanged" if trigger.last_hash else "first fetch: hash recorded"
    job_id = tf.enqueue(workflow(trigger), trigger_id=trigger.id, body=body.decode("utf-8", errors="replace"),
                        status_code=status, hash=digest, previous_hash=trigger.last_hash)
    triggers.record(trigger.id, fired=True, last_fired=checked, last_job=job_id, **state)
    return f"fired {job_id}"


def fetch(url: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; an error status is an answer, not an exception."""
    request = urllib.request.Request(url, headers={"User-Agent": "taskfire-workflow-triggers"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), _read(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), _read(exc)


def _read(response: Any) -> bytes:
    body: bytes = response.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ValueError(f"the body is larger than {MAX_BODY // 1024} KiB")
    return body


def retry_after(value: str | None, now_ms: int) -> float:
    """Seconds to wait, from a Retry-After header (seconds, or an HTTP date)."""
    if not value:
        return DEFAULT_BACKOFF_S
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_BACKOFF_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.fromtimestamp(now_ms / 1000, timezone.utc)).total_seconds()
    return min(max(seconds, 1.0), MAX_BACKOFF_S)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        return str(exc.reason)
    return str(exc) or type(exc).__name__
