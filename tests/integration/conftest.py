"""Fixtures of the fault tests: servers of their own, which a test may fill, stop,
lock with a password or put behind TLS (the session's shared servers are never touched)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import redis

from taskfire.embedded import EmbeddedServer
from tests.conftest import SERVERS, start_server


@pytest.fixture(params=SERVERS)
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A throwaway server for this test alone, of each kind."""
    s = start_server(request.param, tmp_path / "own-server")
    yield s
    if s.process is not None and s.process.poll() is None:
        s.process.send_signal(18)  # SIGCONT, should a test have left it stopped
    s.stop()


def admin(server: EmbeddedServer, password: str | None = None) -> redis.Redis:
    """A plain connection for the test's own commands (CONFIG, CLIENT KILL, INFO)."""
    return redis.Redis(port=server.port, password=password)
