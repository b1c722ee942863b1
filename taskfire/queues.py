"""Queue control and bulk actions for operators: pause, resume, move, purge; requeue or
delete every job in a state. Each runs server-side in bounded slices (bulk.lua): no call
holds Redis for long, and none costs a round trip per job.

    tf.queues.pause("critical")          # keeps accepting jobs; no worker takes from it (even before its first)
    tf.queues.resume("critical")         # idle workers wake at once
    tf.queues.list()                     # length, paused, oldest job's age, jobs in/out
    tf.queues.move("default", "low")     # every waiting job, in order
    tf.queues.purge("low")               # every waiting job deleted
    tf.requeue_all("Failed", function="myapp.jobs:sync", exception="TimeoutError")
    tf.delete_all("Scheduled")
    tf.requeue_all("Scheduled", only_retries=True)   # every job waiting for a retry, now
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import msgspec

from .errors import ConfigError
from .records import from_ms
from .states import ENQUEUED, SCHEDULED, check_queue_name
from .storage import Storage

#: Jobs one script call looks at.
SLICE = 1000


class BulkResult(NamedTuple):
    changed: int     # jobs moved to their new state (or queue)
    looked_at: int   # jobs examined
    calls: int       # script calls (round trips) it took


class QueueInfo(msgspec.Struct, frozen=True):
    name: str
    length: int                       # jobs waiting
    paused: bool
    oldest_enqueued_at: datetime | None  # when the next job to run was created
    jobs_in: int                      # jobs that entered the queue, ever
    jobs_out: int                     # jobs workers took from it, ever


def run_bulk(storage: Storage, action: str, *args: str) -> BulkResult:
    """Runs an action slice by slice until a slice finds nothing left, in each shard in
    turn (a job never leaves its shard, so each shard's part is done by its own slices;
    the action is not atomic across shards, nor is it within one: see bulk.lua)."""
    changed = looked = calls = 0
    for shard in range(len(storage.shards)):
        position = 0
        while True:
            c, n, position = storage.bulk(action, SLICE, position, *args, shard=shard)
            changed, looked, calls = changed + c, looked + n, calls + 1
            if n == 0:
                break
    return BulkResult(changed, looked, calls)


def bulk_by_state(storage: Storage, action: str, state: str, function: str | None,
                  exception: str | None, queue: str | None, only_retries: bool = False) -> BulkResult:
    if not isinstance(state, str) or not state:
        raise ConfigError("name the state, e.g. 'Failed'")
    state = state[0].upper() + state[1:]
    if state == ENQUEUED:
        raise ConfigError("jobs waiting in a queue are handled per queue: use tf.queues.purge() or move()")
    if only_retries and state != SCHEDULED:
        raise ConfigError(f"only_retries picks Scheduled jobs waiting for a retry: pass state='Scheduled', "
                          f"not {state!r}")
    return run_bulk(storage, action, state, function or "", exception or "", queue or "",
                    "retries" if only_retries else "", str(storage.server_time_ms()))


class Queues:
    """`tf.queues`: the queues under one client's prefix."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _known(self, name: str) -> str:
        check_queue_name(name)
        if not self.storage.queue_known(name):
            raise ConfigError(f"unknown queue {name!r}: no job was ever enqueued to it")
        return name

    def list(self) -> list[QueueInfo]:
        return [QueueInfo(f.name, f.length, f.paused, from_ms(f.oldest_created_ms), f.jobs_in, f.jobs_out)
                for f in self.storage.monitor.queue_facts()]

    def pause(self, name: str) -> bool:
        """Stops every worker taking from the queue (it keeps accepting jobs); False if it
        was paused already. A queue no job has used yet can be paused too, ahead of a
        maintenance window: it is listed from then on."""
        return self.storage.set_paused(check_queue_name(name), True)

    def resume(self, name: str) -> bool:
        """Lets workers take from the queue again, waking idle ones at once."""
        return self.storage.set_paused(self._known(name), False)

    def move(self, source: str, target: str) -> BulkResult:
        """Moves every job waiting in `source` to the back of `target`, oldest first."""
        self._known(source)
        check_queue_name(target)
        if source == target:
            raise ConfigError(f"cannot move queue {source!r} to itself")
        return run_bulk(self.storage, "move", source, target)

    def purge(self, name: str) -> BulkResult:
        """Deletes every job waiting in the queue (each with a reason in its history)."""
        return run_bulk(self.storage, "purge", self._known(name))
