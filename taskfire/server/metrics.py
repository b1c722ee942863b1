"""Job metrics for Prometheus that only workers can see: how long each function's runs take
(a histogram) and how many of its failed runs became retries.

Each worker process counts in memory and adds its counts to one Redis hash every few
seconds (`--metrics-interval`) and when it stops, in one MULTI round trip: a job costs no
Redis call of its own, however many run. A process killed with SIGKILL loses the counts
of its last interval. The dashboard's /metrics reads them with `function_metrics`.

The hash holds, per function, the runs that ended in each bucket ("<fn>|0.25": runs of
0.1 s to 0.25 s; "<fn>|+Inf"), the summed run time in microseconds ("<fn>|sum_us") and
the retries ("<fn>|retries"); bucket bounds are in the field names, so readers need not
know them.
"""

from __future__ import annotations

import bisect
import threading
from typing import Protocol

import msgspec


class MetricsStore(Protocol):
    def add_job_metrics(self, counts: dict[str, int]) -> None: ...

#: Upper bounds of the run-time buckets, in seconds (Prometheus' defaults, stretched to
#: half an hour for long jobs); +Inf is implied.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_BUCKET_NAMES = tuple(f"{b:g}" for b in BUCKETS) + ("+Inf",)


class JobMetrics:
    """One worker process's counts since its last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}

    def observe(self, function: str, seconds: float) -> None:
        """Counts a run of `function` that took `seconds`."""
        bucket = _BUCKET_NAMES[bisect.bisect_left(BUCKETS, seconds)]
        micros = int(seconds * 1_000_000)
        with self._lock:
            pending = self._pending
            pending[f"{function}|{bucket}"] = pending.get(f"{function}|{bucket}", 0) + 1
            pending[f"{function}|sum_us"] = pending.get(f"{function}|sum_us", 0) + micros

    def retried(self, function: str) -> None:
        """Counts a failed run of `function` that became a retry."""
        with self._lock:
            self._pending[f"{function}|retries"] = self._pending.get(f"{function}|retries", 0) + 1

    def flush(self, storage: MetricsStore) -> int:
        """Adds the counts to Redis and starts afresh; returns how many fields it wrote. On
        a Redis error the counts are kept for the next flush, and the error raised."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            storage.add_job_metrics(pending)
        except BaseException:
            with self._lock:
                for field, n in pending.items():
                    self._pending[field] = self._pending.get(field, 0) + n
            raise
        return len(pending)


class FunctionMetrics(msgspec.Struct, frozen=True):
    """One function's runs, as every worker flushed them."""

    function: str
    buckets: list[tuple[float, int]]  # (upper bound in seconds, runs at most that long), +inf last
    count: int                        # runs
    sum_seconds: float                # their total run time
    retries: int                      # failed runs that became retries


def function_metrics(raw: dict[str, int]) -> list[FunctionMetrics]:
    """Every function's run-time histogram (cumulative, as Prometheus wants it) and
    retries, from the job-metrics hash as read (Monitor.job_metrics)."""
    per_function: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        function, _, name = field.rpartition("|")
        if function:
            per_function.setdefault(function, {})[name] = value
    out = []
    for function, values in sorted(per_function.items()):
        runs = dict.fromkeys((*BUCKETS, float("inf")), 0)  # every bucket, even empty ones
        for name, n in values.items():
            if name not in ("sum_us", "retries"):
                runs[float(name)] = runs.get(float(name), 0) + n
        cumulative, total = [], 0
        for bound in sorted(runs):
            total += runs[bound]
            cumulative.append((bound, total))
        out.append(FunctionMetrics(function, cumulative, total, values.get("sum_us", 0) / 1_000_000,
                                   values.get("retries", 0)))
    return out
