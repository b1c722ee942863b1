"""Fault: signals as process managers send them. systemd's default (KillMode=control-group),
`kill -TERM -PGID` and Ctrl-C signal every process of the group: the server and each of
its worker processes. One delivery to the group is one graceful stop; a second operator
signal, to the main pid or to the group again, still means "stop at once"."""

from __future__ import annotations

import os
import signal
import time

from tests import jobs
from tests.conftest import report, wait_for
from tests.integration.test_resilience import running
from tests.integration.test_worker import settled


def runs(tf, job_id: str) -> int:
    return int(tf.storage.redis.hget(tf.prefix + "test:runs", job_id) or 0)


def test_sigterm_to_the_process_group_lets_a_running_job_finish(tf, start_worker):
    # Given a 3 s job running on a server of two worker processes
    w = start_worker("--processes", "2", "--shutdown-timeout", "20")
    jid = jobs.long_running.enqueue(3)
    running(tf, jid)
    # When the whole process group gets SIGTERM, as systemd sends it
    signalled = time.monotonic()
    os.killpg(w.proc.pid, signal.SIGTERM)
    # Then the server waits for the job: it finishes, once, and the server exits cleanly
    assert w.wait(30) == 0, w.output()
    stopped = time.monotonic() - signalled
    j = tf.get_job(jid)
    assert (j.state, runs(tf, jid)) == ("Succeeded", 1), (j.state, j.reason)
    assert "stopped (0 job(s) returned to their queue)" in w.output()
    assert "stopping at once" not in w.output()
    report(f"group SIGTERM during a 3 s job: it finished once (lost 0, duplicated 0); the server exited "
           f"{stopped:.2f} s after the signal")


def test_a_second_sigterm_to_the_main_pid_stops_at_once(tf, start_worker):
    # Given a long job running under a long shutdown timeout
    w = start_worker("--shutdown-timeout", "60")
    jid = jobs.sleeps_on_first_run.enqueue(60)
    running(tf, jid)
    # When the operator sends SIGTERM to the server twice
    w.signal(signal.SIGTERM)
    wait_for(lambda: "stopping gracefully" in w.output(), 5, "the first signal to be taken")
    signalled = time.monotonic()
    w.signal(signal.SIGTERM)
    # Then the worker stops at once and the job goes back to its queue, to run again later
    assert w.wait(15) == 0, w.output()
    report(f"second SIGTERM to the main pid: the server exited {time.monotonic() - signalled:.2f} s later, "
           f"its job requeued")
    assert tf.get_job(jid).state == "Enqueued", w.output() + str([(e.state, e.reason, e.data) for e in tf.get_job(jid).history])
    start_worker()
    assert settled(tf, jid, timeout=20).result == 2  # lost 0: it ran again, from the start


def test_a_second_sigterm_to_the_process_group_stops_at_once(tf, start_worker):
    # Given a long job running under a long shutdown timeout
    w = start_worker("--processes", "2", "--shutdown-timeout", "60")
    jid = jobs.sleeps_on_first_run.enqueue(60)
    running(tf, jid)
    # When the whole group gets SIGTERM twice
    os.killpg(w.proc.pid, signal.SIGTERM)
    wait_for(lambda: "stopping gracefully" in w.output(), 5, "the first signal to be taken")
    os.killpg(w.proc.pid, signal.SIGTERM)
    # Then it stops at once, the job back in its queue
    assert w.wait(15) == 0, w.output()
    assert tf.get_job(jid).state == "Enqueued", w.output() + str([(e.state, e.reason, e.data) for e in tf.get_job(jid).history])
