"""How loops ride out trouble (no server): what a Redis error means, and one log line per
change of the process's state, however many loops meet it and however often."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, OutOfMemoryError, ReadOnlyError

from taskfire.backoff import MAX_DELAY, Backoff
from taskfire.storage import describe_error
from taskfire.storage.scripts import SlotMoving

@pytest.mark.parametrize("exc, kind, transient", [
    (redis.ConnectionError("Connection refused"), "unreachable", True),
    (redis.TimeoutError("Timeout reading from socket"), "unreachable", True),
    (redis.BusyLoadingError("Redis is loading the dataset in memory"), "loading", True),
    (AuthenticationError("invalid username-password pair"), "credentials", True),
    (NoPermissionError("this user has no permissions to run the 'fcall' command"), "permission", True),
    (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "full", True),
    (ReadOnlyError("You can't write against a read only replica."), "read-only", True),
    (redis.ConnectionError("Error 1 connecting to h:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                           "failed"), "certificate", True),
    (redis.ResponseError("ERR user_function:12: attempt to compare nil with number"), "refused", False),
    (SlotMoving(), "moving", True),
    (KeyError("a bug"), "bug", False),
])
def test_each_error_has_a_kind_and_says_whether_trying_again_can_help(exc, kind, transient):
    trouble = describe_error(exc)
    assert (trouble.kind, trouble.transient) == (kind, transient)


def test_loops_say_a_change_of_trouble_once_and_the_last_one_back_says_so(caplog):
    caplog.set_level(logging.INFO, logger="taskfire.worker")
    fetch, leases = Backoff("fetch", describe_error), Backoff("leases", describe_error)
    down = redis.ConnectionError("Connection refused")
    for _ in range(5):
        fetch.failed(down)
        leases.failed(down)
    locked = AuthenticationError("invalid username-password pair")
    for _ in range(5):
        fetch.failed(locked)
        leases.failed(locked)
    fetch.ok()
    leases.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "fetch: Redis is unavailable (ConnectionError: Connection refused); retrying",
        "fetch: Redis refused the credentials (invalid username-password pair): check the user and password in "
        "the Redis URL (TASKFIRE_REDIS_URL); retrying until it is fixed",
        "leases: Redis is back",
    ]
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR", "INFO"]


def test_waits_double_up_to_a_cap_and_start_over_once_through():
    b = Backoff("fetch", describe_error)
    delays = [b.failed(redis.ConnectionError("down")) for _ in range(8)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, MAX_DELAY, MAX_DELAY]
    b.ok()
    assert b.failed(redis.ConnectionError("down")) == 0.05


def test_a_bug_is_logged_once_with_its_traceback(caplog):
    caplog.set_level(logging.INFO, logger="taskfire.worker")
    b = Backoff("scheduler")
    stopped = threading.Event()
    stopped.set()  # no real wait
    for _ in range(3):
        try:
            {}["missing"]
        except KeyError as exc:
            b.wait(exc, stopped)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
