"""Job states. A state is a name plus the data recorded when a job enters it.

Every change of state goes through `Taskfire.change_state` (or, inside a worker, the
same script it calls): it checks the expected current state, appends the history entry
and moves the job between Redis structures atomically. Subclass `State` to add custom
states; a state whose `final` is true starts the retention clock.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import msgspec

from .errors import ConfigError

ENQUEUED = "Enqueued"
SCHEDULED = "Scheduled"
PROCESSING = "Processing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
DELETED = "Deleted"
AWAITING = "Awaiting"

#: States in which a job is done: it expires after the retention period.
FINAL_STATES = frozenset({SUCCEEDED, DELETED})

#: The latest time a job may be scheduled for: a datetime cannot hold a later one.
LATEST_DUE = datetime(9999, 12, 31, tzinfo=timezone.utc)

_QUEUE_NAME = re.compile(r"^[a-z0-9_-]{1,100}$")
_STATE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise ConfigError(
            f"invalid queue name {name!r}: use 1-100 lowercase letters, digits, '_' or '-'"
        )
    return name


_entry_encoder = msgspec.json.Encoder()


class State(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A state a job can be moved to. Fields other than `reason` are its data."""

    name: ClassVar[str]
    final: ClassVar[bool] = False
    reason: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is not None and not _STATE_NAME.match(name):
            raise ConfigError(f"state name {name!r} must be a letter then letters, digits or '_'")

    def data(self) -> dict[str, Any]:
        out = msgspec.structs.asdict(self)
        out.pop("reason", None)
        return {k: v for k, v in out.items() if v is not None}

    def entry(self) -> bytes:
        """The history entry as JSON, without its time (the script stamps the server's)."""
        body: dict[str, Any] = {"state": self.name}
        if self.reason:
            body["reason"] = self.reason
        data = self.data()
        if data:
            body["data"] = data
        return _entry_encoder.encode(body)


class Enqueued(State, frozen=True):
    """Waiting in a queue. `queue` None keeps the job's queue; `front` puts it next in line."""

    name: ClassVar[str] = ENQUEUED
    queue: str | None = None
    front: bool = False

    def __post_init__(self) -> None:
        if self.queue is not None:
            check_queue_name(self.queue)

    def data(self) -> dict[str, Any]:
        return {"queue": self.queue} if self.queue else {}


class Scheduled(State, frozen=True):
    """Waiting for a time: an aware datetime, or a delay from the Redis server's now."""

    name: ClassVar[str] = SCHEDULED
    at: datetime | None = None
    delay: float | None = None  # seconds

    def __post_init__(self) -> None:
        if (self.at is None) == (self.delay is None):
            raise ConfigError("Scheduled needs exactly one of at= or delay=")
        if self.at is not None and (not isinstance(self.at, datetime) or self.at.tzinfo is None):
            raise ConfigError(f"Scheduled(at=...) needs an aware datetime, e.g. datetime.now(timezone.utc), "
                              f"not {self.at!r}")
        if self.delay is not None:
            _check_delay(self.delay)
        if self.at is not None:
            try:
                self.at.astimezone(timezone.utc)
            except OverflowError:
                raise ConfigError(f"Scheduled(at={self.at!r}) is past year 9999 in UTC") from None

    @classmethod
    def when(cls, when: datetime | timedelta | float, reason: str | None = None) -> Scheduled:
        """`when`: an aware datetime, a timedelta, or seconds (int or float) from now; up
        to the end of year 9999. Anything else (a string, a bool, None, NaN) is refused."""
        if isinstance(when, datetime):
            return cls(at=when, reason=reason)
        if isinstance(when, timedelta):
            return cls(delay=when.total_seconds(), reason=reason)
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            return cls(delay=float(when), reason=reason)
        raise ConfigError(f"a job is scheduled at an aware datetime, after a timedelta, or after a number of "
                          f"seconds, not {when!r} ({type(when).__name__})")

    def due_arg(self) -> str:
        """The script's form: "+<ms>" from the server's now, or absolute epoch ms."""
        if self.at is not None:
            return str(int(self.at.astimezone(timezone.utc).timestamp() * 1000))
        return f"+{int(round((self.delay or 0) * 1000))}"

    def data(self) -> dict[str, Any]:
        return {}  # the script records the absolute due time


def _check_delay(delay: float) -> None:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or math.isnan(delay):
        raise ConfigError(f"Scheduled(delay=...) takes a number of seconds, not {delay!r}")
    if delay < 0:
        raise ConfigError("Scheduled(delay=...) must not be negative")
    if delay > LATEST_DUE.timestamp() - time.time():
        raise ConfigError(f"a delay of {delay:g} s ends after year 9999, which no date can hold: schedule it "
                          f"sooner (or, for never, do not schedule it)")


class Processing(State, frozen=True):
    """Running on a worker under a lease. Only a worker's fetch enters it."""

    name: ClassVar[str] = PROCESSING


class Succeeded(State, frozen=True):
    name: ClassVar[str] = SUCCEEDED
    final: ClassVar[bool] = True
    duration_ms: float | None = None
    latency_ms: float | None = None
    result_error: str | None = None

    def entry(self) -> bytes:
        """As State.entry, written out for the entry nearly every run ends with (the
        general path costs a few microseconds a job)."""
        duration, latency = self.duration_ms, self.latency_ms
        if self.reason or self.result_error or not isinstance(duration, float) or \
                not (latency is None or isinstance(latency, int)) or not math.isfinite(duration):
            return super().entry()
        if latency is None:
            return b'{"state":"Succeeded","data":{"duration_ms":%r}}' % duration
        return b'{"state":"Succeeded","data":{"duration_ms":%r,"latency_ms":%d}}' % (duration, latency)


class Failed(State, frozen=True):
    """The job raised, or could not run. Not final: it stays until requeued or deleted."""

    name: ClassVar[str] = FAILED
    exception_type: str | None = None
    exception_message: str | None = None
    exception_details: str | None = None


class Awaiting(State, frozen=True):
    """Waiting for a parent job or batch to finish (a continuation). Only
    `continue_with` enters it; it is left for the queue, or Deleted, by the parent."""

    name: ClassVar[str] = AWAITING
    parent: str | None = None


class Deleted(State, frozen=True):
    name: ClassVar[str] = DELETED
    final: ClassVar[bool] = True
    exception_type: str | None = None
    exception_message: str | None = None
    exception_details: str | None = None
