"""Prometheus metrics (the dashboard's /metrics, fed by real workers) and JSON logs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import datetime

from taskfire_dashboard import create_app
from tests import scale_jobs as jobs
from tests.conftest import ROOT, wait_for, wait_state

MODULES = ("tests.scale_jobs",)
_SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def scrape(tf) -> dict[tuple[str, frozenset], float]:
    """/metrics as {(name, labels): value}; every line must be a comment or a sample."""
    response = create_app(tf).test_client().get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = {}
    for line in response.get_data(as_text=True).splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, labels, value = match.groups()
        samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def histogram(samples, function: str) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets by upper bound, sum, count) of one function's run times."""
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                     if name == "taskfire_job_duration_seconds_bucket" and ("function", function) in labels)
    key = frozenset({("function", function)})
    return (buckets, samples.get(("taskfire_job_duration_seconds_sum", key), 0.0),
            samples.get(("taskfire_job_duration_seconds_count", key), 0.0))


def test_run_times_and_retries_reach_metrics_in_one_flush_when_the_worker_stops(tf, start_worker):
    # Given a worker that flushes its counts only when it stops (the interval is an hour)
    worker = start_worker("--metrics-interval", "3600", modules=MODULES)
    naps = [jobs.nap.enqueue(0.02) for _ in range(5)] + [jobs.nap.enqueue(0.3) for _ in range(2)]
    flaky = [jobs.fails_once.enqueue() for _ in range(2)]
    for jid in naps + flaky:
        wait_state(tf, jid, "Succeeded")
    # Then nothing was written per job ...
    assert histogram(scrape(tf), "tests.scale_jobs:nap") == ([], 0.0, 0.0)

    # ... and when it stops, every run is counted
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    samples = scrape(tf)
    buckets, total, count = histogram(samples, "tests.scale_jobs:nap")
    assert count == 7 and buckets[-1] == (float("inf"), 7)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert dict(buckets)[0.25] <= 5  # the 0.3 s naps are above 0.25 s
    assert total >= 5 * 0.02 + 2 * 0.3
    assert histogram(samples, "tests.scale_jobs:fails_once")[2] == 4  # 2 failed runs, 2 retries that succeeded
    assert samples[("taskfire_job_retries_total", frozenset({("function", "tests.scale_jobs:fails_once")}))] == 2
    assert samples[("taskfire_job_retries_total", frozenset({("function", "tests.scale_jobs:nap")}))] == 0


def test_worker_processes_flush_their_counts_every_interval_while_they_run(tf, start_worker):
    start_worker("--metrics-interval", "0.5", "--processes", "2", modules=MODULES)
    ids = tf.enqueue_many(jobs.nap, [(0.001,)] * 200)
    wait_for(lambda: histogram(scrape(tf), "tests.scale_jobs:nap")[2] == 200, 20,
             "200 runs in the histogram while the worker runs")
    for jid in ids[:5]:
        assert tf.get_job(jid).state == "Succeeded"  # type: ignore[union-attr]


def test_queue_wait_and_servers_alive(tf, start_worker):
    # Given a queue no worker reads, and one a worker empties
    jobs.nap.options(queue="parked").enqueue(0)
    drained = jobs.nap.enqueue(0)
    worker = start_worker(modules=MODULES)
    wait_state(tf, drained, "Succeeded")

    def gauge(name: str, **labels: str) -> float:
        return scrape(tf)[(name, frozenset(labels.items()))]

    # Then the parked job's wait grows, the empty queue waits for nothing
    first = gauge("taskfire_queue_oldest_job_age_seconds", queue="parked")
    assert first >= 0
    wait_for(lambda: gauge("taskfire_queue_oldest_job_age_seconds", queue="parked") > first + 0.2, 10,
             "the parked job's age to grow")
    assert gauge("taskfire_queue_oldest_job_age_seconds", queue="default") == 0
    assert gauge("taskfire_queue_length", queue="parked") == 1
    assert gauge("taskfire_servers_alive") == 1

    # When the worker is killed (it cannot deregister), it stops counting as alive after
    # its server timeout (2 s here)
    worker.kill()
    wait_for(lambda: gauge("taskfire_servers_alive") == 0, 15, "the killed server to stop counting as alive")


def test_json_logs_carry_the_job_id_and_function_on_lines_a_job_writes(tf, start_worker):
    worker = start_worker("--log-format", "json", modules=MODULES)
    jid = jobs.logs_a_line.enqueue("hello")
    wait_state(tf, jid, "Succeeded")
    wait_for(lambda: "the job says hello" in worker.output(), 10, "the job's log line")
    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]  # every line is JSON
    [said] = [e for e in lines if e["message"] == "the job says hello"]
    assert (said["job_id"], said["function"]) == (jid, "tests.scale_jobs:logs_a_line")
    assert (said["level"], said["logger"]) == ("INFO", "tests.scale_jobs")
    assert datetime.fromisoformat(said["time"]).utcoffset() is not None
    started = [e for e in lines if "taking jobs from" in e["message"]]
    assert started and "job_id" not in started[0]  # the worker's own lines are not a job's


def test_a_log_format_that_does_not_exist_is_refused_by_name():
    done = subprocess.run([sys.executable, "-m", "taskfire", "worker", "tests.scale_jobs", "--log-format", "yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "log_format must be text or json, not 'yaml'" in done.stderr
