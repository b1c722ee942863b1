"""Recurring jobs in Redis: each definition is a hash, and the `recurring` sorted set
orders them by next run. Schedulers claim due runs and fire them through scripts
(recurring_claim.lua, recurring_fire.lua), so a tick fires once however many race;
definitions are written with MULTI, as they change rarely and only by people."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import redis

from . import wire
from .keys import Keys
from .scripts import Scripts

#: Storage.write_if: a MULTI whose writes happen only if a check (read under WATCH) holds.
WriteIf = Callable[[str, Callable[[Any], bool], Callable[[Any], Any]], bool]


class RecurringStore:
    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts, write_if: WriteIf) -> None:
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self.write_if = write_if

    def claim(self, limit: int, claim_ms: int) -> wire.Claim:
        """Takes up to `limit` due runs for this scheduler for `claim_ms`."""
        return wire.decode_claim(self.scripts.call("recurring_claim", wire.encode_claim(limit, claim_ms)))

    def fire(self, recurring_id: str, expected_ms: int | None, next_ms: int | None,
             error: str, reason: str, jobs: Sequence[tuple[str, int]]) -> int:
        """One run (see recurring_fire.lua): jobs created, or -1 if it was no longer due."""
        return int(self.scripts.call(
            "recurring_fire", wire.encode_fire(recurring_id, expected_ms, next_ms, error, reason, jobs)))

    def read_fields(self, recurring_id: str, *names: str) -> list[str | None]:
        values: list[bytes | None] = self.redis.hmget(self.keys.recurring_job(recurring_id), names)  # type: ignore[assignment]
        return [v.decode() if v is not None else None for v in values]

    def save(self, recurring_id: str, fields: dict[str, str | bytes], next_ms: int | None, reschedule: bool) -> None:
        """Writes a recurring job's definition; with `reschedule`, also its next run (and
        the error it had is cleared, unless `fields` sets one)."""
        key = self.keys.recurring_job(recurring_id)
        pipe = self.redis.pipeline(transaction=True)
        if reschedule:
            pipe.hdel(key, "error")  # before the fields, which may set a new one
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        if "opts" not in fields:
            pipe.hdel(key, "opts")
        if reschedule:
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

    def set_enabled(self, recurring_id: str, enabled: bool, next_ms: int | None) -> bool:
        """Enables (with its next run) or disables a recurring job; False if absent."""
        key = self.keys.recurring_job(recurring_id)

        def write(pipe: Any) -> None:
            pipe.hset(key, "enabled", "1" if enabled else "0")
            self._set_next(pipe, recurring_id, next_ms if enabled else None)

        return self.write_if(key, lambda pipe: bool(pipe.exists(key)), write)

    def remove(self, recurring_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.recurring_job(recurring_id))
        pipe.zrem(self.keys.recurring, recurring_id)
        return bool(pipe.execute()[0])

    def ids(self) -> list[str]:
        """Every recurring job's id, soonest next run first."""
        ids: list[bytes] = self.redis.zrange(self.keys.recurring, 0, -1)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    def read(self, ids: Sequence[str]) -> list[tuple[dict[bytes, bytes], bytes | None]]:
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
