"""Batches: jobs created together, atomically, with continuations that run when every
member has finished.

    with tf.batch() as b:                  # nothing is stored until the block ends
        for rid in residents:
            b.enqueue(generate_invoice, rid)
        with b.batch() as inner:           # a nested batch is one member of its parent
            inner.enqueue(...)
    tf.continue_batch_with(b.id, send_summary, b.id)

A batch finishes when each member has an outcome: Succeeded, Deleted, or Failed after its
last retry. Its outcome is then `failed` if any member failed (an operator may still
requeue it: the batch reopens, and finishes again later), else `deleted` if any was
deleted, else `succeeded`. Continuations follow the same rules as a job's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import msgspec

from .creation import batch_mark, build, new_job_id, resolve, same_shard
from .errors import ConfigError
from .job import JobFunction
from .records import from_ms
from .states import Scheduled
from .storage import NewBatch, NewJob


class Batch(msgspec.Struct, frozen=True):
    """A batch's progress as stored."""

    id: str
    state: str                 # "Started" or "Finished"
    outcome: str | None        # when finished: "succeeded", "failed" or "deleted"
    total: int
    succeeded: int
    failed: int
    deleted: int
    created_at: datetime | None
    finished_at: datetime | None
    parent_batch_id: str | None

    @property
    def pending(self) -> int:
        """Members without an outcome yet (waiting, scheduled, running or retrying)."""
        return self.total - self.succeeded - self.failed - self.deleted


def build_batch(batch_id: str, h: dict[bytes, bytes]) -> Batch:
    f = {k.decode(): v.decode() for k, v in h.items()}
    return Batch(
        id=batch_id, state=f.get("state", ""), outcome=f.get("outcome"), total=int(f.get("total", 0)),
        succeeded=int(f.get("succeeded", 0)), failed=int(f.get("failed", 0)), deleted=int(f.get("deleted", 0)),
        created_at=from_ms(int(f["created"])) if "created" in f else None,
        finished_at=from_ms(int(f["finished"])) if "finished" in f else None,
        parent_batch_id=f.get("batch"))


class BatchPlan:
    """What a batch builder collects (its jobs, nested batches and continuations) before
    its commit stores them all in one MULTI; BatchBuilder commits with the sync client,
    AsyncBatchBuilder with the asyncio one. `creator.storage` places the batch and its
    members (one shard for all: the MULTI is one slot's)."""

    def __init__(self, creator: Any, parent: BatchPlan | None = None) -> None:
        self.creator = creator
        self.parent = parent
        # placed by the creator's store (sync or asyncio), as its jobs are
        self.id: str = new_job_id() + batch_mark(creator.storage, parent.id if parent else None)
        self.place = same_shard(creator.storage, self.id)  # members live with their batch
        self.jobs: list[NewJob] = []
        self.children: list[BatchPlan] = []
        self.continuations: list[tuple[JobFunction[..., Any] | str, tuple[Any, ...], dict[str, Any], str]] = []
        self.created: list[Callable[[], None]] = []  # client filters' on_created, after the commit
        self.committed = False

    def _discard(self) -> None:
        """A nested batch whose block raised: its parent stores nothing of it."""
        if self.parent is not None and self in self.parent.children:
            self.parent.children.remove(self)

    def _add(self, target: JobFunction[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any],
             due: str = "") -> str:
        if self.committed:
            raise RuntimeError(f"batch {self.id} is already committed")
        new, created = build(resolve(target), args, kwargs, due, {"batch": self.id}, self.place)
        if "unique" in new.fields:
            raise ConfigError(f"{new.fn}: a batch member cannot be unique (a duplicate would never finish its batch)")
        self.jobs.append(new)
        if created:
            self.created.append(created)
        return new.id

    def enqueue(self, target: JobFunction[..., Any] | str, *args: Any, **kwargs: Any) -> str:
        """Adds a job to the batch; returns its id (the job exists once committed)."""
        return self._add(target, args, kwargs)

    def schedule(self, target: JobFunction[..., Any] | str, when: datetime | timedelta | float,
                 *args: Any, **kwargs: Any) -> str:
        return self._add(target, args, kwargs, Scheduled.when(when).due_arg())

    def continue_with(self, target: JobFunction[..., Any] | str, *args: Any, on: str = "succeeded",
                      **kwargs: Any) -> None:
        """A job to run when this batch finishes, created right after the commit."""
        self.continuations.append((target, args, kwargs, on))

    def _plan(self) -> tuple[list[NewBatch], list[NewJob], list[Callable[[], None]], list[BatchPlan]]:
        """Every batch and job to store at the commit, and the builders they came from."""
        if self.parent is not None:
            raise RuntimeError("a nested batch is committed with its outermost batch")
        batches: list[NewBatch] = []
        jobs: list[NewJob] = []
        builders: list[BatchPlan] = []

        def walk(b: BatchPlan, parent: str) -> None:
            batches.append(NewBatch(b.id, len(b.jobs) + len(b.children), parent))
            jobs.extend(b.jobs)
            builders.append(b)
            for c in b.children:
                walk(c, b.id)

        walk(self, "")
        return batches, jobs, [created for b in builders for created in b.created], builders


class BatchBuilder(BatchPlan):
    """Collects a batch's jobs, nested batches and continuations; `commit()` (or the end
    of its `with` block) stores them all in one MULTI. A block that raises stores
    nothing."""

    def __enter__(self) -> BatchBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self._discard()
        elif self.parent is None:
            self.commit()

    def batch(self) -> BatchBuilder:
        """A nested batch: one member of this one, committed with it."""
        child = BatchBuilder(self.creator, self)
        self.children.append(child)
        return child

    def commit(self) -> str:
        """Stores the batch, its nested batches and all their jobs at once; returns its id."""
        batches, jobs, created, builders = self._plan()
        self.creator.create_batches(batches, jobs, created)
        for b in builders:
            b.committed = True
            for target, args, kwargs, on in b.continuations:
                self.creator.continue_job("batch", b.id, target, args, kwargs, on)
        return self.id
