"""A worker's fetch over several shards: merging the shards' replies, and waiting idle
on all of them at once without polling.

No BLPOP spans Cluster slots, so an idle worker blocks in each shard on that shard's
twin of its wake-up keys (its own wake-up list and its queues' wake lists), a thread per
shard on a connection of its own. The first shard to wake leaves a token in the
worker's own wake-up list of every other shard, which ends their blocks soon after;
the worker fetches at once, from the shard that woke first (the others' blocks are
collected before the next wait). The cost is one more round trip on waking (the fetch
is not queued behind the BLPOP as it is with one shard) and one more idle connection
per shard per worker process.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Collection, Sequence

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
        self.pending: set[Future[bool]] = set()  # blocks told to end, not yet collected
        self.to_end: list[tuple[Future[bool], Shard, str]] = []  # blocks to end, and the key that does it
        # ends them off the fetch's path: the woken shard's jobs go to the threads first
        self.ender = ThreadPoolExecutor(1, thread_name_prefix="taskfire-shard-wake")
        self.ending: Future[None] | None = None

    def wait(self, keys: Sequence[str], timeout: float, skip: Collection[int] = ()) -> int | None:
        """`keys` are the home shard's; each shard blocks on its own twins of them, but
        those in `skip` (whose calls failed lately: a block there would only fail, and
        fail the wait; their jobs are fetched once the timeout passes). The index of a
        shard whose token came, or None if the timeout passed. A block's error is raised
        with the failed shard's index as its `shard_index`."""
        shards = [s for s in self.shards if s.index not in skip] or self.shards
        with self.lock:
            if self.pool is None or self.pool._max_workers < len(shards):  # first use, or shards added
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
                self.pool = ThreadPoolExecutor(len(shards), thread_name_prefix="taskfire-shard-wait")
            pool = self.pool
        self.end_others()
        if self.ending is not None:
            self.ending.result()
        wait(self.pending)  # the last wait's other blocks: ended by their tokens
        self.pending = set()
        home = shards[0].keys.prefix
        twins = {s.index: [s.keys.prefix + k[len(home):] for k in keys] for s in shards}
        blocks = {pool.submit(self._block, s, twins[s.index], timeout): s for s in shards}
        done, pending = wait(blocks, return_when="FIRST_COMPLETED")
        # keys[0] is the worker's own wake-up list: a token there ends a shard's block
        self.pending = set(pending)
        self.to_end = [(f, blocks[f], twins[blocks[f].index][0]) for f in pending]
        for f in done:
            error = f.exception()
            if error is not None:
                error.shard_index = blocks[f].index  # type: ignore[attr-defined]
                raise error
        return next((blocks[f].index for f in done if f.result()), None)

    def end_others(self) -> None:
        """Ends the blocks the last wait left running: pushes a token to each (called once
        the worker fetched, and done on a thread of its own, so that neither the fetch
        nor the handing of its jobs to the threads waits on those round trips; the next
        wait waits for it). A block that ended meanwhile (timed out, or its shard failed)
        gets no token, which would only wake the next wait for nothing.

        A shard that cannot take its token (its primary failing over) is passed by: the
        shards after it would keep blocking, and the next wait would sit out their
        timeout. Its own block fails or times out by itself, and the next wait collects
        it. Shards are tried in order, so a run does not depend on a set's order."""
        to_end, self.to_end = self.to_end, []
        if to_end:
            self.ending = self.ender.submit(self._push_tokens, sorted(to_end, key=lambda item: item[1].index))

    @staticmethod
    def _push_tokens(to_end: list[tuple[Future[bool], Shard, str]]) -> None:
        for block, shard, own in to_end:
            if block.done():
                continue
            try:
                shard.scripts.send("LPUSH", own, "1")
            except redis.RedisError:
                continue

    @staticmethod
    def _block(shard: Shard, keys: list[str], timeout: float) -> bool:
        return shard.scripts.send("BLPOP", *keys, block_seconds(timeout)) is not None

    def close(self) -> None:
        self.ender.shutdown(wait=False)
        if self.pool is not None:
            self.pool.shutdown(wait=False)
