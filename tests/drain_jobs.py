"""Jobs that `drain` runs in the test's own process: they leave their traces in this
module, where only that process can see them."""

from __future__ import annotations

import time

from taskfire import current_job, job

SEEN: list[str] = []
RUNS: dict[str, int] = {}


@job
def remember(tag: str) -> str:
    SEEN.append(tag)
    return f"remembered {tag}"


@job(queue="other")
def remember_elsewhere(tag: str) -> str:
    SEEN.append(tag)
    return tag


@job(retries=2, retry_delays=[0.2])
def fails_once_then_soon(tag: str) -> str:
    RUNS[tag] = RUNS.get(tag, 0) + 1
    if RUNS[tag] == 1:
        raise RuntimeError("first run fails")
    return f"{tag} on run {RUNS[tag]}"


@job(retries=1, retry_delays=[3600])
def fails_once_then_in_an_hour(tag: str) -> str:
    RUNS[tag] = RUNS.get(tag, 0) + 1
    if RUNS[tag] == 1:
        raise RuntimeError("first run fails")
    return f"{tag} on run {RUNS[tag]}"


@job
def fans_out(n: int) -> int:
    """Enqueues `n` more jobs from inside a job (through the drain's client)."""
    for i in range(n):
        remember.enqueue(f"child {i}")
    return n


@job(retries=0)
def sleeps(seconds: float) -> str:
    SEEN.append(f"started {current_job().id}")
    time.sleep(seconds)
    return "woke"


@job(retries=0, timeout=0.3)
def overruns() -> None:
    time.sleep(3)  # never checks its cancellation token


@job
async def remembers_async(tag: str) -> str:
    SEEN.append(tag)
    return tag
