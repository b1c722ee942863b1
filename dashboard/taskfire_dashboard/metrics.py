"""The dashboard's Prometheus /metrics: jobs per state, queues (length, paused, age of the
oldest waiting job), outcomes, servers (alive, heartbeat age), and what the workers flush
(run-time histogram and retries per function; see taskfire.server.metrics). A handful of round
trips, however many jobs are stored."""

from __future__ import annotations

from typing import Any

from taskfire import Taskfire
from taskfire.server.metrics import function_metrics

#: Seconds after which a server that stopped beating counts as dead, when it does not say
#: (the worker's default --server-timeout).
DEFAULT_SERVER_TIMEOUT = 30.0


def label(value: object) -> str:
    """A label value in Prometheus' text format: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class Exposition:
    """Lines of the text format, each metric with its HELP and TYPE."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: object) -> None:
        inner = ",".join(f'{k}="{label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{inner}}} {number(value)}" if inner else f"{name} {number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def exposition(tf: Taskfire, counts: dict[str, Any]) -> str:
    """The /metrics page, given this request's counts (data.counts)."""
    out = Exposition()
    out.metric("taskfire_jobs", "gauge", "Jobs per state (Succeeded and Deleted: those still kept).")
    for state, n in counts["states"].items():
        out.sample("taskfire_jobs", n, state=state)
    out.metric("taskfire_queue_length", "gauge", "Jobs waiting per queue.")
    for q in counts["queues"]:
        out.sample("taskfire_queue_length", q["length"], queue=q["name"])
    out.metric("taskfire_jobs_total", "counter", "Outcomes since the store was created.")
    for outcome, n in counts["totals"].items():
        out.sample("taskfire_jobs_total", n, outcome=outcome)
    out.metric("taskfire_servers", "gauge", "Servers registered (dead ones stay until another server's heartbeat removes them).")
    out.sample("taskfire_servers", counts["servers"])

    now_ms = tf.storage.server_time_ms()  # job times are the server's: so is "now"
    out.metric("taskfire_queue_oldest_job_age_seconds", "gauge",
               "Age of the job that runs next in each queue, since it was created (0: the queue is empty).")
    queues = tf.queues.list()
    for q in queues:
        age = max(0.0, now_ms / 1000 - q.oldest_enqueued_at.timestamp()) if q.oldest_enqueued_at else 0.0
        out.sample("taskfire_queue_oldest_job_age_seconds", round(age, 3), queue=q.name)
    out.metric("taskfire_queue_paused", "gauge", "1 while a queue is paused by an operator.")
    for q in queues:
        out.sample("taskfire_queue_paused", int(q.paused), queue=q.name)

    servers = [(s, max(0.0, (now_ms - int(s.get("heartbeat") or 0)) / 1000)) for s in tf.servers()]
    out.metric("taskfire_servers_alive", "gauge", "Servers whose last heartbeat is within their server timeout.")
    out.sample("taskfire_servers_alive", sum(
        1 for s, age in servers if age <= float(s.get("timeout") or DEFAULT_SERVER_TIMEOUT)))
    out.metric("taskfire_server_heartbeat_age_seconds", "gauge", "Seconds since each server's last heartbeat.")
    for s, age in servers:
        out.sample("taskfire_server_heartbeat_age_seconds", round(age, 3), server=s["id"], host=s.get("host", ""))

    functions = function_metrics(tf.storage.monitor.job_metrics())
    out.metric("taskfire_job_duration_seconds", "histogram",
               "Run time of jobs per function, as flushed by workers every --metrics-interval seconds.")
    for f in functions:
        for bound, n in f.buckets:
            out.sample("taskfire_job_duration_seconds_bucket", n, function=f.function, le=number(bound))
        out.sample("taskfire_job_duration_seconds_sum", round(f.sum_seconds, 6), function=f.function)
        out.sample("taskfire_job_duration_seconds_count", f.count, function=f.function)
    out.metric("taskfire_job_retries_total", "counter", "Failed runs that became retries, per function.")
    for f in functions:
        out.sample("taskfire_job_retries_total", f.retries, function=f.function)
    return out.text()
