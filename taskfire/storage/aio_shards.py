"""Which shard an asyncio call goes to: AsyncStorage's twin of routing.py, over the same
shard layout (shards.py) and by the same rules, so that a job the asyncio client stores
is placed exactly where the sync client would place it, and found by its id alike.

    new jobs      shards.placement: a tied job (limit, mutex, rate, uniqueness key) in
                  the shard its key hashes to, any other in the shard this process
                  placed fewest in (shards.Placer)
    with another  shards.mark_within: continuations in their parent's shard, batch
                  members in their batch's (creation.same_shard, creation.batch_mark)
    by id         shards.index_of: the shard an id's mark names

The shards are learnt once, when the client is made, by a sync call (`open_shards`):
AsyncTaskfire() is made in sync code (a module, a startup hook) and cannot await, and
the first id it makes must already know how many shards there are (a tie's shard is
its key's hash modulo that number). It is the very call the sync client makes
(shards.register_shards), so both agree on the list, and a primary that holds no shard
yet gets one then. After that the list is only read again, asynchronously, when an id
names a shard this client has not seen (a primary joined since, and a worker or a sync
client registered its shard): the list only grows, so a shard's index never changes,
and placing new jobs over the shards known so far stays correct.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from . import connection
from .aio_scripts import AsyncNodeScripts, AsyncScripts
from .keys import Keys
from .routing import MAX_SHARDS
from .scripts import declared_keys
from .shards import (
    REGISTRY,
    Placer,
    group_by_shard,
    index_of,
    mark_within,
    placement,
    register_shards,
)


class AsyncShard:
    """One shard: its keys, and its scripts' calls (on a cluster, to its slot's primary)."""

    def __init__(self, index: int, scripts: AsyncScripts, keys: Keys) -> None:
        self.index = index
        self.scripts = scripts
        self.keys = keys


def _shard(index: int, client: redis.asyncio.Redis | RedisCluster, url: str, prefix: str) -> AsyncShard:
    keys = Keys(prefix)
    if isinstance(client, RedisCluster):
        return AsyncShard(index, AsyncNodeScripts(client, url, prefix, declared_keys(keys)), keys)
    return AsyncShard(index, AsyncScripts(client, url, prefix, declared_keys(keys)), keys)


def open_shards(client: redis.asyncio.Redis | RedisCluster, url: str, prefix: str,
                socket_timeout: float) -> list[AsyncShard]:
    """The store's shards: one on a single Redis; on a cluster, those of the home shard's
    registry, registered first (a sync call, once: see the module's docstring)."""
    if not isinstance(client, RedisCluster):
        return [_shard(0, client, url, prefix)]
    sync = connection.connect(url, socket_timeout=socket_timeout)
    try:
        prefixes = register_shards(cast(redis.RedisCluster, sync), prefix)
    finally:
        connection.close(sync)
    return [_shard(i, client, url, p) for i, p in enumerate(prefixes)]


class AsyncShardRouting:
    """Routing over `shards` (AsyncStorage sets them, and the rest, in its __init__)."""

    shards: list[AsyncShard]
    redis: redis.asyncio.Redis | RedisCluster
    url: str
    placer: Placer

    @property
    def keys(self) -> Keys:
        """The home shard's keys."""
        return self.shards[0].keys

    @property
    def cluster(self) -> RedisCluster | None:
        return self.redis if isinstance(self.redis, RedisCluster) else None

    def placement(self, fields: dict[str, bytes | str]) -> str:
        """What ends the id of a new job with these fields (shards.placement)."""
        return placement(fields, len(self.shards), self.placer)

    def mark_of(self, any_id: str) -> str:
        """What ends the ids of jobs that must live with this job or batch (call `learn`
        first with an id this client did not make)."""
        return mark_within(any_id, len(self.shards))

    async def learn(self, ids: Iterable[str]) -> None:
        """Reads the shard list again if an id names a shard this client has not seen,
        so that no call about it goes to another shard."""
        if self.cluster is not None and any(index_of(i, MAX_SHARDS) >= len(self.shards) for i in ids):
            await self.refresh_shards()

    async def refresh_shards(self) -> None:
        """Adds the shards registered since (by a worker or a sync client; this client
        registers none after it starts)."""
        stored = await self.redis.lrange(self.keys.prefix + REGISTRY, 0, -1)  # type: ignore[misc]
        prefixes = [p.decode() for p in cast(list[bytes], stored)]
        if len(prefixes) > len(self.shards):
            self.shards = [*self.shards, *(_shard(i, self.redis, self.url, p)
                                           for i, p in enumerate(prefixes) if i >= len(self.shards))]
            self.placer.grow(len(self.shards))

    def shard(self, any_id: str) -> AsyncShard:
        """The shard a job or batch lives in, told by its id (after `learn`)."""
        return self.shards[index_of(any_id, len(self.shards))]

    async def shard_of(self, any_id: str) -> AsyncShard:
        await self.learn([any_id])
        return self.shard(any_id)

    async def by_shard(self, items: Sequence[Any], id_of: Callable[[Any], str]
                       ) -> list[tuple[AsyncShard, list[int]]]:
        """Positions of `items` grouped by shard, shards in order of first appearance."""
        await self.learn(id_of(i) for i in items)
        return [(self.shards[k], positions) for k, positions in group_by_shard(items, id_of, len(self.shards))]
