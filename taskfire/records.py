"""What `Taskfire.get_job` returns: a job as stored, read in one round trip.

Reading is defensive: a field that does not decode (written by hand, by a bug, or a time
past year 9999) reads as empty, and `Job.unreadable` names it and says why, so that one
bad record never breaks a list of jobs or a dashboard page."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import msgspec

from .errors import PayloadError
from .payload import PARAM_PREFIX, decode_args, decode_value
from .states import ENQUEUED, FAILED, FINAL_STATES, PROCESSING, SCHEDULED


T = TypeVar("T")


def from_ms(ms: float | int | None) -> datetime | None:
    """A time in epoch milliseconds, or None (also when a datetime cannot hold it: past
    year 9999, or before year 1)."""
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


class ExceptionInfo(msgspec.Struct, frozen=True):
    type: str
    message: str
    traceback: str | None = None


class _RawEntry(msgspec.Struct):
    state: str
    at: int
    reason: str | None = None
    data: dict[str, Any] = {}
    due: int | None = None


class HistoryEntry(msgspec.Struct, frozen=True):
    """One state the job entered (or was elected into and passed through)."""

    state: str
    at: datetime
    reason: str | None = None
    data: dict[str, Any] = {}
    due: datetime | None = None


class LogLine(msgspec.Struct, frozen=True):
    at: datetime
    line: str


class _RawLogLine(msgspec.Struct):
    at: int
    line: str


_log_decoder = msgspec.json.Decoder(_RawLogLine)


class Job(msgspec.Struct, frozen=True):
    """A job's record: what to run, where it is now, and how it got there."""

    id: str
    function: str
    queue: str
    state: str
    reason: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    due_at: datetime | None
    retry_count: int
    result: Any
    exception: ExceptionInfo | None
    history: list[HistoryEntry]
    options: dict[str, Any] = {}
    payload_error: str | None = None
    recurring_id: str | None = None      # the recurring job that fired it
    recurring_tick: datetime | None = None  # the tick it was fired for
    parent_id: str | None = None         # the job or batch a continuation runs after
    parent_kind: str | None = None       # "job" or "batch"
    continue_on: str | None = None       # "succeeded" or "finished"
    continuations: list[str] = []        # jobs still awaiting this one
    batch_id: str | None = None
    params: dict[str, Any] = {}          # named parameters set on the job
    progress: dict[str, Any] | None = None  # {"done", "total", "fraction"} as last reported
    log: list[LogLine] = []              # lines the job wrote with ctx.log(...)
    unreadable: dict[str, str] = {}      # fields of the record that could not be read, and why

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


_entry_decoder = msgspec.json.Decoder(_RawEntry)


def _exception_of(entries: list[HistoryEntry]) -> ExceptionInfo | None:
    for e in reversed(entries):
        if "exception_type" in e.data:
            return ExceptionInfo(type=str(e.data["exception_type"]),
                                 message=str(e.data.get("exception_message") or ""),
                                 traceback=e.data.get("exception_details"))
    return None


def _param_value(raw: bytes) -> Any:
    try:
        return decode_value(raw)
    except Exception:
        return raw  # written by hand: shown as it is

