"""Every Redis key taskfire uses. `lua/prelude.lua` spells the same names for scripts;
nothing else builds a key."""

from __future__ import annotations


class Keys:
    """Key names under one prefix. A prefix with a hash tag, such as "{taskfire}:", puts
    every key in one Redis Cluster slot."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queues = prefix + "queues"
        self.schedule = prefix + "schedule"
        self.processing = prefix + "processing"
        self.servers = prefix + "servers"
        self.recurring = prefix + "recurring"
        self.recurring_wake = prefix + "recurring:wake"
        self.paused = prefix + "paused-queues"
        self.job_metrics = prefix + "job-metrics"  # run-time buckets and retries per function
        self.queue_stats = prefix + "queue-stats"
        self.batches = prefix + "batches"
        self.custom_states = prefix + "custom-states"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def history(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:history"

    def queue(self, name: str) -> str:
        return f"{self.prefix}queue:{name}"

    def wake(self, queue: str) -> str:
        """At most one token; idle workers of this queue block on it."""
        return f"{self.prefix}queue:{queue}:wake"

    def state(self, name: str) -> str:
        """Index of jobs in a state: a capped list for final states, else a zset."""
        return f"{self.prefix}state:{name.lower()}"

    def stat(self, name: str, hour: int | None = None) -> str:
        """A counter, or its hourly bucket (hours since the epoch)."""
        key = f"{self.prefix}stats:{name.lower()}"
        return key if hour is None else f"{key}:{hour}"

    def server(self, server_id: str) -> str:
        return f"{self.prefix}server:{server_id}"

    def worker_wake(self, worker_id: str) -> str:
        """A worker process's private wake-up list: pushing to it ends its idle wait."""
        return f"{self.prefix}worker:{worker_id}:wake"

    def log(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:log"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    def batch_jobs(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:jobs"

    def continuations(self, kind: str, parent_id: str) -> str:
        """Jobs awaiting a parent of this kind ("job" or "batch")."""
        return f"{self.prefix}{kind}:{parent_id}:continuations"

    def recurring_job(self, recurring_id: str) -> str:
        return f"{self.prefix}recurring-job:{recurring_id}"
