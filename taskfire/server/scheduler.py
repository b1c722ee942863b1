"""The recurring scheduler: a thread in every worker process that fires due runs.

    claim   one script call takes up to CLAIM_BATCH due recurring jobs and pushes them
            ahead by CLAIM_MS, so the other schedulers leave them alone
    plan    here, in Python, croniter computes which ticks to fire (by the job's misfire
            mode) and the next run, from the server's clock, never this host's
    fire    one script call per job creates its job(s) and moves its next run on, only
            if the job's next run is still the one claimed: a tick fires exactly once
    sleep   blocks on the `recurring:wake` list until the earliest next run, at most
            `idle_wait`; adding or enabling a job leaves a token there

A recurring job whose function cannot be found keeps its schedule: each tick records the
error on it (shown by `get`, `list` and the dashboard) and creates no job, until the
function is back.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import NamedTuple

from ..backoff import Backoff
from ..creation import new_job_id
from ..cron import Schedule, from_ms
from ..job import registry
from ..recurring import MAX_CATCH_UP, MISFIRE_GRACE_MS
from ..storage import DueRun, Storage, describe_error

log = logging.getLogger("taskfire.scheduler")

CLAIM_BATCH = 100
#: How long a claimed run is left to its scheduler before another may fire it.
CLAIM_MS = 10_000
#: When a job's schedule cannot be computed (a time zone gone from this host's tz
#: database, say), the next attempt.
RETRY_MS = 60_000
#: Waits shorter than this are slept here rather than blocked in Redis, whose blocking
#: timeouts fire on its timer (every 100 ms at the default hz) and would make runs late.
PRECISE_WAIT = 0.2


class Plan(NamedTuple):
    ticks: list[int]       # a job for each of these ticks (ms)
    next_ms: int | None    # the run after them; None if the schedule never fires again
    note: str              # what was skipped, for the recurring job's error field


def plan_run(schedule: Schedule, misfire: str, due_ms: int, now_ms: int) -> Plan:
    """The jobs to create for a run due at `due_ms`, seen at the server time `now_ms`."""
    next_ms = schedule.next_ms(now_ms)
    if misfire == "ignorable":
        if now_ms - due_ms <= MISFIRE_GRACE_MS:
            return Plan([due_ms], next_ms, "")
        recent = schedule.next_ms(now_ms - MISFIRE_GRACE_MS - 1)
        return Plan([recent] if recent is not None and recent <= now_ms else [], next_ms, "")
    if misfire == "strict":
        ticks = [due_ms]
        t: int | None = due_ms
        while len(ticks) <= MAX_CATCH_UP:
            t = schedule.next_ms(t)  # type: ignore[arg-type]
            if t is None or t > now_ms:
                return Plan(ticks, next_ms, "")
            ticks.append(t)
        return Plan(ticks[:MAX_CATCH_UP], next_ms,
                    f"more than {MAX_CATCH_UP} ticks were missed since {from_ms(due_ms):%Y-%m-%d %H:%M:%S} UTC: "
                    f"the first {MAX_CATCH_UP} fired, the rest until {from_ms(now_ms):%Y-%m-%d %H:%M:%S} UTC "
                    f"were skipped")
    return Plan([due_ms], next_ms, "")  # relaxed: missed ticks fire once


def function_error(name: str) -> str:
    """Why a worker could not run the job function `name`, or "" if it can."""
    if name in registry:
        return ""
    module, _, qualname = name.partition(":")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        return f"job function {name!r} cannot be loaded: importing {module!r} failed: {type(exc).__name__}: {exc}"
    if name in registry:
        return ""
    obj: object = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is None:
        return f"job function {name!r} does not exist: module {module!r} has no {qualname!r}"
    return f"job function {name!r} is not a @job (decorate it with @job)"


class RecurringScheduler:
    def __init__(self, storage: Storage, stop: threading.Event, idle_wait: float, owner: str) -> None:
        self.storage = storage
        self.stop = stop
        self.idle_wait = idle_wait
        self.owner = owner
        self.schedules: dict[tuple[str, str], Schedule] = {}

    def run(self) -> None:
        backoff = Backoff(f"scheduler of {self.owner}", describe_error)
        while not self.stop.is_set():
            try:
                claim = self.storage.recurring.claim(CLAIM_BATCH, CLAIM_MS)
                earliest = claim.next_ms
                for run in claim.due:
                    fired_next = self.fire(run, claim.now_ms)
                    if fired_next is not None and (earliest is None or fired_next < earliest):
                        earliest = fired_next
                backoff.ok()
                if len(claim.due) == CLAIM_BATCH:
                    continue
                wait = self.idle_wait
                if earliest is not None:
                    wait = min(wait, (earliest - claim.now_ms) / 1000)
                if wait <= PRECISE_WAIT:
                    self.stop.wait(max(wait, 0.0))
                else:
                    # Redis ends a blocking wait only on its own timer (hz), up to 100 ms
                    # late: block until shortly before the run, then sleep here.
                    self.storage.wait_for_recurring(wait - PRECISE_WAIT)
            except Exception as exc:  # Redis's trouble (a full Redis refuses new runs) or a bug: tried again
                backoff.wait(exc, self.stop)

    def _schedule(self, cron: str, tz: str) -> Schedule:
        key = (cron, tz)
        if key not in self.schedules:
            if len(self.schedules) > 10_000:
                self.schedules.clear()
            self.schedules[key] = Schedule(cron, tz)
        return self.schedules[key]

    def fire(self, run: DueRun, now_ms: int) -> int | None:
        """Fires one claimed run; returns the next run it set, if it set one."""
        try:
            plan = plan_run(self._schedule(run.cron, run.tz), run.misfire, run.next_ms, now_ms)
        except ValueError as exc:
            log.error("recurring job %r: %s; trying again in %d s", run.id, exc, RETRY_MS // 1000)
            self.storage.recurring.fire(run.id, run.next_ms, now_ms + RETRY_MS, str(exc), "", [])
            return now_ms + RETRY_MS
        error = function_error(run.fn)
        jobs = [] if error else [(new_job_id(), tick) for tick in plan.ticks]
        if error:
            log.error("recurring job %r: %s; no job created, its schedule goes on", run.id, error)
        elif plan.note:
            log.warning("recurring job %r: %s", run.id, plan.note)
        created = self.storage.recurring.fire(
            run.id, run.next_ms, plan.next_ms, error or plan.note,
            f"Fired by recurring job '{run.id}'", jobs)
        if created < 0:
            return None  # another scheduler fired it, or it changed meanwhile
        if created:
            log.debug("recurring job %r fired %d job(s) (%s), %d ms after its tick", run.id, created,
                      jobs[-1][0], now_ms - run.next_ms)
        return plan.next_ms
