"""The dashboard's Prometheus /metrics: jobs per state, queues (length, paused, age of the
oldest waiting job), outcomes, jobs waiting for a retry, servers (alive, heartbeat age),
and what the workers flush (run-time histogram and retries per function; see
taskfire.server.metrics). A handful of round trips, however many jobs are stored.

Written with prometheus-client: one collector reads the store at each scrape, into a
registry of its own, so nothing is kept between scrapes and gunicorn's processes need no
multiprocess mode (every figure lives in Redis, not in a process). Served in Prometheus'
text format 0.0.4: its `taskfire_jobs` gauge and `taskfire_jobs_total` counter would be
one family twice in OpenMetrics.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from taskfire import Taskfire
from taskfire.server.metrics import function_metrics

#: Seconds after which a server that stopped beating counts as dead, when it does not say
#: (the worker's default --server-timeout).
DEFAULT_SERVER_TIMEOUT = 30.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    """The store's figures, read when Prometheus scrapes."""

    def __init__(self, tf: Taskfire, counts: dict[str, Any]) -> None:
        self.tf = tf
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts, tf = self.counts, self.tf
        jobs = GaugeMetricFamily("taskfire_jobs", "Jobs per state (Succeeded and Deleted: every job that got there).",
                                 labels=["state"])
        for state, n in counts["states"].items():
            jobs.add_metric([state], n)
        yield jobs
        yield GaugeMetricFamily("taskfire_retries_waiting", "Jobs that failed and wait for their next attempt.",
                                value=counts["retries"])
        length = GaugeMetricFamily("taskfire_queue_length", "Jobs waiting per queue.", labels=["queue"])
        for q in counts["queues"]:
            length.add_metric([q["name"]], q["length"])
        yield length
        outcomes = CounterMetricFamily("taskfire_jobs", "Outcomes since the store was created.", labels=["outcome"])
        for outcome, n in counts["totals"].items():
            outcomes.add_metric([outcome], n)
        yield outcomes
        yield GaugeMetricFamily("taskfire_servers", "Servers registered (dead ones stay until another server's "
                                "heartbeat removes them).", value=counts["servers"])
        yield from self._queues(tf)
        yield from self._servers(tf)
        yield from self._functions(tf)

    def _queues(self, tf: Taskfire) -> Iterator[Metric]:
        now_ms = tf.storage.server_time_ms()  # job times are the server's: so is "now"
        age = GaugeMetricFamily("taskfire_queue_oldest_job_age_seconds", "Age of the job that runs next in each "
                                "queue, since it was created (0: the queue is empty).", labels=["queue"])
        paused = GaugeMetricFamily("taskfire_queue_paused", "1 while a queue is paused by an operator.",
                                   labels=["queue"])
        for q in tf.queues.list():
            oldest = q.oldest_enqueued_at
            age.add_metric([q.name], round(max(0.0, now_ms / 1000 - oldest.timestamp()), 3) if oldest else 0.0)
            paused.add_metric([q.name], int(q.paused))
        yield age
        yield paused

    def _servers(self, tf: Taskfire) -> Iterator[Metric]:
        now_ms = tf.storage.server_time_ms()
        servers = [(s, max(0.0, (now_ms - int(s.get("heartbeat") or 0)) / 1000)) for s in tf.servers()]
        yield GaugeMetricFamily("taskfire_servers_alive", "Servers whose last heartbeat is within their server "
                                "timeout.", value=sum(1 for s, age in servers
                                                      if age <= float(s.get("timeout") or DEFAULT_SERVER_TIMEOUT)))
        beat = GaugeMetricFamily("taskfire_server_heartbeat_age_seconds", "Seconds since each server's last "
                                 "heartbeat.", labels=["server", "host"])
        for s, age in servers:
            beat.add_metric([s["id"], s.get("host", "")], round(age, 3))
        yield beat

    def _functions(self, tf: Taskfire) -> Iterator[Metric]:
        functions = function_metrics(tf.storage.monitor.job_metrics())
        runs = HistogramMetricFamily("taskfire_job_duration_seconds", "Run time of jobs per function, as flushed by "
                                     "workers every --metrics-interval seconds.", labels=["function"])
        retries = CounterMetricFamily("taskfire_job_retries", "Failed runs that became retries, per function.",
                                      labels=["function"])
        for f in functions:
            buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in f.buckets]
            runs.add_metric([f.function], buckets, round(f.sum_seconds, 6))
            retries.add_metric([f.function], f.retries)
        yield runs
        yield retries


def exposition(tf: Taskfire, counts: dict[str, Any]) -> bytes:
    """The /metrics page, given this request's counts (data.counts)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(tf, counts))
    return generate_latest(registry)
