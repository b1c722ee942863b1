"""The shard layout: how one store spreads over a Redis Cluster's primaries.

A Lua script touches the keys of one Cluster slot only, so the unit of sharding is a
shard: a key prefix with a hash tag of its own ("{taskfire}:", "{taskfire~3}:"), under
which a whole copy of the key layout (storage/keys.py) lives. Every script works on one
shard, unchanged; a job lives wholly in one shard (record, history, queue place, lease).

    shard 0   the prefix itself: on a single Redis (or Sentinel) it is the only shard,
              so nothing there changes, key names and job ids included. It is also the
              home shard of what is global and low-rate: servers, recurring jobs, job
              metrics, the shard registry.
    shard k   "{tag~j}:" for some j, chosen so that every primary holds a shard (see
              `choose_prefixes`); the list of prefixes is kept in the home shard's
              `shards` list and only ever grows, so a shard's index never changes.

A job's id tells its shard: ids of shard k > 0 end in "~k" (`mark`, `index_of`), so a
call about one job goes straight to its shard, with no lookup.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, Callable, Iterable, Sequence, cast

import redis

from .keys import Keys
from .scripts import Scripts, declared_keys

#: Separates an id from its shard's number, and a tag from the shard's number in it.
MARK = "~"
#: Name of the home shard's list of shard prefixes.
REGISTRY = "shards"


def index_of(any_id: str, count: int) -> int:
    """The shard an id (a job's or a batch's) lives in: the number after its last "~",
    else 0 (every id made for one shard, and every id from before sharding)."""
    mark = any_id.rfind(MARK)
    if mark < 0:
        return 0
    digits = any_id[mark + 1:]
    if not digits.isdigit():
        return 0
    n = int(digits)
    return n if n < count else 0


def mark(shard: int) -> str:
    """What ends the id of a job placed in `shard` ("" for shard 0)."""
    return f"{MARK}{shard}" if shard else ""


def shard_prefix(prefix: str, salt: int) -> str:
    """The prefix "{tag}:" with the tag made "{tag~salt}" (salt 0: the prefix itself)."""
    if not salt:
        return prefix
    start = prefix.find("{")
    end = prefix.find("}", start + 1)
    return f"{prefix[:end]}{MARK}{salt}{prefix[end:]}"


def choose_prefixes(prefix: str, known: Sequence[str], primary_of: Any, primaries: Iterable[str]) -> list[str]:
    """The shard prefixes after `known`: the known ones, then, for each primary that
    holds none of them, the first "{tag~j}" whose slot it serves. `primary_of(key)`
    names the primary that serves a key. Deterministic, so clients that start at once
    agree."""
    chosen = list(known) or [prefix]
    covered = {primary_of(p + REGISTRY) for p in chosen}
    wanted = [p for p in primaries if p not in covered]
    salt = 0
    while wanted and salt < 100_000:
        salt += 1
        candidate = shard_prefix(prefix, salt)
        if candidate in chosen:
            continue
        owner = primary_of(candidate + REGISTRY)
        if owner in wanted:
            wanted.remove(owner)
            chosen.append(candidate)
    return chosen


class Shard:
    """One shard: its keys, and its scripts' calls (routed to its slot on a cluster)."""

    def __init__(self, index: int, client: redis.Redis, cluster: redis.RedisCluster | None, url: str,
                 prefix: str) -> None:
        self.index = index
        self.keys = Keys(prefix)
        self.scripts = Scripts(client, cluster, url, prefix, declared_keys(self.keys))


#: Appends shard prefixes to the registry if it still holds as many as the caller read
#: (else another client grew it first); returns the registry as it is.
_REGISTER = """
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then redis.call('RPUSH', KEYS[1], unpack(ARGV, 2)) end
return redis.call('LRANGE', KEYS[1], 0, -1)
"""


def register_shards(cluster: redis.RedisCluster, prefix: str) -> list[str]:
    """The shards' prefixes on a cluster: those registered in the home shard, and one
    more for each primary that holds none (registered here, only if no other client
    changed the list meanwhile: the list only grows, so indexes in ids stay valid)."""
    key = prefix + REGISTRY
    known = [p.decode() for p in cast(list[bytes], cluster.lrange(key, 0, -1))]
    primaries = sorted(n.name for n in cluster.get_primaries())
    chosen = choose_prefixes(prefix, known, lambda k: cluster.get_node_from_key(k).name, primaries)
    if chosen == known:
        return known
    stored = cluster.eval(_REGISTER, 1, key, str(len(known)), *chosen[len(known):])
    return [p.decode() for p in cast(list[bytes], stored)]


def tie_hash(key: str) -> int:
    """A stable hash of a tie key (a mutex, a limit, a rate, a uniqueness key): the same
    in every process, unlike hash()."""
    return zlib.crc32(key.encode())


def placement(fields: dict[str, bytes | str], count: int, placer: Placer) -> str:
    """What ends the id of a new job with these fields, in a store of `count` shards: a
    job with a limit, mutex, rate or uniqueness key goes to the shard its key hashes to
    (the first of them it has, in that order), so that admitting it stays one script;
    any other job to the shard this process has placed fewest in. One rule for the sync
    and the asyncio store, so that both place a tied job in the same shard."""
    if count == 1:
        return ""
    for name in ("limit", "rate", "unique"):
        tie = fields.get(name)
        if tie:
            return mark(tie_hash(tie if isinstance(tie, str) else tie.decode()) % count)
    return mark(placer.next())


def mark_within(any_id: str, count: int) -> str:
    """What ends the ids of jobs that must live with this job or batch (its
    continuations, its members), in a store of `count` shards."""
    return mark(index_of(any_id, count)) if count > 1 else ""


def group_by_shard(items: Sequence[Any], id_of: Callable[[Any], str], count: int) -> list[tuple[int, list[int]]]:
    """Positions of `items` grouped by the shard their id names, shards in order of first
    appearance: one call per shard for a bulk verb (sync or asyncio)."""
    if count == 1:
        return [(0, list(range(len(items))))]
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(index_of(id_of(item), count), []).append(i)
    return list(groups.items())


class Placer:
    """Where jobs with no tie go: to the shard this process has placed fewest jobs in so
    far. One bulk call is split across the shards, and a skewed mix of queues spreads
    evenly, which neither per-call round-robin nor hashing the queue does."""

    def __init__(self, count: int) -> None:
        self.placed = [0] * count
        self.lock = threading.Lock()

    def grow(self, count: int) -> None:
        with self.lock:
            low = min(self.placed) if self.placed else 0
            self.placed += [low] * (count - len(self.placed))

    def next(self) -> int:
        with self.lock:
            placed = self.placed
            shard = placed.index(min(placed))
            placed[shard] += 1
            return shard
