"""What each script takes and returns, typed: the only Python that knows the layout of a
script's arguments (ARGV) and of its reply.

Each script's file in `lua/scripts/` opens with the same layout; `encode_*` builds the
arguments after ARGV[1] (the key prefix, which the call adds), `decode_*` reads the
reply. tests/unit/test_wire.py reads every layout back, so a change on one side that
the other does not follow fails there, without a server.

Numbers travel as text; a state set travels as ",A,B," ("" for none); a due time as
"" (now), "+<ms>" (a delay from the server's now) or "<ms>" (epoch milliseconds).
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple, Sequence

import msgspec

Args = list[Any]


# -- creating jobs ------------------------------------------------------------------

class NewJob(msgspec.Struct, frozen=True):
    """A job to create: its record's fields, and where it goes first."""

    id: str
    fn: str
    args: bytes
    queue: str
    opts: bytes = b""
    due: str = ""  # "" now, "+<ms>" after a delay, "<ms>" at an absolute time
    fields: dict[str, bytes | str] = {}  # more for the job hash: parameters, batch, controls


def _job_args(job: NewJob) -> Args:
    args: Args = [job.id, job.fn, job.args, job.queue, job.opts, job.due, len(job.fields)]
    for field, value in job.fields.items():
        args += (field, value)
    return args


def encode_create(jobs: Sequence[NewJob], repeated: bool = False) -> Args:
    """create.lua: repeated ("1": this call is sent again after a dropped connection, so
    ids that exist are skipped), n, then per job: id, fn, args, queue, opts, due, m, m
    field/value pairs."""
    args: Args = ["1" if repeated else "0", len(jobs)]
    for job in jobs:
        args += _job_args(job)
    return args


def decode_create(reply: Sequence[Any], jobs: Sequence[NewJob]) -> dict[str, str]:
    """{id of a job not created: id of the pending job holding its uniqueness key}.
    The reply: created count, then (position, holder id) pairs."""
    return {jobs[int(reply[i]) - 1].id: _text(reply[i + 1]) for i in range(1, len(reply), 2)}


class NewBatch(NamedTuple):
    id: str
    total: int        # members: jobs and nested batches
    parent: str = ""  # the enclosing batch


def encode_batch_open(batches: Sequence[NewBatch], retention_s: int, index_cap: int) -> Args:
    """batch_open.lua: retention, index cap, n, then per batch: id, total, parent."""
    args: Args = [retention_s, index_cap, len(batches)]
    for b in batches:
        args += (b.id, b.total, b.parent)
    return args


def encode_continue(kind: str, parent: str, on: str, job: NewJob, retention_s: int, index_cap: int) -> Args:
    """continue.lua: kind, parent, on, retention, index cap, then the job as create.lua
    takes it (without its due time, which a continuation does not have)."""
    args = _job_args(job)
    del args[5]  # due
    return [kind, parent, on, retention_s, index_cap, *args]


# -- changing state -----------------------------------------------------------------

class Transition(msgspec.Struct, frozen=True):
    """One state change asked for from Python (apply_change in the Lua library)."""

    job_id: str
    state: str
    entries: Sequence[tuple[str, bytes]]  # (state, JSON entry without its time), the new state's last
    expected: Sequence[str] = ()  # the job must be in one of these (empty: any) ...
    unless: Sequence[str] = ()    # ... and in none of these
    token: str = ""               # the lease the caller must hold ("" for none)
    queue: str = ""               # Enqueued: its queue ("" keeps the job's)
    front: bool = False           # Enqueued: next in line
    due: str = ""                 # Scheduled: when
    final: bool = False           # starts the retention clock
    fields: dict[str, bytes | str] = {}  # more fields for the job hash


def _state_set(states: Sequence[str]) -> str:
    return f",{','.join(states)}," if states else ""


