"""Fault: Redis ran an enqueue, but its reply never reached the client (the connection
dropped on the way back). The client sends the call again, saying it is a repeat, and
the script skips the job it already created: the job is stored, and stored once.

A small proxy in front of the test's server forwards every byte, except that, once armed,
it closes the client's connection instead of passing on the reply to the next call that
creates jobs, after Redis has run it."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Iterator

import pytest

from taskfire import AsyncTaskfire, Taskfire
from taskfire.embedded import EmbeddedServer
from taskfire.storage.library import FUNCTIONS
from tests import jobs

CREATE = FUNCTIONS["create"].encode()


class ReplyDroppingProxy:
    """A loopback TCP proxy to a Redis port. `arm()`: the next reply to a request that
    calls the create function is dropped, and that client's connection closed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            doomed = threading.Event()  # this connection's next reply is the one to drop
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        while chunk := _recv(client):
            if CREATE in chunk and self.armed.is_set():
                self.armed.clear()
                doomed.set()
            upstream.sendall(chunk)
        upstream.close()

    def _replies(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        while chunk := _recv(upstream):
            if doomed.is_set():  # Redis has run the call: its reply goes nowhere
                self.dropped += 1
                client.shutdown(socket.SHUT_RDWR)
                client.close()
                upstream.close()
                return
            client.sendall(chunk)
        client.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(server: EmbeddedServer) -> Iterator[ReplyDroppingProxy]:
    p = ReplyDroppingProxy(server.port)
    yield p
    p.close()


def stored_once(tf: Taskfire, job_id: str) -> None:
    """The job is in its queue exactly once, with its record."""
    assert tf.get_job(job_id).state == "Enqueued"
    assert tf.queue_lengths() == {"default": 1}


def test_a_lost_enqueue_reply_is_retried_without_a_duplicate(tf, proxy):
    with Taskfire(f"redis://127.0.0.1:{proxy.port}", prefix=tf.prefix) as client:
        client.storage.scripts.load()
        # Given a proxy that drops the reply to the next enqueue, after Redis ran it
        proxy.arm()
        # When a job is enqueued
        job_id = client.enqueue(jobs.echo, 1)
    # Then the reply was lost, and the client's retry stored nothing twice
    assert proxy.dropped == 1
    stored_once(tf, job_id)


def test_a_lost_enqueue_reply_from_asyncio_is_retried_without_a_duplicate(tf, proxy):
    async def enqueue() -> str:
        async with AsyncTaskfire(f"redis://127.0.0.1:{proxy.port}", prefix=tf.prefix) as atf:
            await atf.storage.scripts.load()
            proxy.arm()
            return await atf.enqueue(jobs.echo, 1)

    # Given a proxy that drops the reply to the next enqueue; When an asyncio client enqueues
    job_id = asyncio.run(enqueue())
    # Then the reply was lost, and the retry stored nothing twice
    assert proxy.dropped == 1
    stored_once(tf, job_id)
