"""Which shard a call goes to (storage/shards.py has the layout): `Storage`'s routing
by job or batch id, where new jobs are placed, and growing the shards when the cluster
grows. A mixin of Storage, kept apart so that store.py holds the verbs."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import redis

from .fanout import ShardWaiter
from .keys import Keys
from .monitor import Monitor
from .monitor_shards import ShardedMonitor
from .shards import Placer, Shard, index_of, mark, register_shards, tie_hash

#: How often a worker looks for shards added since it started (a primary joined).
REFRESH_S = 10.0
#: Job ids name at most this many shards.
MAX_SHARDS = 1 << 16


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
        """What ends the id of a new job with these fields (see shards.py): a job with a
        limit, mutex, rate or uniqueness key goes to the shard its key hashes to (the
        first of them it has, in that order), so that admitting it stays one script;
        any other job to the shard this process has placed fewest in."""
        count = len(self.shards)
        if count == 1:
            return ""
        for name in ("limit", "rate", "unique"):
            tie = fields.get(name)
            if tie:
                return mark(tie_hash(tie if isinstance(tie, str) else tie.decode()) % count)
        return mark(self.placer.next())

    def mark_of(self, any_id: str) -> str:
        """What ends the ids of jobs that must live with this job or batch."""
        return mark(index_of(any_id, len(self.shards))) if len(self.shards) > 1 else ""

    def _by_shard(self, items: Sequence[Any], id_of: Callable[[Any], str]) -> list[tuple[Shard, list[int]]]:
        """Positions of `items` grouped by shard, shards in order of first appearance."""
        if len(self.shards) == 1:
            return [(self.shards[0], list(range(len(items))))]
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(index_of(id_of(item), len(self.shards)), []).append(i)
        return [(self.shards[k], positions) for k, positions in groups.items()]

