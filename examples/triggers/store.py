"""Triggers in Redis: each one's definition and state in a hash, and their next checks in
one sorted set, under the client's key prefix.

    <prefix>trigger:<id>      kind, workflow, every, url, fire_always, timeout (definition)
                              last_checked, last_fired, fire_count, last_error, last_status,
                              last_hash, backoff_until, last_job (state; times in ms)
    <prefix>triggers:due      trigger id -> when it is next checked (ms, Redis server time)

Due times only ever move forward (ZADD GT), whoever writes them: the checker moving a
trigger to its next interval and a check backing off after a 429 may race, and the later
time wins, so a back-off is never cut short.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from taskfire import JobFunction, Taskfire

INTERVAL, POLL = "interval", "poll"
_EVERY = re.compile(r"^\s*(?:every\s+)?(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600}
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def parse_every(every: float | str) -> float:
    """Seconds from 30, "30s", "5 minutes", "every 2 hours"; at least one second."""
    if isinstance(every, str):
        m = _EVERY.match(every.lower())
        if not m:
            raise ValueError(f"every={every!r}: write seconds (30) or e.g. '30s', '5 minutes', '2 hours'")
        seconds = float(m.group(1)) * _UNIT[m.group(2)[0]]
    elif isinstance(every, (int, float)) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ValueError(f"every must be seconds or text like '5 minutes', not {every!r}")
    if seconds < 1:
        raise ValueError(f"every={every!r}: triggers are checked at most once a second")
    return seconds


class Trigger(msgspec.Struct, frozen=True):
    """A trigger's definition and its state."""

    id: str
    kind: str                     # "interval" or "poll"
    workflow: str                 # the job it starts, "module:function"
    every: float                  # seconds between checks
    url: str | None = None        # poll: what is fetched
    fire_always: bool = False     # poll: start the workflow on every successful fetch
    timeout: float = 10.0         # poll: seconds to wait for the URL
    next_check: int | None = None
    last_checked: int | None = None
    last_fired: int | None = None
    fire_count: int = 0
    last_error: str | None = None
    last_status: int | None = None
    last_hash: str | None = None
    backoff_until: int | None = None
    last_job: str | None = None


class Triggers:
    """The triggers stored under one client's prefix."""

    def __init__(self, tf: Taskfire) -> None:
        self.redis = tf.storage.redis
        self.prefix = tf.prefix
        self.due_key = tf.prefix + "triggers:due"

    def key(self, trigger_id: str) -> str:
        return f"{self.prefix}trigger:{trigger_id}"

    def now_ms(self) -> int:
        """The Redis server's time: every host agrees on it."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- defining ---------------------------------------------------------------------

    def add_interval(self, trigger_id: str, workflow: JobFunction[..., Any] | str, every: float | str) -> Trigger:
        """Starts `workflow(trigger_id=, fired_at_ms=)` every `every`."""
        return self._define(trigger_id, {"kind": INTERVAL, "workflow": _workflow_name(workflow),
                                         "every": parse_every(every)})

    def add_poll(self, trigger_id: str, url: str, workflow: JobFunction[..., Any] | str, every: float | str, *,
                 fire_always: bool = False, timeout: float = 10.0) -> Trigger:
        """Fetches `url` every `every` and starts `workflow(trigger_id=, body=, status_code=,
        hash=, previous_hash=)` when the body's hash changed (or on every fetch, with
        `fire_always`). The first fetch only records the hash, unless `fire_always`."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL, not {url!r}")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
            raise ValueError(f"timeout must be seconds between 0 and 300, not {timeout!r}")
        return self._define(trigger_id, {"kind": POLL, "workflow": _workflow_name(workflow),
                                         "every": parse_every(every), "url": url,
                                         "fire_always": int(bool(fire_always)), "timeout": float(timeout)})

    def _define(self, trigger_id: str, definition: dict[str, str | int | float]) -> Trigger:
        """Stores a definition (a trigger defined again keeps its state) and makes it due now."""
        if not isinstance(trigger_id, str) or not _ID.match(trigger_id):
            raise ValueError(f"trigger id {trigger_id!r}: use 1-100 letters, digits, '_', '.', ':' or '-'")
        pipe = self.redis.pipeline()
        pipe.hdel(self.key(trigger_id), "url", "fire_always", "timeout")
        pipe.hset(self.key(trigger_id), mapping=definition)  # type: ignore[arg-type]
        pipe.zadd(self.due_key, {trigger_id: self.now_ms()})
        pipe.execute()
        found = self.get(trigger_id)
        assert found is not None
        return found

    def remove(self, trigger_id: str) -> bool:
        pipe = self.redis.pipeline()
        pipe.zrem(self.due_key, trigger_id)
        pipe.delete(self.key(trigger_id))
        return bool(pipe.execute()[1])

    # -- reading ----------------------------------------------------------------------

    def get(self, trigger_id: str) -> Trigger | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key(trigger_id))
        pipe.zscore(self.due_key, trigger_id)
        fields, due = pipe.execute()
        if not fields:
            return None
        f = {k.decode(): v.decode() for k, v in fields.items()}

        def number(name: str) -> int | None:
            return int(f[name]) if f.get(name) else None

        return Trigger(
            id=trigger_id, kind=f["kind"], workflow=f["workflow"], every=float(f["every"]), url=f.get("url"),
            fire_always=f.get("fire_always") == "1", timeout=float(f.get("timeout") or 10),
            next_check=int(due) if due is not None else None, last_checked=number("last_checked"),
            last_fired=number("last_fired"), fire_count=int(f.get("fire_count") or 0),
            last_error=f.get("last_error") or None, last_status=number("last_status"),
            last_hash=f.get("last_hash") or None, backoff_until=number("backoff_until"),
            last_job=f.get("last_job") or None)

    def all(self) -> list[Trigger]:
        """Every trigger, the next to be checked first."""
        ids = _texts(self.redis.zrange(self.due_key, 0, -1))
        return [t for t in map(self.get, ids) if t is not None]

    def due(self, now_ms: int) -> list[str]:
        """Ids of the triggers due by `now_ms`."""
        return _texts(self.redis.zrangebyscore(self.due_key, "-inf", now_ms))

    # -- what checks write --------------------------------------------------------------

    def not_before(self, trigger_id: str, when_ms: int) -> None:
        """Checks the trigger again no sooner than `when_ms` (never earlier than already
        planned), if it still exists."""
        self.redis.zadd(self.due_key, {trigger_id: when_ms}, xx=True, gt=True)

    def record(self, trigger_id: str, fired: bool = False, **state: str | int | None) -> None:
        """Stores a check's outcome: the given fields (None deletes one), and one more
        fire if `fired`; nothing if the trigger was removed meanwhile."""
        key = self.key(trigger_id)
        kept = {k: v for k, v in state.items() if v is not None}
        gone = [k for k, v in state.items() if v is None]

        def write(pipe: Any) -> None:
            if not pipe.exists(key):
                return
            pipe.multi()
            if kept:
                pipe.hset(key, mapping=kept)
            if gone:
                pipe.hdel(key, *gone)
            if fired:
                pipe.hincrby(key, "fire_count", 1)

        self.redis.transaction(write, key)


def _texts(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _workflow_name(workflow: JobFunction[..., Any] | str) -> str:
    name = workflow.name if isinstance(workflow, JobFunction) else workflow
    if not isinstance(name, str) or ":" not in name:
        raise ValueError(f"workflow must be a @job function or a 'module:function' name, not {workflow!r}")
    return name
