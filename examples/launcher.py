"""One command per example: the embedded Valkey server, a `taskfire worker` for the
example's jobs, and the example itself in the foreground, until Ctrl-C.

It is `taskfire up` plus what an example needs beside it (a recurring-jobs file and its
environment, settings for the worker): the server is joined if one is already running
for the data directory (TASKFIRE_DATA_DIR), else started here and stopped at the end.
Set TASKFIRE_REDIS_URL to run an example against your own Redis instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Iterator, Mapping, Sequence

from taskfire import Taskfire
from taskfire.embedded import EmbeddedServer


@contextlib.contextmanager
def running(modules: Sequence[str], *, queues: str = "default", threads: int = 4,
            recurring_file: str | None = None, environment: str | None = None,
            env: Mapping[str, str] | None = None, instances: int = 1,
            command: Sequence[str] | None = None) -> Iterator[Taskfire]:
    """Starts the server (unless TASKFIRE_REDIS_URL names one) and `instances` workers
    for `modules` (as if on that many hosts); yields a client; stops them all (the
    workers gracefully) when the block ends. `command`: the worker command, if not
    `taskfire worker` (a framework's own, such as Django's `manage.py taskfire_worker`)."""
    server: EmbeddedServer | None = None
    url = os.environ.get("TASKFIRE_REDIS_URL", "")
    if not url or url == "embedded":
        server = EmbeddedServer()
        if server.join():
            url, server = server.url, None  # someone else's: leave it running
        else:
            url = server.start()
        print(f"taskfire: embedded Valkey at {url}", flush=True)
    args = [*(command or (sys.executable, "-m", "taskfire", "worker")), *modules, "--queues", queues,
            "--threads", str(threads)]
    if recurring_file:
        args += ["--recurring-file", recurring_file]
    if environment:
        args += ["--environment", environment]
    # The example's output first: the workers log warnings (a retry, say) unless
    # TASKFIRE_LOG_LEVEL says otherwise. Each worker has its own session: the terminal's
    # Ctrl-C reaches only this process, which then asks them to stop once (a second
    # signal would stop them at once).
    worker_env = {"TASKFIRE_LOG_LEVEL": "WARNING", **os.environ, **(env or {}), "TASKFIRE_REDIS_URL": url}
    workers = [subprocess.Popen(args, env=worker_env, start_new_session=True) for _ in range(instances)]
    os.environ["TASKFIRE_REDIS_URL"] = url  # for the example's own clients, too
    tf = Taskfire(url)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C (docker stop, systemd, kill)
    try:
        yield tf
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        tf.close()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if server is not None:
            server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
