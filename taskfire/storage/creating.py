"""Creating jobs, what the sync and the asyncio store share (they differ only in how
they send): when to send creating calls again, what their replies say was stored, and
how one create spread over shards goes shard by shard (`ShardedCreate`).

Ids are made by the client, so a creating call sent again after a dropped connection
says so (`repeated`) and the scripts skip the ids that exist: nothing is created twice.
When not every call was stored, the EnqueueError says which jobs were, which were not,
and which may have been, and its retry() sends the last two again under the same ids.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

import redis

from ..errors import EnqueueError, ReplicationTimeout
from . import wire
from .faults import describe_error
from .scripts import TRANSIENT_ERRORS, Call, SlotMoving
from .wire import NewJob

#: Kinds of trouble (faults.describe_error) that refuse a call before it runs: its jobs
#: were not stored. After any other (no answer, a script error half-way) they may have been.
REFUSED_BEFORE_RUNNING = frozenset({"full", "permission", "read-only", "credentials", "certificate", "tls",
                                    "loading"})

ShardT = TypeVar("ShardT")


def unconfirmed_jobs(earlier: ReplicationTimeout | None, exc: ReplicationTimeout, timeout_ms: int) -> ReplicationTimeout:
    """One ReplicationTimeout for the jobs of every shard whose replicas were late."""
    if earlier is None:
        return exc
    return ReplicationTimeout([*earlier.job_ids, *exc.job_ids], min(earlier.acknowledged, exc.acknowledged),
                              exc.wanted, timeout_ms)


def partly_created(exc: EnqueueError, done: list[str], unsent: list[NewJob], jobs: Sequence[NewJob],
                   retry: Callable[[list[NewJob]], object]) -> EnqueueError:
    """An EnqueueError for a call spread over shards, one of which failed (`exc`): the
    shards before it stored theirs, those after it were not sent (sync or asyncio).
    `retry` gets the jobs not known to be stored."""
    unknown = {*exc.not_stored, *exc.maybe_stored, *(j.id for j in unsent)}
    return EnqueueError(exc.problem, [*done, *exc.stored],
                        [*exc.not_stored, *(j.id for j in unsent)], exc.maybe_stored,
                        lambda: retry([j for j in jobs if j.id in unknown]))



def enqueue_error(groups: Sequence[Sequence[NewJob]], replies: Sequence[Any],
                  retry: Callable[[list[NewJob]], object], timeout: float) -> EnqueueError:
    """The EnqueueError for creating calls (one per group of jobs) some of whose replies
    are errors: which jobs were stored, refused before running, or may have been
    (sync and asyncio alike). `retry` gets the jobs not known to be stored."""
    stored: list[str] = []
    not_stored: list[NewJob] = []
    maybe: list[NewJob] = []
    problem = ""
    for group, reply in zip(groups, replies, strict=True):
        if not isinstance(reply, Exception):
            stored += (j.id for j in group)
            continue
        trouble = describe_error(reply)
        problem = problem or trouble.message
        if isinstance(reply, redis.TimeoutError):
            problem = f"Redis did not answer within {timeout:g} s ({reply})"
        (not_stored if trouble.kind in REFUSED_BEFORE_RUNNING else maybe).extend(group)
    unknown = [*not_stored, *maybe]
    return EnqueueError(problem, stored, [j.id for j in not_stored], [j.id for j in maybe],
                        lambda: retry(unknown))


def retry_pause(exc: BaseException, attempt: int, deadline: float) -> float | None:
    """How long to wait before sending creating calls again after `exc` (sync or asyncio):
    a dropped connection is retried twice, a cluster slot on the move (a failover, a
    resharding: seconds) until the timeout, pauses growing to 0.5 s; None gives up."""
    if isinstance(exc, SlotMoving):
        pause = min(0.05 * 2 ** attempt, 0.5)
    elif isinstance(exc, TRANSIENT_ERRORS) and attempt < 2:
        pause = 0.05 * (attempt + 1)
    else:
        return None
    return pause if time.monotonic() + pause < deadline else None


def created_replies(replies: list[Any], groups: Sequence[Sequence[NewJob]], retry: Callable[[list[NewJob]], object],
                    wait_replicas: int, wait_timeout_ms: int, timeout: float) -> list[Any]:
    """The replies of creating calls (sync or asyncio) when every call stored its jobs and,
    with wait_replicas, the replicas have them (the last reply is WAIT's count); else
    raises ReplicationTimeout or EnqueueError saying which jobs were stored."""
    if wait_replicas:
        *replies, acked = replies
        if acked < wait_replicas:
            raise ReplicationTimeout([j.id for g in groups for j in g], acked, wait_replicas, wait_timeout_ms)
    errors = [r for r in replies if isinstance(r, Exception)]
    if errors:
        raise enqueue_error(groups, replies, retry, timeout) from errors[0]
    return replies


class ShardedCreate(Generic[ShardT]):
    """One create spread over shards, a call per shard in turn, its bookkeeping kept once
    for the sync and the asyncio store (they send each shard's calls and report back):
    a shard whose jobs were stored but not yet confirmed by replicas (ReplicationTimeout)
    does not stop the others, and the create raises it at the end for all of them; a
    shard that failed (EnqueueError) ends the create, and its error then names what the
    shards before it stored and what was not sent."""

    def __init__(self, jobs: Sequence[NewJob], groups: list[tuple[ShardT, list[int]]], chunk: int,
                 repeated: bool, wait_timeout_ms: int, retry: Callable[[list[NewJob]], object]) -> None:
        self.jobs = jobs
        self.groups = groups
        self.chunk = chunk
        self.repeated = repeated
        self.wait_timeout_ms = wait_timeout_ms
        self.retry = retry
        self.duplicates: dict[str, str] = {}
        self.done: list[str] = []
        self.unconfirmed: ReplicationTimeout | None = None

    def steps(self) -> Iterator[tuple[int, ShardT, list[list[NewJob]]]]:
        """Each shard in turn: its position, the shard, its jobs in chunks (a call each)."""
        for g, (shard, positions) in enumerate(self.groups):
            mine = [self.jobs[i] for i in positions]
            yield g, shard, [mine[i:i + self.chunk] for i in range(0, len(mine), self.chunk)]

    def calls(self, parts: list[list[NewJob]]) -> Callable[[bool], list[Call]]:
        """The calls that create these chunks (told whether they are sent again)."""
        return lambda again: [Call("create", wire.encode_create(p, self.repeated or again)) for p in parts]

    def stored(self, parts: list[list[NewJob]], replies: list[Any]) -> None:
        self.done += (j.id for p in parts for j in p)
        for part, reply in zip(parts, replies, strict=True):
            self.duplicates.update(wire.decode_create(reply, part))

    def unconfirmed_by(self, parts: list[list[NewJob]], exc: ReplicationTimeout) -> None:
        self.unconfirmed = unconfirmed_jobs(self.unconfirmed, exc, self.wait_timeout_ms)
        self.done += (j.id for p in parts for j in p)

    def failed(self, g: int, exc: EnqueueError) -> EnqueueError:
        """What to raise when shard `g`'s calls failed: `exc` itself, with its cause, if
        the create had one shard; else an error for the whole, caused by it."""
        if len(self.groups) == 1:
            return exc
        unsent = [self.jobs[i] for _, rest in self.groups[g + 1:] for i in rest]
        error = partly_created(exc, self.done, unsent, self.jobs, self.retry)
        error.__cause__ = exc
        return error

    def result(self) -> dict[str, str]:
        """{id: id of the pending job holding its uniqueness key} for the jobs not created
        for that reason; raises the replicas' lateness, if any shard's were late."""
        if self.unconfirmed is not None:
            raise self.unconfirmed
        return self.duplicates
