"""Library worker processes for `benchmarks.compare`: started each in a session of its
own with output in a log file, stopped with SIGTERM (then SIGKILL) to the whole process
group, and waited on with a bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .peers import Peer

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 10.0
KILL_GRACE_S = 3.0  # for workers known to ignore SIGTERM (Peer.killed_on_stop)


class Timeout(Exception):
    pass


def stop_group(process: subprocess.Popen[Any], grace: float = 10.0, signalled: bool = False) -> bool:
    """SIGTERM to the process group (unless `signalled` already), then SIGKILL to whatever
    is left of it after `grace` seconds. Returns False if it had to kill."""
    pgid = process.pid
    if not signalled:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    stopped = True
    while True:
        process.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            stopped = False
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        time.sleep(0.05)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass
    return stopped


class Workers:
    """A library's worker commands, each in its own session, output in a log file;
    `concurrency`: jobs each process runs at once (None: the library's configuration
    that Peer.workers_note states)."""

    def __init__(self, peer: Peer, log_dir: Path, label: str, warnings: list[str] | None = None,
                 concurrency: int | None = None) -> None:
        self.peer = peer
        self.label = label
        self.warnings = warnings
        self.concurrency = concurrency
        self.log = log_dir / f"{peer.name}-{label}.log"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed = False  # some process ignored SIGTERM for 10 s

    def __enter__(self) -> Workers:  # noqa: PYI034
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONUNBUFFERED": "1", **self.peer.worker_env()}
        if self.concurrency:
            env["BENCH_CONCURRENCY"] = str(self.concurrency)
        with open(self.log, "ab") as out:
            try:
                for argv in self.peer.worker_commands(self.concurrency):
                    out.write(f"$ {' '.join(argv)}\n".encode())
                    out.flush()
                    self.processes.append(subprocess.Popen(
                        argv, cwd=self.peer.worker_cwd(), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True))
            except BaseException:
                self.stop()
                raise
        return self

    def check(self) -> None:
        for p in self.processes:
            if p.poll() is not None:
                raise RuntimeError(f"a {self.peer.name} worker exited with code {p.returncode}; see {self.log}")

    def stop(self) -> None:
        t0 = time.monotonic()
        for p in self.processes:  # all at once, then wait for each
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        expected = self.peer.killed_on_stop  # a known behaviour, stated in the notes: no warning
        grace = KILL_GRACE_S if expected else STOP_GRACE_S
        for p in self.processes:
            if not stop_group(p, grace=grace, signalled=True):
                self.killed = True
                if self.warnings is not None and not expected:
                    self.warnings.append(f"{self.peer.name} {self.label}: a worker did not stop within {grace:.0f} s "
                                         f"of SIGTERM and was killed (see {self.log.name})")
                with open(self.log, "ab") as out:
                    out.write(f"[harness] pid {p.pid} did not stop within {grace:.0f} s of SIGTERM: killed\n".encode())
        if os.environ.get("BENCH_DEBUG"):
            print(f"    ({self.peer.name} workers stopped in {time.monotonic() - t0:.1f} s)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, workers: Workers | None = None,
               poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    checks = 0
    while not predicate():
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        checks += 1
        if workers is not None and checks % 50 == 0:
            workers.check()
        time.sleep(poll)
