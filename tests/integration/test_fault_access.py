"""Fault: Redis refuses access. Credentials it refuses, an ACL that forbids every
command, a TLS certificate the worker does not trust: at start, a clear message and
exit code 2; under a running worker (a password rotated, an ACL changed, a certificate
replaced), one clear line per process, a backoff, and the work goes on once access is
back. TLS itself (rediss:// with a CA file) works end to end.

TLS runs on Debian's redis-server only: the embedded Valkey is built without TLS."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from taskfire import EnqueueError, Taskfire
from taskfire.embedded import EmbeddedServer, free_port
from tests import jobs
from tests.conftest import ROOT, report, start_server, wait_for
from tests.integration.conftest import admin
from tests.integration.test_fault_full_redis import fetches
from tests.integration.test_resilience import states_of

OLD, NEW = "old-secret-4e1f", "new-secret-9c2a"


def retries_logged(w) -> int:
    """Failed tries the worker's loops logged at DEBUG (one line each, after the first)."""
    return w.output().count("next try in")


def said(w, message: str) -> int:
    """Lines above DEBUG that say `message`."""
    return sum(1 for line in w.output().splitlines() if message in line and " DEBUG " not in line)


def url_with(server: EmbeddedServer, userinfo: str) -> str:
    return f"redis://{userinfo}@127.0.0.1:{server.port}/0"


def settle(tf: Taskfire, ids: list[str], timeout: float = 60) -> None:
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) == len(ids), timeout, "every job to succeed")


def test_credentials_refused_at_start_are_a_clear_fatal_error(own_server, prefix, start_worker_on):
    admin(own_server).config_set("requirepass", OLD)
    wrong = url_with(own_server, f":{NEW}")
    # A worker refuses to start, and says why without showing the password
    w = start_worker_on(wrong, ready=False)
    assert w.wait(30) == 2, w.output()
    assert "Redis refused the credentials" in w.output() and "check the user and password" in w.output()
    assert NEW not in w.output() and "Traceback" not in w.output()
    # and so does the dashboard
    dashboard = subprocess.run([sys.executable, "-m", "taskfire", "dashboard", "--redis-url", wrong, "--bind",
                                f"127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dashboard.returncode == 2 and "Redis refused the credentials" in dashboard.stderr, dashboard.stderr
    # and an enqueue says its job was not stored
    with pytest.raises(EnqueueError, match="not stored: Redis refused the credentials"):
        Taskfire(wrong, prefix=prefix).enqueue(jobs.nap)


def test_a_password_rotated_under_a_running_worker_is_one_line_then_work_resumes(own_server, prefix,
                                                                                    start_worker_on):
    r = admin(own_server)
    r.config_set("requirepass", OLD)
    tf = Taskfire(url_with(own_server, f":{OLD}"), prefix=prefix)
    w = start_worker_on(url_with(own_server, f":{OLD}"), "--threads", "2")
    settle(tf, jobs.nap.enqueue_many([()] * 20))
    # When the password is rotated under it (and its connections dropped)
    r.config_set("requirepass", NEW)
    r.client_kill_filter(_type="normal", skipme=True)
    during = Taskfire(url_with(own_server, f":{NEW}"), prefix=prefix)
    ids = jobs.nap.enqueue_many([()] * 20)
    tries = retries_logged(w)
    wait_for(lambda: retries_logged(w) >= tries + 10, 60, "the worker to keep trying")
    # Then it said so once per process (the server's and its worker's), not once per try
    assert 1 <= said(w, "Redis refused the credentials") <= 2, w.output()
    assert states_of(during, ids) == {"Enqueued": 20}
    # and when the password is back, so is the work
    r.config_set("requirepass", OLD)
    back = time.monotonic()
    settle(tf, ids)
    recovered = time.monotonic() - back
    runs = fetches(tf, ids)
    report(f"{own_server.binary.name} password rotated under a running worker: one error line per process; "
           f"restored, its 20 waiting jobs done {recovered:.2f} s later; lost {runs.count(0)}, duplicated "
           f"{sum(1 for n in runs if n > 1)}")
    assert "Redis is back" in w.output() and OLD not in w.output() and NEW not in w.output()
    assert "Traceback" not in w.output() and w.proc.poll() is None


def test_every_loop_outlives_a_redis_that_refuses_every_command(own_server, prefix, start_worker_on):
    # Given a worker whose ACL user may do anything, busy with 200 jobs
    r = admin(own_server)
    r.execute_command("ACL", "SETUSER", "worker", "on", f">{OLD}", "~*", "&*", "+@all")
    url = url_with(own_server, f"worker:{OLD}")
    tf = Taskfire(own_server.url, prefix=prefix)
    w = start_worker_on(url, "--processes", "2", "--threads", "2")
    children = w.children()
    ids = jobs.nap.enqueue_many([(0.02,)] * 200)
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) >= 10, 30, "the workers to get going")
    # When the ACL forbids it every command (heartbeat, fetch, outcomes, leases, metrics, scheduler)
    r.execute_command("ACL", "SETUSER", "worker", "-@all")
    tries = retries_logged(w)
    wait_for(lambda: retries_logged(w) >= tries + 20, 60, "the loops to keep trying")
    # Then every loop keeps trying, quietly: one line per process
    assert 1 <= said(w, "ACL forbids") <= 3, w.output()
    assert w.proc.poll() is None and w.children() == children
    # and when the ACL allows it again, the work goes on
    r.execute_command("ACL", "SETUSER", "worker", "+@all")
    back = time.monotonic()
    settle(tf, ids)
    recovered = time.monotonic() - back
    beat = int(tf.servers()[0]["heartbeat"])
    wait_for(lambda: int(tf.servers()[0]["heartbeat"]) > beat, 10, "the heartbeat")
    runs = fetches(tf, ids)
    report(f"{own_server.binary.name} ACL forbidding every command under 2 worker processes: no process died, "
           f"one line per process; allowed again, all 200 jobs done {recovered:.2f} s later; lost "
           f"{runs.count(0)}, ran again {sum(1 for n in runs if n > 1)} (their leases lapsed meanwhile)")
    assert runs.count(0) == 0
    assert "Traceback" not in w.output()


