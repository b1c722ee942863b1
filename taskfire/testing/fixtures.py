"""taskfire's pytest fixtures (added by taskfire.testing.plugin when enabled).

    taskfire_server   session: a throwaway embedded Valkey server, started once per test
                      run in a temporary directory, stopped at the end; it never touches
                      a Redis it did not start
    tf                a Taskfire on that server under a key prefix of its own (so tests
                      never see each other's jobs), the default client of `job.enqueue`;
                      its keys are deleted after the test
"""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from taskfire.client import Taskfire
from taskfire.embedded import EmbeddedServer

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def taskfire_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("taskfire-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tf(taskfire_server: EmbeddedServer) -> Iterator[Taskfire]:
    client = Taskfire(taskfire_server.url, prefix=f"test-{next(_prefixes)}:")
    try:
        yield client
    finally:
        client.storage.clear()
        client.close()

