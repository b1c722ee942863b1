"""The `taskfire` command and the embedded server, as a new user meets them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from taskfire import Taskfire
from taskfire.embedded import EmbeddedServer, free_port
from tests import jobs
from tests.conftest import ROOT, wait_for


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskfire", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, **(env or {})))


def dashboard_stats(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def test_up_demo_runs_the_sample_jobs_on_the_embedded_server_with_its_dashboard_and_stops_cleanly(tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "up.log"
    port = free_port()
    with open(out, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "taskfire", "up", "--demo", "--dashboard", f"127.0.0.1:{port}"], cwd=ROOT,
                              env=dict(os.environ, TASKFIRE_DATA_DIR=str(data), PYTHONUNBUFFERED="1"),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = lambda: out.read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "taskfire: running" in text(), 60, "the demo to settle")
        for expected in [r"charge_invoice\(42, 99.5\)\s+=> 'charged invoice 42: 99.50 EUR'",
                         r"sync_inventory\('north'\)\s+Scheduled \(Retry attempt 1 of 3",
                         r"sync_inventory\('north'\)\s+=> 1234",
                         r"nightly_report\(\.\.\.\) in 3 s\s+Enqueued \(Scheduled time reached\)",
                         r"import_file\('prices.csv'\)\s+=> ValueError: prices.csv, line 3"]:
            assert re.search("demo: " + expected, text()), expected
        assert f"taskfire dashboard on http://127.0.0.1:{port}/" in text()
        stats = wait_for(lambda: dashboard_stats(port), 30, "the dashboard to answer")
        assert stats["totals"]["succeeded"] >= 2 and stats["states"]["Failed"] == 1, stats
        state = (data / "server.json").read_text()
        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(30) == 0, text()
        assert dashboard_stats(port) is None  # the dashboard stopped with it
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    assert not (data / "server.json").exists()
    pid = int(state.split('"pid": ')[1].split(",")[0])
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert (data / "appendonlydir").is_dir()


def test_jobs_survive_an_embedded_server_restart(tmp_path):
    server = EmbeddedServer(tmp_path)
    server.start()
    jid = Taskfire(server.url, prefix="p:").enqueue(jobs.add, 1, 2)
    server.stop()
    again = EmbeddedServer(tmp_path)
    again.start()
    try:
        j = Taskfire(again.url, prefix="p:").get_job(jid)
        assert (j.state, j.args) == ("Enqueued", [1, 2])
    finally:
        again.stop()


def test_taskfire_embedded_joins_the_running_server_of_its_data_dir(tmp_path, monkeypatch):
    server = EmbeddedServer(tmp_path)
    server.start()
    try:
        monkeypatch.setenv("TASKFIRE_DATA_DIR", str(tmp_path))
        monkeypatch.setattr(EmbeddedServer, "_shared", None)
        tf = Taskfire("embedded", prefix="p:")
        assert tf.url == server.url
        assert tf.embedded is not None and tf.embedded.process is None  # joined, not started
    finally:
        server.stop()


def test_job_and_stats_commands(tf, server, prefix):
    jid = jobs.add.enqueue(2, 3)
    conn = {"TASKFIRE_REDIS_URL": server.url, "TASKFIRE_PREFIX": prefix}
    shown = run_cli("job", "show", jid, env=conn)
    assert shown.returncode == 0 and "tests.jobs:add" in shown.stdout and "state=Enqueued" in shown.stdout
    assert "queue default" in run_cli("stats", env=conn).stdout
    assert run_cli("job", "delete", jid, env=conn).stdout.strip() == f"deleted {jid}"
    assert tf.get_job(jid).state == "Deleted"
    assert run_cli("job", "requeue", jid, env=conn).returncode == 0
    assert tf.get_job(jid).state == "Enqueued"
    missing = run_cli("job", "show", "nope", env=conn)
    assert missing.returncode == 1 and "no job nope" in missing.stderr


def test_an_unreachable_redis_is_reported_plainly():
    result = run_cli("stats", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 1 and "cannot reach Redis" in result.stderr


@pytest.mark.parametrize("pages, problem", [
    ("examples.waiting_ack", "--pages takes MODULE:FUNCTION, not 'examples.waiting_ack'"),
    ("no_such_module:add_pages", "cannot import 'no_such_module'"),
    ("examples.waiting_ack:nothing_here", "module 'examples.waiting_ack' has no 'nothing_here'"),
    ("examples.waiting_ack:WAITING_PAGE", "'WAITING_PAGE' is not a function"),
])
def test_dashboard_pages_that_cannot_be_loaded_are_named(server, pages, problem):
    r = run_cli("dashboard", "--bind", f"127.0.0.1:{free_port()}", "--pages", pages, "--redis-url", server.url)
    assert r.returncode == 2 and problem in r.stderr, r.stderr


def test_a_misspelt_flag_is_an_error_not_a_guess():
    # --queues is the flag; the URL is unreachable so that a regression cannot start a worker anywhere
    r = run_cli("worker", "tests.jobs", "--queue", "critical", "--redis-url", "redis://127.0.0.1:1/0")
    assert r.returncode == 2 and "unrecognized arguments: --queue" in r.stderr, r.stderr


@pytest.mark.timeout(120)
def test_the_typed_api_is_checked_by_mypy():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context",
                             "tests/typed_usage.py"], cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert all(e.startswith("tests/typed_usage.py:") for e in errors), result.stdout  # taskfire itself is clean
    # typed_usage.py marks each line that must not type-check with "# expect-error"
    expected = [i + 1 for i, line in enumerate((ROOT / "tests/typed_usage.py").read_text().splitlines())
                if "# expect-error" in line]
    assert sorted(int(e.split(":")[1]) for e in errors) == expected, result.stdout


def test_two_dashboards_serve_pages_from_the_current_directory_and_share_no_control_socket(server, tmp_path):
    # Given the installed command (not `python -m`, which puts the current directory on
    # the path by itself), run from the repository as docs/dashboard.md says, twice
    command = Path(sys.executable).with_name("taskfire")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(tmp_path), TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX="cli-dash:")
    ports = [free_port(), free_port()]
    logs = [open(tmp_path / f"dashboard-{n}.log", "wb") for n in range(2)]
    dashboards = [subprocess.Popen([str(command), "dashboard", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                    "--pages", "examples.waiting_ack:add_pages"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT) for port, log in zip(ports, logs)]
    try:
        for port in ports:
            wait_for(lambda: dashboard_stats(port) or any(d.poll() is not None for d in dashboards), 30,
                     "the dashboards to answer")
            assert all(d.poll() is None for d in dashboards), [(tmp_path / f"dashboard-{n}.log").read_text()
                                                               for n in range(2)]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/waiting-ack", timeout=5) as r:
                assert r.status == 200 and "Nothing is waiting for an acknowledgement" in r.read().decode()
        # Then neither opened gunicorn's control socket, one path per user that the other would take over
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        for d in dashboards:
            d.send_signal(signal.SIGTERM)
        for d, log in zip(dashboards, logs):
            assert d.wait(20) == 0
            log.close()


@pytest.mark.parametrize("command", [["dashboard"], ["up", "--data-dir", "/nonexistent/never-used"]])
def test_the_dashboard_without_its_libraries_says_how_to_install_them(command):
    hide = "import sys; sys.modules['humanize'] = None; from taskfire import cli; "
    r = subprocess.run([sys.executable, "-c", hide + f"sys.exit(cli.main({command!r}))"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'taskfire[dashboard]'" in r.stderr and "humanize" in r.stderr, r.stderr
