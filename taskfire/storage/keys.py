"""Every Redis key taskfire uses, and how each state's jobs are indexed: the one place
both are spelled. The Lua library gets the same names from `lua_definitions()` (its `K`
table and `STATE_INDEX`), so Python and the scripts cannot disagree.

A prefix with a hash tag, such as "{taskfire}:", puts every key in one Redis Cluster slot.
"""

from __future__ import annotations

DEFAULT_PREFIX = "taskfire:"

#: Keys with one name under the prefix: attribute -> name.
FIXED = {
    "queues": "queues",                 # set: every queue name ever used
    "schedule": "schedule",             # zset: delayed jobs and retries, score = due time
    "processing": "processing",         # zset: running jobs, score = lease deadline
    "servers": "servers",               # zset: server ids, score = last heartbeat
    "recurring": "recurring",           # zset: recurring job ids, score = next run (+inf: none)
    "recurring_wake": "recurring:wake",  # list: at most one token; idle schedulers block on it
    "paused": "paused-queues",          # set: queues no worker takes from until resumed
    "job_metrics": "job-metrics",       # hash: run-time buckets and retries per function
    "queue_stats": "queue-stats",       # hash: <q>:in, <q>:out, jobs that entered/left each queue
    "batches": "batches",               # list: batch ids, newest first, capped
    "custom_states": "custom-states",   # hash: custom state -> the kind of its index
    "retries": "retries",               # zset: Scheduled jobs waiting for a retry, score = due time
    "failed_functions": "failed-functions",    # hash: function -> its jobs in Failed
    "failed_exceptions": "failed-exceptions",  # hash: exception type -> jobs in Failed with it
    "index_builds": "index-builds",     # hash: index -> how far its backfill got ("done": built)
    "slot_guard": "slot-guard",         # never written: every script call declares it (scripts.py)
}

#: Keys named after something (a job id, a queue, ...): method -> parts, where None
#: stands for each argument in turn.
NAMED: dict[str, tuple[str | None, ...]] = {
    "job": ("job:", None),                        # hash: the job's record
    "history": ("job:", None, ":history"),        # list: JSON state entries, oldest first
    "log": ("job:", None, ":log"),                # list: lines the job logged (bounded)
    "queue": ("queue:", None),                    # list: job ids, pushed left, popped right
    "wake": ("queue:", None, ":wake"),            # list: at most one token; idle workers block on it
    "worker_wake": ("worker:", None, ":wake"),    # list: one worker process's own wake-up
    "state": ("state:", None),                    # a state's index (see STATE_INDEX); name lowercased
    "stat": ("stats:", None),                     # counter; with ":<hour>", an hourly bucket
    "server": ("server:", None),                  # hash: one server's facts
    "batch": ("batch:", None),                    # hash: total, succeeded, failed, deleted, ...
    "batch_jobs": ("batch:", None, ":jobs"),      # list: a batch's members' ids
    "continuations": (None, ":", None, ":continuations"),  # list: jobs awaiting a job/batch
    "outcome": (None, ":", None, ":outcome"),     # list: a token per client waiting for a job/batch's outcome
    "recurring_job": ("recurring-job:", None),    # hash: a recurring job's definition and runs
    "limit": ("limit:", None),                    # zset: jobs holding a limit/mutex, score = lease
    "waiters": ("limit:", None, ":waiters"),      # list: jobs waiting for that limit
    "rate": ("rate:", None),                      # zset: recent starts under a rate limit
    "unique": ("unique:", None),                  # string: the pending job holding a uniqueness key
    "failed_by_function": ("failed-function:", None),    # zset: a function's Failed jobs, score = failed at
    "failed_by_exception": ("failed-exception:", None),  # zset: Failed jobs by exception type, same score
}

#: Names lowercased in their key (state and counter names are written as "Failed").
_LOWERCASED = ("state", "stat")

#: How each built-in state's jobs are indexed:
#:   queue       the job's queue list (per queue, next to run at the right)
#:   schedule    the `schedule` zset by due time
#:   processing  the `processing` zset by lease deadline
#:   zset        state:<name>, a zset by the time the job entered the state
#:   failed      a zset as above, and one per function and per exception type (failed-function:<fn>,
#:               failed-exception:<type>, with their sizes in failed-functions and
#:               failed-exceptions), so failures are found by function or exception at any depth
#:   list        state:<name>, a list capped at the index cap, newest first (final states,
#:               whose jobs expire: a stale id is skipped by readers)
STATE_INDEX = {
    "Enqueued": "queue", "Scheduled": "schedule", "Processing": "processing",
    "Awaiting": "zset", "Failed": "failed", "Succeeded": "list", "Deleted": "list",
}