# -- TLS -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CAs, each with a certificate for 127.0.0.1: 'trusted' (the worker is given its
    CA) and 'untrusted'."""
    d = tmp_path_factory.mktemp("tls")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("trusted", "untrusted"):
        for command in (
            ["req", "-x509", *ec, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem", "-days", "2",
             "-subj", f"/CN=taskfire test {name} CA"],
            ["req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.pem", "-CAkey", f"{name}-ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext.cnf"],
        ):
            subprocess.run(["openssl", *command], cwd=d, check=True, capture_output=True)
    return d


@pytest.fixture
def tls_server(certificates: Path, tmp_path: Path) -> Iterator[tuple[EmbeddedServer, int]]:
    """Debian's redis-server with a TLS port (its certificate the trusted one), and its plain
    port for the test's own commands."""
    s = start_server("redis", tmp_path / "tls-server")
    port = free_port()
    admin(s).execute_command("CONFIG", "SET", "tls-cert-file", str(certificates / "trusted.pem"),
                             "tls-key-file", str(certificates / "trusted.key"),
                             "tls-ca-cert-file", str(certificates / "trusted-ca.pem"), "tls-auth-clients", "no",
                             "tls-port", str(port))
    yield s, port
    s.stop()


def tls_url(port: int, ca: Path) -> str:
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"


def use_certificate(server: EmbeddedServer, certificates: Path, name: str) -> None:
    admin(server).execute_command("CONFIG", "SET", "tls-cert-file", str(certificates / f"{name}.pem"),
                                  "tls-key-file", str(certificates / f"{name}.key"))


def test_tls_with_a_ca_file_runs_jobs_end_to_end(tls_server, certificates, prefix, start_worker_on):
    server, port = tls_server
    url = tls_url(port, certificates / "trusted-ca.pem")
    tf = Taskfire(url, prefix=prefix)
    start_worker_on(url)
    ids = jobs.nap.enqueue_many([()] * 20)
    settle(tf, ids)
    assert tf.get_job(ids[0]).result == "rested"


