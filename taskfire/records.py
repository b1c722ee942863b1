"""What `Taskfire.get_job` returns: a job as stored, read in one round trip."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec

from .errors import PayloadError
from .payload import PARAM_PREFIX, decode_args, decode_value
from .states import ENQUEUED, FAILED, FINAL_STATES, PROCESSING, SCHEDULED


def from_ms(ms: float | int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


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

def _implied_history(f: dict[str, bytes], state: str, due_ms: float | None) -> list[HistoryEntry]:
    """The history a job's record stands for while it has no history list (see
    storage/lua/lib/states.lua): its creation (Enqueued, or Scheduled with its due time),
    its first run (when it started, on which worker) and its final state's entry."""
    quiet = f.get("h", b"")[:1] == b"0"
    first = SCHEDULED if state == SCHEDULED else ENQUEUED
    if not quiet:
        first = state  # a job from before `h`: only its creation can be implied
    entries = [HistoryEntry(state=first, at=from_ms(int(f["created"])),  # type: ignore[arg-type]
                            data={"queue": f.get("queue", b"").decode()},
                            due=from_ms(due_ms) if first == SCHEDULED else None)]
    if quiet and "started" in f:
        worker = f.get("lease", b"").decode().rpartition(":")[0]
        entries.append(HistoryEntry(state=PROCESSING, at=from_ms(int(f["started"])),  # type: ignore[arg-type]
                                    data={"worker": worker}))
    if quiet and "done" in f:
        entries.append(done_entry(f["done"], state))
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
        e = _entry_decoder.decode(done)
        return HistoryEntry(state=e.state, at=from_ms(e.at), reason=e.reason, data=e.data,  # type: ignore[arg-type]
                            due=from_ms(e.due))
    brace = done.index(b"{")
    rest = _done_decoder.decode(done[brace:])
    return HistoryEntry(state=state, at=from_ms(int(done[:brace])), reason=rest.reason,  # type: ignore[arg-type]
                        data=rest.data, due=from_ms(rest.due))


def build_job(job_id: str, fields: dict[bytes, bytes], raw_history: list[bytes],
              due_ms: float | None, continuations: list[str] | None = None,
              log_lines: list[bytes] | None = None) -> Job:
    f = {k.decode(): v for k, v in fields.items()}
    history = []
    for raw in raw_history:
        e = _entry_decoder.decode(raw)
        history.append(HistoryEntry(state=e.state, at=from_ms(e.at), reason=e.reason,  # type: ignore[arg-type]
                                    data=e.data, due=from_ms(e.due)))
    def text(name: str) -> str | None:
        return f[name].decode(errors="replace") if name in f else None

    state = f.get("state", b"").decode()
    if not history and "created" in f:
        history = _implied_history(f, state, due_ms)
    payload_error = None
    try:
        args, kwargs = decode_args(f.get("args", b""))
    except PayloadError as exc:
        args, kwargs, payload_error = [], {}, str(exc)
    last = history[-1] if history else None
    finished = state in FINAL_STATES or state == FAILED
    result = decode_value(f["result"]) if "result" in f else None
    return Job(
        id=job_id,
        function=f.get("fn", b"").decode(errors="replace"),
        queue=f.get("queue", b"").decode(),
        state=state,
        reason=last.reason if last else None,
        args=args,
        kwargs=kwargs,
        created_at=from_ms(int(f["created"])) if "created" in f else None,
        started_at=from_ms(int(f["started"])) if "started" in f else None,
        finished_at=last.at if finished and last else None,
        due_at=from_ms(due_ms),
        retry_count=int(f.get("retries", b"0")),
        result=result,
        exception=_exception_of(history),
        history=history,
        options=decode_value(f["opts"]) if f.get("opts") else {},
        payload_error=payload_error,
        recurring_id=f["recurring"].decode() if "recurring" in f else None,
        recurring_tick=from_ms(int(f["tick"])) if "tick" in f else None,
        parent_id=text("parent"), parent_kind=text("parent_kind"), continue_on=text("on"),
        continuations=continuations or [], batch_id=text("batch"),
        params={k[len(PARAM_PREFIX):]: _param_value(v) for k, v in f.items() if k.startswith(PARAM_PREFIX)},
        progress=msgspec.json.decode(f["progress"]) if "progress" in f else None,
        log=[LogLine(at=from_ms(r.at), line=r.line) for r in map(_log_decoder.decode, log_lines or [])],  # type: ignore[arg-type]
    )