def encode_transition(t: Transition, retention_s: int, index_cap: int) -> Args:
    """apply_change: id, expected, unless, token, state, queue, front, due, final,
    retention, index cap, n, n field/value pairs, m, m state/entry pairs."""
    args: Args = [t.job_id, _state_set(t.expected), _state_set(t.unless), t.token, t.state, t.queue,
                  "1" if t.front else "0", t.due, "1" if t.final else "0", retention_s, index_cap,
                  len(t.fields)]
    for field, value in t.fields.items():
        args += (field, value)
    args.append(len(t.entries))
    for state, body in t.entries:
        args += (state, body)
    return args


class Applied(NamedTuple):
    """What became of a Transition: code 1 applied, 0 no such job, -1 not in an expected
    state, -2 the caller's lease is gone; and the state the job was in."""

    code: int
    old: str


def decode_transition(reply: Sequence[Any]) -> Applied:
    return Applied(int(reply[0]), _text(reply[1]))


# -- fetching -----------------------------------------------------------------------

class FetchRequest(msgspec.Struct, frozen=True):
    worker_id: str
    queues: Sequence[str]   # "name" or "name:weight", in priority order
    max_jobs: int
    lease_ms: int
    recoveries_allowed: int
    pass_wake: bool = True  # a full worker leaves a wake-up for the next idle one


def encode_fetch(f: FetchRequest) -> Args:
    """fetch_jobs: worker id, max jobs, lease, recoveries allowed, pass-wake, a random
    seed (for weighted queues), then the queues to the end."""
    seed = random.randint(1, 2**31 - 2) if f.queues and ":" in f.queues[0] else 1
    return [f.worker_id, f.max_jobs, f.lease_ms, f.recoveries_allowed, "1" if f.pass_wake else "0", seed,
            *f.queues]


class FetchedJob(msgspec.Struct, frozen=True):
    id: str
    token: str
    fn: str
    args: bytes
    queue: str
    opts: bytes
    retries: int
    created_ms: int
    fetched_ms: int


class Fetch(NamedTuple):
    now_ms: int
    next_wake_ms: int | None  # when something may become fetchable (a due time, a lease end)
    jobs: list[FetchedJob]


#: Values per job in a fetch reply.
FETCHED_WIDTH = 8


def decode_fetch(reply: Sequence[Any]) -> Fetch:
    """now, next wake-up (-1: none), n, then per job: id, lease token, fn, args, queue,
    opts, retries, created."""
    now, next_wake, n = int(reply[0]), int(reply[1]), int(reply[2])
    jobs = []
    for i in range(3, 3 + n * FETCHED_WIDTH, FETCHED_WIDTH):
        jid, token, fn, args, queue, opts, retries, created = reply[i:i + FETCHED_WIDTH]
        jobs.append(FetchedJob(
            id=_text(jid), token=_text(token), fn=(fn or b"").decode(errors="replace"), args=args or b"",
            queue=_text(queue), opts=opts or b"", retries=int(retries), created_ms=int(created or 0),
            fetched_ms=now))
    return Fetch(now, None if next_wake < 0 else next_wake, jobs)


def encode_finish(changes: Sequence[Transition], then_fetch: FetchRequest, retention_s: int,
                  index_cap: int) -> Args:
    """finish.lua: n, n changes (apply_change's arguments), then fetch_jobs's."""
    args: Args = [len(changes)]
    for t in changes:
        args += encode_transition(t, retention_s, index_cap)
    return args + encode_fetch(then_fetch)


def decode_finish(reply: Sequence[Any], changes: int) -> tuple[list[Applied], Fetch]:
    """(code, previous state) per change, then the fetch reply."""
    n = changes * 2
    return [decode_transition(reply[i:i + 2]) for i in range(0, n, 2)], decode_fetch(reply[n:])


def encode_extend(lease_ms: int, leases: Sequence[tuple[str, str]]) -> Args:
    """extend.lua: lease, then job id / token pairs."""
    args: Args = [lease_ms]
    for job_id, token in leases:
        args += (job_id, token)
    return args


