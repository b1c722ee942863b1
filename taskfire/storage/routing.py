"""Which shard a call goes to (storage/shards.py has the layout): `Storage`'s routing
by job or batch id, where new jobs are placed, where a worker takes jobs, and growing
the shards when the cluster grows. A mixin of Storage, kept apart so that store.py holds
the verbs.

A worker process works in one shard at a time: its fetches start there, and its
threads' next jobs come from there, in the same call that stores their outcomes. So a
group of outcomes (finisher.py) is mostly one shard's: one script call, as on one
Redis, where threads spread over the shards would cost a call per shard per group
(measured: 0.57 script calls per job, against 0.43 on one Redis). It moves on to the
next shard every VISIT_S, and at once to a shard that has jobs when its own has none:
no shard waits behind the others' backlog (a queue of higher priority there, say)
longer than VISIT_S times the number of shards.

A shard whose call failed (its primary failing over) is passed over by the fetches for
a while (AWAY_S, doubling up to AWAY_MAX_S while it keeps failing): a call to it can
spend seconds in the cluster client's retries, and a fetch that tried it first would
hold the healthy shards' jobs back that long. Its outcomes are still sent to it, each
shard's retried on its own (server/finisher.py), and its first answer ends the pause."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import redis

import msgspec

from . import wire
from .fanout import ShardWaiter, merged
from .scripts import TRANSIENT_ERRORS
from .keys import Keys
from .monitor import Monitor
from .monitor_shards import ShardedMonitor
from .shards import Placer, Shard, group_by_shard, index_of, mark, placement, register_shards

#: How often a worker looks for shards added since it started (a primary joined).
REFRESH_S = 10.0
#: Job ids name at most this many shards.
MAX_SHARDS = 1 << 16
#: How long a worker process works in one shard before it moves on to the next.
VISIT_S = 0.25
#: How long fetches pass over a shard after a call to it failed, at first and at most.
AWAY_S = 0.25
AWAY_MAX_S = 2.0


class ShardRouting:
    """Routing over `shards` (Storage sets them, and the rest, in its __init__)."""

    shards: list[Shard]
    cluster: redis.RedisCluster | None
    redis: redis.Redis
    url: str
    placer: Placer
    monitor: Monitor
    waiter: ShardWaiter
    _refresh_due: float
    _current: int
    _visit_due: float
    _away: dict[int, tuple[float, float]]  # a shard's: until when it is passed over, and for how long
    retention_s: int
    index_cap: int

    @property
    def keys(self) -> Keys:
        """The home shard's keys."""
        return self.shards[0].keys

    def shard_of(self, any_id: str) -> Shard:
        """The shard a job or batch lives in, told by its id (one of a shard added since
        this store last looked makes it look again)."""
        if self.cluster is None:
            return self.shards[0]
        k = index_of(any_id, MAX_SHARDS)
        if k >= len(self.shards):
            self.refresh_shards()
        return self.shards[k] if k < len(self.shards) else self.shards[0]

    def refresh_shards(self) -> bool:
        """Looks for shards added since (another client registered them, or a primary
        joined the cluster: this store registers a shard for it). Whether it found any.
        Workers look every REFRESH_S (see fetch), so they serve a grown cluster."""
        if self.cluster is None:
            return False
        self._refresh_due = time.monotonic() + REFRESH_S
        self.cluster.nodes_manager.initialize()  # the primaries as they are now
        prefixes = register_shards(self.cluster, self.keys.prefix)
        if len(prefixes) <= len(self.shards):
            return False
        shards = [*self.shards, *(Shard(i, self.redis, self.cluster, self.url, p)
                                  for i, p in enumerate(prefixes) if i >= len(self.shards))]
        self.placer.grow(len(shards))
        self.monitor = ShardedMonitor([Monitor(self.redis, s.keys, self.keys_of) for s in shards])
        self.waiter.shards = shards
        self.shards = shards
        return True

    def keys_of(self, any_id: str) -> Keys:
        return self.shard_of(any_id).keys

    def placement(self, fields: dict[str, bytes | str]) -> str:
        """What ends the id of a new job with these fields (shards.placement)."""
        return placement(fields, len(self.shards), self.placer)

    def mark_of(self, any_id: str) -> str:
        """What ends the ids of jobs that must live with this job or batch (looked up by
        shard_of, which learns of a shard added since this store last looked)."""
        return mark(self.shard_of(any_id).index)

    def _by_shard(self, items: Sequence[Any], id_of: Callable[[Any], str]) -> list[tuple[Shard, list[int]]]:
        """Positions of `items` grouped by shard, shards in order of first appearance."""
        return [(self.shards[k], positions) for k, positions in group_by_shard(items, id_of, len(self.shards))]

    # -- a worker's fetch ------------------------------------------------------------

    def _turn(self) -> int:
        """The shard this process works in now (it moves on every VISIT_S, and at once
        from a shard that is passed over)."""
        now = time.monotonic()
        if now >= self._visit_due or self._passed_over(self._current):
            self._visit_due = now + VISIT_S
            n = len(self.shards)
            self._current = next((k % n for k in range(self._current + 1, self._current + 1 + n)
                                  if not self._passed_over(k % n)), (self._current + 1) % n)
        return self._current

    def _passed_over(self, index: int) -> bool:
        """Whether fetches skip this shard now (a call to it failed lately)."""
        away = self._away.get(index)
        return away is not None and time.monotonic() < away[0]

    def _failed(self, index: int) -> None:
        """A call to this shard failed: fetches pass it over for a while, longer each time."""
        pause = min(self._away.get(index, (0.0, AWAY_S / 2))[1] * 2, AWAY_MAX_S)
        self._away[index] = (time.monotonic() + pause, pause)

    def _answered(self, index: int) -> None:
        """A call to this shard got through: fetches take from it again."""
        self._away.pop(index, None)

    def fetch_round(self, request: wire.FetchRequest, start: int | None = None, probe: bool = True,
                    first_with_jobs: bool = False) -> wire.Fetch:
        """Takes jobs from shard `start` (default: the one this process works in), then
        the others in turn, until it has enough (`first_with_jobs`: until a shard gave
        any, so that a worker woken from idle starts its first job after one round
        trip, not one per shard); a shard that gave jobs becomes the one it works in.
        A shard that cannot be reached (its primary failing over) is passed over: the
        error is raised only if no shard gave a job, so jobs taken are never dropped. A
        shard whose calls failed lately is asked last, only once its pause is over, and
        not at all unless `probe` (the fetch loop probes; a thread's next job after its
        outcome must not wait on a shard likely still away). Every call does a bit of
        its shard's timekeeping (due jobs, lapsed leases)."""
        if self.cluster is not None and time.monotonic() >= self._refresh_due:
            self.refresh_shards()  # a worker serves the shards of primaries added since it started
        n = len(self.shards)
        first = self._turn() if start is None else start % n
        got: list[wire.Fetch] = []
        trouble: Exception | None = None
        wanted = request.max_jobs
        order = [(first + k) % n for k in range(n)]
        # the shards that failed lately last, tried only if the others had too few jobs
        order = [i for i in order if not self._passed_over(i)] + [i for i in order if self._passed_over(i)]
        if not probe:
            order = [i for i in order if i not in self._away]
        for index in order:
            if self._passed_over(index) and (got or trouble is not None):
                break  # the healthy shards answered: no waiting on one that is likely still away
            ask = msgspec.structs.replace(request, max_jobs=wanted)
            try:
                got.append(wire.decode_fetch(self.shards[index].scripts.call("fetch", wire.encode_fetch(ask))))
            except TRANSIENT_ERRORS as exc:
                self._failed(index)
                trouble = trouble or exc
                continue
            self._answered(index)
            if got[-1].jobs:
                self._current = index
            wanted -= len(got[-1].jobs)
            if wanted <= 0 or (first_with_jobs and got[-1].jobs):
                break
        if trouble is not None and not any(f.jobs for f in got):
            raise trouble
        if not got:  # every shard passed over (not `probe`): no jobs, and no word on when
            return wire.Fetch(0, None, [])
        return merged(got)

    def finish_round(self, changes: Sequence[wire.Transition], then_fetch: wire.FetchRequest
                     ) -> tuple[list[wire.Applied], wire.Fetch]:
        """Stores outcomes, a call per shard they are in, the threads' next jobs fetched
        in the call to the shard this process works in; if that shard had none of the
        changes, or not enough jobs, the rest come from a fetch round the shards (after
        the outcomes are stored: its failure only leaves the threads idle)."""
        current = self._turn()
        results: list[wire.Applied] = [wire.Applied(0, "")] * len(changes)
        fetched: list[wire.Fetch] = []
        wanted = then_fetch.max_jobs
        asked_current = False
        for shard, positions in self._by_shard(changes, lambda t: t.job_id):
            here = shard.index == current and wanted > 0
            asked_current = asked_current or here
            ask = msgspec.structs.replace(then_fetch, max_jobs=wanted if here else 0)
            try:
                reply = shard.scripts.call("finish", wire.encode_finish([changes[i] for i in positions], ask,
                                                                        self.retention_s, self.index_cap))
            except TRANSIENT_ERRORS:
                self._failed(shard.index)  # the caller tries again; fetches pass it over meanwhile
                raise
            self._answered(shard.index)
            applied, fetch = wire.decode_finish(reply, len(positions))
            fetched.append(fetch)
            wanted -= len(fetch.jobs)
            for i, a in zip(positions, applied, strict=True):
                results[i] = a
        if wanted > 0:
            try:
                fetched.append(self.fetch_round(msgspec.structs.replace(then_fetch, max_jobs=wanted),
                                                current + 1 if asked_current else current, probe=False))
            except TRANSIENT_ERRORS:
                pass  # the threads go idle; the fetch loop tries again
        return results, merged(fetched)
