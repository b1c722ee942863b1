"""A worker's fetch over several shards: merging the shards' replies, and waiting idle
on all of them at once without polling.

No BLPOP spans Cluster slots, so an idle worker blocks in each shard on that shard's
twin of its wake-up keys (its own wake-up list and its queues' wake lists), a thread per
shard on a connection of its own. The first shard to wake leaves a token in the
worker's own wake-up list of every other shard, which ends their blocks at once; the
worker then fetches round the shards. The cost is one more round trip on waking (the
fetch is not queued behind the BLPOP as it is with one shard) and one more idle
connection per shard per worker process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Sequence

import redis

from .scripts import block_seconds
from .shards import Shard
from .wire import Fetch


def merged(fetches: Sequence[Fetch]) -> Fetch:
    """One fetch made of the shards' fetches: their jobs, the earliest next wake-up."""
    wakes = [f.next_wake_ms for f in fetches if f.next_wake_ms is not None]
    jobs = [j for f in fetches for j in f.jobs]
    return Fetch(fetches[0].now_ms, min(wakes) if wakes and not jobs else None, jobs)


class ShardWaiter:
    """Blocks until a wake-up token arrives in any shard (see the module's docstring)."""

    def __init__(self, shards: Sequence[Shard], client: redis.Redis) -> None:
        self.shards = shards
        self.redis = client
        self.pool: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """`keys` are the home shard's; each shard blocks on its own twins of them.
        Whether a token came (rather than the timeout)."""
        shards = self.shards
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(len(shards), thread_name_prefix="taskfire-shard-wait")
        home = shards[0].keys.prefix
        twins = [[s.keys.prefix + k[len(home):] for k in keys] for s in shards]
        blocks = {self.pool.submit(self._block, s, twins[s.index], timeout): s for s in shards}
        done, pending = wait(blocks, return_when="FIRST_COMPLETED")
        woken = any(f.exception() is None and f.result() for f in done)
        if pending:
            # keys[0] is the worker's own wake-up list: ends the other shards' blocks
            pipe = self.redis.pipeline(transaction=False)
            for f in pending:
                own = twins[blocks[f].index][0]
                pipe.lpush(own, "1")
                pipe.ltrim(own, 0, 0)
            pipe.execute()
            wait(pending)
        for f in blocks:
            if f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return woken

    @staticmethod
    def _block(shard: Shard, keys: list[str], timeout: float) -> bool:
        return shard.scripts.send("BLPOP", *keys, block_seconds(timeout)) is not None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)