def decode_extend(reply: Sequence[Any]) -> tuple[list[str], list[str]]:
    """(ids no longer held, ids someone asked to cancel)."""
    lost, cancel = reply
    return [_text(i) for i in lost], [_text(i) for i in cancel]


# -- servers ------------------------------------------------------------------------

def encode_heartbeat(server_id: str, timeout_ms: int, facts: dict[str, str]) -> Args:
    """heartbeat.lua: server id, timeout, then field/value pairs."""
    args: Args = [server_id, timeout_ms]
    for k, v in facts.items():
        args += (k, v)
    return args


class Beat(NamedTuple):
    now_ms: int
    dead: list[str]        # servers found dead (and removed)
    quiet_requested: bool  # an operator asked this server to go quiet


def decode_heartbeat(reply: Sequence[Any]) -> Beat:
    now, dead, quiet = reply
    return Beat(int(now), [_text(d) for d in dead], bool(quiet))


# -- recurring jobs -----------------------------------------------------------------

class DueRun(msgspec.Struct, frozen=True):
    """A recurring job claimed for firing: what its scheduler needs to compute the run."""

    id: str
    fn: str
    cron: str
    tz: str
    misfire: str
    next_ms: int


class Claim(NamedTuple):
    now_ms: int
    next_ms: int | None  # the earliest run still pending after the claim
    due: list[DueRun]


def encode_claim(limit: int, claim_ms: int) -> Args:
    return [limit, claim_ms]


#: Values per run in a claim reply.
DUE_WIDTH = 6


def decode_claim(reply: Sequence[Any]) -> Claim:
    """now, earliest next run left (-1: none), n, then per run: id, fn, cron, tz,
    misfire, next."""
    now, head, n = int(reply[0]), int(reply[1]), int(reply[2])
    due = []
    for i in range(3, 3 + n * DUE_WIDTH, DUE_WIDTH):
        rid, fn, cron, tz, misfire, nxt = (_text(v) for v in reply[i:i + DUE_WIDTH])
        due.append(DueRun(rid, fn, cron, tz, misfire, int(nxt)))
    return Claim(now, None if head < 0 else head, due)


def encode_fire(recurring_id: str, expected_ms: int | None, next_ms: int | None, error: str, reason: str,
                jobs: Sequence[tuple[str, int]]) -> Args:
    """recurring_fire.lua: id, expected next run ("" for a run by hand), new next run
    ("" for none), error, reason, n, then job id / tick pairs."""
    args: Args = [recurring_id, "" if expected_ms is None else expected_ms, "" if next_ms is None else next_ms,
                  error, reason, len(jobs)]
    for job_id, tick in jobs:
        args += (job_id, tick)
    return args


# -- waiting for an outcome ----------------------------------------------------------

def encode_wait(kind: str, id_: str) -> Args:
    """wait.lua: kind ('job' or 'batch'), id."""
    return [kind, id_]


#: wait.lua's reply: it has an outcome already, the caller is counted among its waiters,
#: or there is no such job or batch.
HAS_OUTCOME, WAITING, MISSING = 1, 0, -1


def decode_wait(reply: Any) -> int:
    return int(reply)


# -- operators ----------------------------------------------------------------------

def encode_bulk(action: str, limit: int, retention_s: int, index_cap: int, offset: int, *args: str) -> Args:
    """bulk.lua: action, limit, retention, index cap, offset, then the action's own."""
    return [action, limit, retention_s, index_cap, offset, *args]


class Slice(NamedTuple):
    changed: int
    looked_at: int
    next_offset: int


def decode_bulk(reply: Sequence[Any]) -> Slice:
    return Slice(int(reply[0]), int(reply[1]), int(reply[2]))


def encode_backfill(index: str, limit: int) -> Args:
    """backfill.lua: index ("retries" or "failed"), limit (jobs looked at)."""
    return [index, limit]


class Backfill(NamedTuple):
    looked_at: int
    built: bool  # the index is complete: no call is needed any more


def decode_backfill(reply: Sequence[Any]) -> Backfill:
    return Backfill(int(reply[0]), bool(int(reply[1])))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