class _Reader:
    """Reads a job hash's fields, noting each one that cannot be read instead of raising."""

    def __init__(self, fields: dict[bytes, bytes]) -> None:
        self.f = {k.decode(errors="replace"): v for k, v in fields.items()}
        self.unreadable: dict[str, str] = {}

    def read(self, name: str, convert: Callable[[bytes], T], default: T) -> T:
        """A field converted, or `default` if it is absent or cannot be."""
        if name not in self.f:
            return default
        return self.attempt(name, lambda: convert(self.f[name]), default)

    def attempt(self, name: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except Exception as exc:
            self.unreadable[name] = f"{type(exc).__name__}: {exc}"
            return default

    def text(self, name: str) -> str | None:
        return self.f[name].decode(errors="replace") if name in self.f else None

    def time(self, name: str) -> datetime | None:
        return self.read(name, lambda raw: _time(int(raw)), None)


def _time(ms: float | int | None) -> datetime | None:
    """A stored time; ValueError if no datetime can hold it."""
    t = from_ms(ms)
    if t is None and ms is not None:
        raise ValueError(f"{ms} ms is outside the years 1 to 9999")
    return t


def _entry(raw: bytes) -> HistoryEntry:
    e = _entry_decoder.decode(raw)
    return HistoryEntry(state=e.state, at=_time(e.at), reason=e.reason,  # type: ignore[arg-type]
                        data=e.data, due=_time(e.due))


def _log_line(raw: bytes) -> LogLine:
    line = _log_decoder.decode(raw)
    return LogLine(at=_time(line.at), line=line.line)  # type: ignore[arg-type]


def _implied_history(r: _Reader, state: str, due_at: datetime | None) -> list[HistoryEntry]:
    """The history a job's record stands for while it has no history list (see
    storage/lua/lib/states.lua): its creation (Enqueued, or Scheduled with its due time),
    its first run (when it started, on which worker) and its final state's entry."""
    quiet = r.f.get("h", b"")[:1] == b"0"
    first = SCHEDULED if state == SCHEDULED else ENQUEUED
    if not quiet:
        first = state  # a job from before `h`: only its creation can be implied
    entries = []
    created = r.time("created")
    if created is not None:
        entries.append(HistoryEntry(state=first, at=created, data={"queue": r.text("queue") or ""},
                                    due=due_at if first == SCHEDULED else None))
    started = r.time("started") if quiet else None
    if started is not None:
        worker = (r.text("lease") or "").rpartition(":")[0]
        entries.append(HistoryEntry(state=PROCESSING, at=started, data={"worker": worker}))
    done = r.read("done", lambda raw: done_entry(raw, state), None) if quiet else None
    if done is not None:
        entries.append(done)
    return entries


class _RawDone(msgspec.Struct):
    reason: str | None = None
    data: dict[str, Any] = {}
    due: int | None = None


_done_decoder = msgspec.json.Decoder(_RawDone)


def done_entry(done: bytes, state: str) -> HistoryEntry:
    """A final state's entry as a record keeps it: its time in ms, then the entry without
    its time and state (the record's own state), e.g. b'1765000000000{"data":{...}}'."""
    if done.startswith(b"{"):  # a whole entry
        return _entry(done)
    brace = done.index(b"{")
    rest = _done_decoder.decode(done[brace:])
    return HistoryEntry(state=state, at=_time(int(done[:brace])), reason=rest.reason,  # type: ignore[arg-type]
                        data=rest.data, due=_time(rest.due))


def build_job(job_id: str, fields: dict[bytes, bytes], raw_history: list[bytes],
              due_ms: float | None, continuations: list[str] | None = None,
              log_lines: list[bytes] | None = None) -> Job:
    r = _Reader(fields)
    history = [e for i, raw in enumerate(raw_history)
               if (e := r.attempt(f"history[{i}]", lambda: _entry(raw), None)) is not None]  # noqa: B023
    state = r.text("state") or ""
    due_at = r.attempt("due", lambda: _time(due_ms), None)
    if not history and "created" in r.f:
        history = _implied_history(r, state, due_at)
    payload_error = None
    try:
        args, kwargs = decode_args(r.f.get("args", b""))
    except PayloadError as exc:
        args, kwargs, payload_error = [], {}, str(exc)
        r.unreadable["args"] = payload_error
    last = history[-1] if history else None
    finished = state in FINAL_STATES or state == FAILED
    log = [line for i, raw in enumerate(log_lines or [])
           if (line := r.attempt(f"log[{i}]", lambda: _log_line(raw), None)) is not None]  # noqa: B023
    return Job(
        id=job_id,
        function=r.text("fn") or "",
        queue=r.text("queue") or "",
        state=state,
        reason=last.reason if last else None,
        args=args,
        kwargs=kwargs,
        created_at=r.time("created"),
        started_at=r.time("started"),
        finished_at=last.at if finished and last else None,
        due_at=due_at,
        retry_count=r.read("retries", int, 0),
        result=r.read("result", decode_value, None),
        exception=_exception_of(history),
        history=history,
        options=r.read("opts", lambda raw: decode_value(raw) if raw else {}, {}),
        payload_error=payload_error,
        recurring_id=r.text("recurring"),
        recurring_tick=r.time("tick"),
        parent_id=r.text("parent"), parent_kind=r.text("parent_kind"), continue_on=r.text("on"),
        continuations=continuations or [], batch_id=r.text("batch"),
        params={k[len(PARAM_PREFIX):]: _param_value(v) for k, v in r.f.items() if k.startswith(PARAM_PREFIX)},
        progress=r.read("progress", msgspec.json.decode, None),
        log=log,
        unreadable=r.unreadable,
    )