#: Every index kind (a custom state's is "list" or "zset").
INDEX_KINDS = ("queue", "schedule", "processing", "zset", "failed", "list")

#: Indexes a store written by an older version may lack, and the index each is derived
#: from: `Storage.backfill` builds them in bounded slices (lua/scripts/backfill.lua).
DERIVED_INDEXES = {"retries": "Scheduled", "failed": "Failed"}


def custom_index(final: bool) -> str:
    """A custom state's index kind: a capped list if it is final, else a zset."""
    return "list" if final else "zset"


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queues = prefix + FIXED["queues"]
        self.slot_guard = prefix + FIXED["slot_guard"]
        self.schedule = prefix + FIXED["schedule"]
        self.processing = prefix + FIXED["processing"]
        self.servers = prefix + FIXED["servers"]
        self.recurring = prefix + FIXED["recurring"]
        self.recurring_wake = prefix + FIXED["recurring_wake"]
        self.paused = prefix + FIXED["paused"]
        self.job_metrics = prefix + FIXED["job_metrics"]
        self.queue_stats = prefix + FIXED["queue_stats"]
        self.batches = prefix + FIXED["batches"]
        self.custom_states = prefix + FIXED["custom_states"]
        self.retries = prefix + FIXED["retries"]
        self.failed_functions = prefix + FIXED["failed_functions"]
        self.failed_exceptions = prefix + FIXED["failed_exceptions"]
        self.index_builds = prefix + FIXED["index_builds"]

    def _named(self, kind: str, *names: str) -> str:
        values = iter(names)
        return self.prefix + "".join(part if part is not None else next(values) for part in NAMED[kind])

    def job(self, job_id: str) -> str:
        return self._named("job", job_id)

    def history(self, job_id: str) -> str:
        return self._named("history", job_id)

    def log(self, job_id: str) -> str:
        return self._named("log", job_id)

    def queue(self, name: str) -> str:
        return self._named("queue", name)

    def wake(self, queue: str) -> str:
        return self._named("wake", queue)

    def worker_wake(self, worker_id: str) -> str:
        return self._named("worker_wake", worker_id)

    def state(self, name: str) -> str:
        return self._named("state", name.lower())

    def stat(self, name: str, hour: int | None = None) -> str:
        """A counter, or its hourly bucket (hours since the epoch)."""
        key = self._named("stat", name.lower())
        return key if hour is None else f"{key}:{hour}"

    def server(self, server_id: str) -> str:
        return self._named("server", server_id)

    def batch(self, batch_id: str) -> str:
        return self._named("batch", batch_id)

    def batch_jobs(self, batch_id: str) -> str:
        return self._named("batch_jobs", batch_id)

    def continuations(self, kind: str, parent_id: str) -> str:
        """Jobs awaiting a parent of this kind ("job" or "batch")."""
        return self._named("continuations", kind, parent_id)

    def outcome(self, kind: str, id_: str) -> str:
        """Where a job's (or batch's) outcome leaves a wake-up token for each client
        waiting for it (`tf.wait`, `tf.wait_batch`)."""
        return self._named("outcome", kind, id_)

    def recurring_job(self, recurring_id: str) -> str:
        return self._named("recurring_job", recurring_id)

    def failed_by_function(self, function: str) -> str:
        return self._named("failed_by_function", function)

    def failed_by_exception(self, exception_type: str) -> str:
        return self._named("failed_by_exception", exception_type)


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lua_definitions() -> str:
    """The Lua twin of this module: `K` (key names under PREFIX, which `begin` sets per
    call, then calls `K.name_fixed()`) and `STATE_INDEX`."""
    lines = ["-- Generated from storage/keys.py: every key name, and each state's index kind.",
             "local PREFIX", "local K = {}", "function K.name_fixed()"]
    lines += [f"  K.{attr} = PREFIX .. {_lua_string(name)}" for attr, name in FIXED.items()]
    lines.append("end")
    for kind, parts in NAMED.items():
        params = [f"a{i}" for i, part in enumerate(parts) if part is None]
        pieces = ["PREFIX"]
        names = iter(params)
        for part in parts:
            if part is None:
                name = next(names)
                pieces.append(f"string.lower({name})" if kind in _LOWERCASED else name)
            else:
                pieces.append(_lua_string(part))
        lines.append(f"function K.{kind}({', '.join(params)}) return {' .. '.join(pieces)} end")
    entries = ", ".join(f"{state} = {_lua_string(kind)}" for state, kind in STATE_INDEX.items())
    lines.append(f"local STATE_INDEX = {{ {entries} }}")
    lines.append(f"local function custom_index(final) if final then return {_lua_string(custom_index(True))} "
                 f"else return {_lua_string(custom_index(False))} end end")
    return "\n".join(lines) + "\n"
