"""Real parts only: each session starts its own throwaway servers on free loopback ports
(the embedded Valkey binary, and Debian's redis-server) and every storage test runs
against each. Workers are real `taskfire worker` processes.

A prerequisite the machine lacks (redis-server, network namespaces, ...) is never dropped
quietly: `prerequisite_missing` fails the test on CI (CI=true, as .ci/run sets) and skips
it elsewhere, both with a message that says what to install."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import pytest
import redis

from taskfire import Taskfire
from taskfire.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ["valkey", "redis"]
_prefixes = itertools.count(1)
_report: list[str] = []


def report(line: str) -> None:
    """A figure for the end of the run (no timing is ever asserted)."""
    _report.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _report:
        terminalreporter.section("taskfire figures")
        for line in _report:
            terminalreporter.write_line(line)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.02) -> Any:
    """Polls until `predicate()` is truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def prerequisite_missing(what: str, install: str) -> NoReturn:
    """Ends a test that cannot run on this machine: a failure on CI, where every
    prerequisite must be there (a skipped module would let CI go green untested), a skip
    elsewhere; both say what to install."""
    message = f"{what}; to run it: {install}"
    if on_ci():
        pytest.fail(f"{message} (CI=true: a missing prerequisite fails the run)", pytrace=False)
    pytest.skip(message)


def start_server(kind: str, data_dir: Path, **kwargs: Any) -> EmbeddedServer:
    binary = None
    if kind == "redis":
        binary = shutil.which("redis-server")
        if binary is None:
            prerequisite_missing("Debian's redis-server is not on PATH", "apt-get install redis-server")
    server = EmbeddedServer(data_dir, binary=binary, **kwargs)
    server.start()
    return server


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    s = start_server(request.param, tmp_path_factory.mktemp(request.param))
    yield s
    s.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{next(_prefixes)}:"


@contextlib.contextmanager
def scoped_client(url: str, prefix: str) -> Iterator[Taskfire]:
    """A client under a test's own prefix; the prefix's keys are removed afterwards (the
    servers are shared by the whole session)."""
    client = Taskfire(url, prefix=prefix)
    try:
        yield client
    finally:
        r = client.storage.redis
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i:i + 1000])
        client.close()


@pytest.fixture
def tf(server: EmbeddedServer, prefix: str) -> Iterator[Taskfire]:
    with scoped_client(server.url, prefix) as client:
        yield client


class WorkerHandle:
    """A `taskfire worker` command running in its own session (process group)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def children(self) -> list[int]:
        """Pids of its worker processes."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def start_worker_on(prefix: str, tmp_path: Path) -> Iterator[Callable[..., WorkerHandle]]:
    """Starts `taskfire worker` processes against a given server URL; kills them after."""
    handles: list[WorkerHandle] = []

    def start(url: str, *args: str, modules: tuple[str, ...] = ("tests.jobs",),
              env: dict[str, str] | None = None, ready: bool = True) -> WorkerHandle:
        log = tmp_path / f"worker-{len(handles)}.log"
        full_env = dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=prefix,
                        TASKFIRE_LEASE_TIMEOUT="2", TASKFIRE_HEARTBEAT_INTERVAL="0.5",
                        TASKFIRE_SERVER_TIMEOUT="2", TASKFIRE_LOG_LEVEL="DEBUG",
                        PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "taskfire", "worker", *modules, *args],
                                    cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        handle = WorkerHandle(proc, log)
        handles.append(handle)
        if ready:
            wait_for(lambda: "taking jobs from" in handle.output() or proc.poll() is not None,
                     20, "the worker to start")
            assert proc.poll() is None, handle.output()
        return handle

    yield start
    for h in handles:
        h.kill()


@pytest.fixture
def start_worker(server: EmbeddedServer, start_worker_on: Callable[..., WorkerHandle]) -> Callable[..., WorkerHandle]:
    """Starts `taskfire worker` processes against the session's server."""
    return lambda *args, **kwargs: start_worker_on(server.url, *args, **kwargs)


def redis_client(server: EmbeddedServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def state_of(tf: Taskfire, job_id: str) -> str | None:
    """A job's state, or None if it does not exist."""
    job = tf.get_job(job_id)
    return job.state if job else None


def wait_state(tf: Taskfire, job_id: str, state: str, timeout: float = 20) -> None:
    wait_for(lambda: state_of(tf, job_id) == state, timeout, f"job {job_id} to be {state}")


def traces(tf: Taskfire, name: str) -> list[str]:
    """What test jobs pushed to their list `test:<name>` (see tests/jobs.py)."""
    return [v.decode() for v in tf.storage.redis.lrange(tf.prefix + "test:" + name, 0, -1)]
