"""taskfire.testing on real servers: `drain` running jobs in the test's own process, and
the pytest plugin's fixtures, in a pytest run of a project of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from taskfire.testing import drain
from tests import drain_jobs
from tests.conftest import report, wait_for


@pytest.fixture(autouse=True)
def fresh_traces():
    drain_jobs.SEEN.clear()
    drain_jobs.RUNS.clear()


def test_drain_runs_every_queue_in_this_process_with_the_jobs_they_enqueue(tf):
    a = drain_jobs.remember.enqueue("a")
    b = drain_jobs.remember_elsewhere.enqueue("b")
    fan = drain_jobs.fans_out.enqueue(2)
    then = drain_jobs.remember.continue_with(a, "after a")
    drained = drain(tf)
    # the jobs ran here: their traces are in this process's memory
    assert sorted(drain_jobs.SEEN) == sorted(["a", "b", "child 0", "child 1", "after a"])
    assert [tf.get_job(i).state for i in (a, b, fan, then)] == ["Succeeded"] * 4
    assert tf.get_job(a).result == "remembered a" and tf.get_job(then).parent_id == a
    assert len(drained.ran) == 6 and drained.failed == []
    assert [e.state for e in tf.get_job(a).history] == ["Enqueued", "Processing", "Succeeded"]


def test_drain_takes_only_the_queues_it_is_given(tf):
    drain_jobs.remember.enqueue("default")
    other = drain_jobs.remember_elsewhere.enqueue("other")
    drain(tf, queues=["default"])
    assert drain_jobs.SEEN == ["default"] and tf.get_job(other).state == "Enqueued"


def test_a_retry_due_soon_runs_in_the_same_drain(tf):
    job_id = drain_jobs.fails_once_then_soon.enqueue("soon")
    drained = drain(tf)
    job = tf.get_job(job_id)
    assert job.state == "Succeeded" and job.result == "soon on run 2" and job.retry_count == 1
    assert drained.ran == [job_id, job_id] and drained.failed == []


def test_a_retry_an_hour_away_waits_unless_delays_are_skipped(tf):
    later = drain_jobs.fails_once_then_in_an_hour.enqueue("later")
    drained = drain(tf)
    assert tf.get_job(later).state == "Scheduled" and drained.failed == [later]
    now = drain_jobs.fails_once_then_in_an_hour.enqueue("now")
    drained = drain(tf, skip_retry_delays=True)
    job = tf.get_job(now)
    assert job.state == "Succeeded" and job.result == "now on run 2" and drained.failed == []
    assert [e.state for e in job.history] == ["Enqueued", "Processing", "Failed", "Enqueued", "Processing",
                                              "Succeeded"]
    assert tf.get_job(later).state == "Scheduled"  # a job still due later is left alone


def test_async_jobs_run_in_a_drain(tf):
    job_id = drain_jobs.remembers_async.enqueue("async")
    drain(tf)
    assert tf.get_job(job_id).result == "async" and drain_jobs.SEEN == ["async"]


def test_a_job_past_its_own_timeout_fails_as_in_a_worker(tf):
    job_id = drain_jobs.overruns.enqueue()
    drained = drain(tf)
    job = tf.get_job(job_id)
    assert job.state == "Failed" and job.exception.type == "taskfire.errors.JobTimeout"
    assert drained.failed == [job_id]


def test_a_drain_that_times_out_hands_the_running_job_back(tf):
    slow = drain_jobs.sleeps.enqueue(5)
    waiting = drain_jobs.remember.enqueue("never reached")
    with pytest.raises(TimeoutError, match=f"job {slow} .* still ran after 0.5 s; it was handed back"):
        drain(tf, timeout=0.5)
    job = tf.get_job(slow)
    assert job.state == "Enqueued" and job.reason == "Requeued: the drain stopped before the job finished"
    assert tf.job_ids_in_state("Enqueued", queue="default")[0] == slow  # at the front, before `waiting`
    assert tf.get_job(waiting).state == "Enqueued"


def test_ctrl_c_during_a_drain_hands_the_running_job_back(tf):
    slow = drain_jobs.sleeps.enqueue(5)

    def press_ctrl_c() -> None:
        wait_for(lambda: any(s.startswith("started") for s in drain_jobs.SEEN), 10, "the job to start")
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        drain(tf, timeout=30)
    job = tf.get_job(slow)
    assert job.state == "Enqueued" and job.reason == "Requeued: the drain stopped before the job finished"


def test_a_job_this_process_does_not_know_fails_with_a_message_saying_so(tf):
    job_id = tf.enqueue("myapp.nowhere:job")
    drained = drain(tf)
    job = tf.get_job(job_id)
    assert job.state == "Failed" and drained.failed == [job_id]
    assert "'myapp.nowhere:job' is not a @job registered" in job.exception.message


# -- the pytest plugin ------------------------------------------------------------------

PROJECT_TEST = '''
from taskfire.testing import drain
from shop import charge, receipt

def test_charge_then_receipt(tf):
    job_id = charge.enqueue(42, 99.5)
    then = receipt.continue_with(job_id, 42)
    drain(tf)
    assert tf.get_job(job_id).result == "charged 42: 99.50"
    assert tf.get_job(then).result == "receipt for 42"

def test_each_test_has_a_store_of_its_own(tf, taskfire_server):
    assert tf.queue_lengths() == {}
    assert tf.url == taskfire_server.url and tf.prefix.startswith("test-")
'''

SHOP = '''
from taskfire import job

@job
def charge(order: int, amount: float) -> str:
    return f"charged {order}: {amount:.2f}"

@job
def receipt(order: int) -> str:
    return f"receipt for {order}"
'''


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFIRE_", "PYTEST_"))}
    env["PYTHONPATH"] = str(project)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(textwrap.dedent(SHOP))
    (tmp_path / "test_shop.py").write_text(textwrap.dedent(PROJECT_TEST))
    return tmp_path


def test_the_plugin_gives_a_project_a_server_and_a_store_per_test_once_enabled(project):
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntaskfire = true\n")
    done = run_pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    done = run_pytest(project, "-p", "no:taskfire")
    assert done.returncode != 0 and "fixture 'tf' not found" in done.stdout
    report("testing: a project's enqueue → drain → assert tests pass with the plugin's fixtures")


def test_the_plugin_adds_no_fixture_until_enabled(project):
    done = run_pytest(project)
    assert done.returncode != 0 and "fixture 'tf' not found" in done.stdout, done.stdout
    done = run_pytest(project, "--taskfire")
    assert done.returncode == 0, done.stdout + done.stderr