def test_an_untrusted_certificate_at_start_is_a_clear_fatal_error(tls_server, certificates, start_worker_on):
    server, port = tls_server
    w = start_worker_on(tls_url(port, certificates / "untrusted-ca.pem"), ready=False)
    assert w.wait(30) == 2, w.output()
    assert "Redis's TLS certificate is not trusted" in w.output() and "Traceback" not in w.output()


def test_a_certificate_replaced_under_a_running_worker_is_one_line_then_work_resumes(
        tls_server, certificates, prefix, start_worker_on):
    server, port = tls_server
    url = tls_url(port, certificates / "trusted-ca.pem")
    tf = Taskfire(url, prefix=prefix)
    w = start_worker_on(url, "--threads", "2")
    settle(tf, jobs.nap.enqueue_many([()] * 20))
    # When the server's certificate is replaced by one the worker does not trust (and the
    # worker's connections dropped, so that it must connect again)
    use_certificate(server, certificates, "untrusted")
    admin(server).client_kill_filter(_type="normal", skipme=True)
    plain = Taskfire(server.url, prefix=prefix)
    ids = jobs.nap.enqueue_many([()] * 20)
    tries = retries_logged(w)
    wait_for(lambda: retries_logged(w) >= tries + 10, 60, "the worker to keep trying")
    # Then it said so once per process, and waited
    assert 1 <= said(w, "TLS certificate is not trusted") <= 2, w.output()
    assert states_of(plain, ids) == {"Enqueued": 20}
    # and when the trusted certificate is back, so is the work
    use_certificate(server, certificates, "trusted")
    back = time.monotonic()
    settle(plain, ids)
    recovered = time.monotonic() - back
    runs = fetches(plain, ids)
    report(f"untrusted certificate under a running worker (rediss://): one error line per process; trusted "
           f"one back, its 20 waiting jobs done {recovered:.2f} s later; lost {runs.count(0)}, duplicated "
           f"{sum(1 for n in runs if n > 1)}")
    assert "Redis is back" in w.output() and "Traceback" not in w.output()


def test_a_password_rotated_under_a_running_dashboard_is_a_clear_503_then_it_serves_again(own_server, prefix,
                                                                                          caplog):
    from taskfire_dashboard import create_app

    r = admin(own_server)
    r.config_set("requirepass", OLD)
    web = create_app(url_with(own_server, f":{OLD}"), prefix=prefix).test_client()
    assert web.get("/").status_code == 200
    # When the password is rotated under it (and its connections dropped)
    r.config_set("requirepass", NEW)
    r.client_kill_filter(_type="normal", skipme=True)
    with caplog.at_level(logging.INFO, logger="taskfire.dashboard"):
        pages = [web.get(path) for path in ("/", "/jobs/state/Failed", "/queues", "/")]
        api = web.get("/api/stats")
        # Then every page says what is wrong and how to fix it (a 503 to try again later),
        # never a bare 500, and the log has one line for it, not a traceback per request
        for page in pages:
            assert page.status_code == 503, page.data[:300]
            assert b"Redis is unavailable: Redis refused the credentials" in page.data
            assert b"check the user and password" in page.data and page.headers["Retry-After"] == "5"
        assert api.status_code == 503 and "Redis refused the credentials" in api.get_json()["error"]
        assert not any(OLD.encode() in p.data or NEW.encode() in p.data for p in [*pages, api])
        said = [rec.getMessage() for rec in caplog.records if rec.name == "taskfire.dashboard"]
        assert len(said) == 1 and "Redis refused the credentials" in said[0], said
        assert not any(rec.exc_info for rec in caplog.records), "a traceback was logged"
        # and when the password is back, so are the pages
        r.config_set("requirepass", OLD)
        assert web.get("/").status_code == 200
        assert [rec.getMessage() for rec in caplog.records if rec.name == "taskfire.dashboard"][1:] == ["Redis is back"]
