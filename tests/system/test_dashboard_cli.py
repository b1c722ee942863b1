"""`taskfire dashboard` as an operator runs it: the real command, served by gunicorn,
reached over HTTP. Its warning when bound beyond loopback without credentials,
`--bearer-token`, `--workers`, and the CSRF signing key its gunicorn workers share (and
that TASKFIRE_DASHBOARD_SECRET shares between dashboards)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from taskfire.embedded import free_port
from tests.conftest import ROOT, prerequisite_missing, wait_for

PAGES = "tests.dashboard_pages:add_pid_page"
pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)  # the command is the subject


@dataclass
class Reply:
    status: int
    body: str
    cookie: str | None


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, *, host: str = "127.0.0.1", headers: dict[str, str] | None = None,
                form: dict[str, str] | None = None) -> Reply:
        """One request on a connection of its own (so gunicorn may hand it to any worker)."""
        conn = http.client.HTTPConnection(host, self.port, timeout=10)
        body = urllib.parse.urlencode(form) if form is not None else None
        all_headers = dict(headers or {})
        if body is not None:
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            cookie = response.getheader("Set-Cookie")
            return Reply(response.status, response.read().decode(errors="replace"),
                         cookie.split(";", 1)[0] if cookie else None)
        finally:
            conn.close()

    def workers(self) -> list[int]:
        """Pids of gunicorn's worker processes (the command's children)."""
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def serve(server, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Starts `taskfire dashboard --bind HOST:PORT ...` on the session's server; stops it after."""
    started: list[Served] = []

    def start(*args: str, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"dashboard-{len(started)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFIRE_")}
        full_env.update(TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix, **(env or {}))
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "taskfire", "dashboard", "--bind", f"{host}:{port}",
                                     "--pages", PAGES, *args], cwd=ROOT, env=full_env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        served = Served(proc, port, log)
        started.append(served)
        wait_for(lambda: answers(port) or proc.poll() is not None, 30, "the dashboard to answer")
        assert proc.poll() is None, served.output()
        return served

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait()


def page_and_token(dashboard: Served, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """A page's worker pid, its CSRF token and the session cookie that carries it."""
    page = dashboard.request("GET", "/test/pid", headers=headers)
    assert page.status == 200 and page.cookie, page
    pid = re.search(r'<p id="pid">(\d+)</p>', page.body)
    token = re.search(r'data-csrf="([^"]+)"', page.body)
    assert pid and token, page.body[:500]
    return int(pid.group(1)), token.group(1), page.cookie


def post_with(dashboard: Served, token: str, cookie: str, headers: dict[str, str] | None = None) -> Reply:
    return dashboard.request("POST", "/test/pid/post", headers={"Cookie": cookie, **(headers or {})},
                             form={"csrf": token})


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


WARNING = "without --basic-auth or --bearer-token: only requests from this machine will be served"


def test_bound_beyond_loopback_without_credentials_it_warns_and_serves_only_this_machine(serve):
    # Given dashboards bound to loopback, to every address, and to every address with a token
    local = serve()
    everywhere = serve(host="0.0.0.0")
    guarded = serve("--bearer-token", "t0ken", host="0.0.0.0")
    # Then only the one open beyond loopback without credentials warns, naming its address
    [warned] = [line for line in everywhere.output().splitlines() if WARNING in line]
    assert " WARNING " in warned and f"dashboard bound to 0.0.0.0:{everywhere.port} {WARNING}" in warned
    assert WARNING not in local.output() and WARNING not in guarded.output()
    # ... and it serves this machine, and refuses a request from another address
    assert everywhere.request("GET", "/api/stats").status == 200
    address = non_loopback_address()
    if address is None:
        prerequisite_missing("this machine has no address but loopback to make a non-local request from",
                             "run the tests on a machine with a network interface")
    assert everywhere.request("GET", "/api/stats", host=address).status == 403


def test_a_bearer_token_is_required_of_every_request(serve):
    dashboard = serve("--bearer-token", "s3cr3t-t0ken")
    assert dashboard.request("GET", "/api/stats").status == 403  # configured: local requests need it too
    wrong = {"Authorization": "Bearer nope"}
    assert dashboard.request("GET", "/api/stats", headers=wrong).status == 403
    right = {"Authorization": "Bearer s3cr3t-t0ken"}
    assert dashboard.request("GET", "/api/stats", headers=right).status == 200
    # and an action, with the page's CSRF token, passes with it
    _, token, cookie = page_and_token(dashboard, right)
    assert post_with(dashboard, token, cookie, right).status == 200
    assert post_with(dashboard, token, cookie, wrong).status == 403


def test_gunicorn_workers_share_the_csrf_key_of_their_dashboard(serve):
    # Given a dashboard served by 4 gunicorn worker processes
    dashboard = serve("--workers", "4")
    wait_for(lambda: len(dashboard.workers()) == 4, 20, "4 gunicorn workers")
    # When a page served by one worker gives a CSRF token (in its signed session cookie)
    shown_by, token, cookie = page_and_token(dashboard)
    # Then an action with it is accepted by another worker (each new connection may go to
    # any of them; a worker with a key of its own would refuse the cookie: 400)
    def accepted_elsewhere() -> int | None:
        reply = post_with(dashboard, token, cookie)
        assert reply.status == 200, (reply.status, reply.body[:300])
        return int(reply.body) if int(reply.body) != shown_by else None
    other = wait_for(accepted_elsewhere, 20, "an action served by another gunicorn worker")
    assert other in dashboard.workers() and shown_by in dashboard.workers()


def test_dashboards_given_the_same_secret_accept_each_others_forms(serve):
    # Given two dashboards of their own, and two sharing TASKFIRE_DASHBOARD_SECRET
    alone = [serve("--workers", "1"), serve("--workers", "1")]
    shared = [serve("--workers", "1", env={"TASKFIRE_DASHBOARD_SECRET": "one-key-behind-the-balancer"})
              for _ in range(2)]
    # Then a form from one is refused by the other, unless they share the secret
    _, token, cookie = page_and_token(alone[0])
    assert post_with(alone[0], token, cookie).status == 200
    assert post_with(alone[1], token, cookie).status == 400
    _, token, cookie = page_and_token(shared[0])
    assert post_with(shared[1], token, cookie).status == 200
