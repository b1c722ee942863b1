"""Recurring jobs: a job function run on a CRON schedule in a time zone.

`tf.recurring` manages them (add_or_update, trigger, enable, disable, remove, get,
list, sync). Every worker process runs a scheduler (see scheduler.py) that fires due runs;
each run is one atomic script guarded by the run's expected time, so a tick fires once
however many schedulers race for it.

Misfires, when no scheduler ran at a tick (every worker down, say), follow the job's
`misfire` option:

    relaxed    (default) the missed ticks fire once, as soon as a scheduler is back
    strict     one job per missed tick, oldest first, at most MAX_CATCH_UP per
               catch-up (older ones are skipped, and the skip is recorded as the
               recurring job's error)
    ignorable  missed ticks are dropped; a tick fires only if a scheduler reaches it
               within MISFIRE_GRACE of its time

Whatever the mode, the next run is the first tick after the server's now.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import msgspec

from .creation import new_job_id, resolve
from .cron import Schedule
from .errors import ConfigError
from .job import JobFunction, JobOptions
from .payload import decode_args, encode_args
from .records import from_ms
from .states import check_queue_name
from .storage import Storage

MISFIRE_MODES = ("relaxed", "strict", "ignorable")
#: How late a scheduler may reach a tick of an `ignorable` job and still fire it.
MISFIRE_GRACE_MS = 60_000
#: Most jobs one catch-up of a `strict` job creates.
MAX_CATCH_UP = 1000

_ID = re.compile(r"^\S{1,200}$")
_opts_encoder = msgspec.msgpack.Encoder()


def check_recurring_id(recurring_id: str) -> str:
    if not isinstance(recurring_id, str) or not _ID.match(recurring_id):
        raise ConfigError(f"recurring job id {recurring_id!r}: use 1 to 200 characters without spaces")
    return recurring_id


class RecurringJob(msgspec.Struct, frozen=True):
    """A recurring job as stored, with its last run's job and that job's state."""

    id: str
    function: str
    cron: str
    tz: str
    queue: str
    misfire: str
    enabled: bool
    next_run: datetime | None
    last_run: datetime | None
    last_job_id: str | None
    last_job_state: str | None
    error: str | None
    created_at: datetime | None
    source: str | None
    args: list[Any]
    kwargs: dict[str, Any]


def _build(recurring_id: str, h: dict[bytes, bytes], last_state: bytes | None) -> RecurringJob:
    f = {k.decode(): v for k, v in h.items()}

    def text(name: str) -> str | None:
        return f[name].decode(errors="replace") if f.get(name) else None

    def time(name: str) -> datetime | None:
        raw = f.get(name, b"")
        return from_ms(int(raw)) if raw.isdigit() else None  # a hand-edited value reads as none

    try:
        args, kwargs = decode_args(f.get("args", b""))
    except Exception:
        args, kwargs = [], {}
    return RecurringJob(
        id=recurring_id, function=text("fn") or "", cron=text("cron") or "", tz=text("tz") or "UTC",
        queue=text("queue") or "", misfire=text("misfire") or "relaxed", enabled=f.get("enabled") == b"1",
        next_run=time("next"), last_run=time("last_run"), last_job_id=text("last_job"),
        last_job_state=last_state.decode() if last_state else None, error=text("error"),
        created_at=time("created"), source=text("source"), args=args, kwargs=kwargs)


class SyncReport(msgspec.Struct, frozen=True):
    added: list[str]
    updated: list[str]
    removed: list[str]

    def __str__(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed"
                + "".join(f"\n  {verb} {i}" for verb, ids in (("+", self.added), ("~", self.updated),
                                                              ("-", self.removed)) for i in ids))


class RecurringJobs:
    """`tf.recurring`: the recurring jobs stored under one client's prefix."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = storage.recurring

    def add_or_update(self, recurring_id: str, target: JobFunction[..., Any] | str, cron: str, *,
                      args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, tz: str = "UTC",
                      queue: str | None = None, misfire: str = "relaxed", source: str | None = None) -> None:
        """Creates or replaces a recurring job. Its next run is recomputed only when the
        schedule (cron or time zone) changed or it had a scheduling error, so updating the
        function or its arguments keeps the coming run. An existing job stays enabled or
        disabled as it was. Raises ValueError (ConfigError) naming what is wrong."""
        check_recurring_id(recurring_id)
        schedule = Schedule(cron, tz)
        if misfire not in MISFIRE_MODES:
            raise ConfigError(f"misfire must be one of {', '.join(MISFIRE_MODES)}, not {misfire!r}")
        jf = resolve(target)
        args, kwargs = tuple(args), dict(kwargs or {})
        if jf.binder is not None:
            jf.binder.check(jf.name, args, kwargs)
        if jf.name.startswith("__main__:"):
            raise ConfigError(f"{jf.name} is defined in the script being run (__main__), which a "
                              f"worker cannot import: move it to a module")
        fields: dict[str, str | bytes] = {
            "fn": jf.name, "args": encode_args(jf.name, args, kwargs, jf.binder.signature if jf.binder else None),
            "queue": check_queue_name(queue or jf.queue), "cron": schedule.expr, "tz": schedule.tz,
            "misfire": misfire, "source": source or "",
        }
        if jf.overrides != JobOptions():
            fields["opts"] = _opts_encoder.encode(jf.overrides)
        controls = jf.controls.fields(jf.name, jf.binder.signature if jf.binder else None, args, kwargs,
                                      None, fields["args"])  # type: ignore[arg-type]
        controls.pop("unique", None)  # a recurring run is unique by its tick already
        fields["controls"] = json.dumps(controls) if controls else ""
        now = self.storage.server_time_ms()
        cron_was, tz_was, error, created, enabled = self.store.read_fields(
            recurring_id, "cron", "tz", "error", "created", "enabled")
        if created is None:
            fields.update(created=str(now), enabled="1")
        reschedule = created is None or error is not None or (cron_was, tz_was) != (schedule.expr, schedule.tz)
        next_ms = schedule.next_ms(now) if enabled != "0" else None
        if next_ms is None and enabled != "0":  # shown by get, list and the dashboard as its error
            fields["error"] = (f"its schedule {schedule.expr!r} never fires: no date matches it; it runs only "
                               f"when triggered")
        self.store.save(recurring_id, fields, next_ms, reschedule and enabled != "0")

    def trigger(self, recurring_id: str) -> str | None:
        """Enqueues a run now, leaving the schedule as it is; returns the job's id, or None
        if there is no such recurring job."""
        job_id = new_job_id()
        now = self.storage.server_time_ms()
        done = self.store.fire(recurring_id, None, None, "", f"Triggered by hand from recurring "
                                           f"job '{recurring_id}'", [(job_id, now)])
        return job_id if done > 0 else None

    def enable(self, recurring_id: str) -> bool:
        """Enables a recurring job from its next tick on (ticks missed while it was
        disabled are not fired); False if there is no such job."""
        cron, tz = self.store.read_fields(recurring_id, "cron", "tz")
        if cron is None:
            return False
        next_ms = Schedule(cron, tz or "UTC").next_ms(self.storage.server_time_ms())
        return self.store.set_enabled(recurring_id, True, next_ms)

    def disable(self, recurring_id: str) -> bool:
        """Stops firing a recurring job (it can still be triggered); False if absent."""
        return self.store.set_enabled(recurring_id, False, None)

    def remove(self, recurring_id: str) -> bool:
        """Deletes a recurring job; no error if it is absent (returns False then). Jobs it
        already fired are left alone."""
        return self.store.remove(recurring_id)

    def get(self, recurring_id: str) -> RecurringJob | None:
        found = self.store.read([recurring_id])
        h, state = found[0]
        return _build(recurring_id, h, state) if h else None

    def list(self) -> list[RecurringJob]:
        """Every recurring job, soonest next run first (disabled ones last)."""
        ids = self.store.ids()
        return [_build(i, h, s) for i, (h, s) in zip(ids, self.store.read(ids), strict=True) if h]

    def sync(self, path: str | os.PathLike[str], environment: str | None = None) -> SyncReport:
        """Makes the stored recurring jobs match a TOML file (see `load_file`): adds and
        updates those it declares and removes those it declared before but no longer does.
        Jobs from elsewhere (code, other files) are left alone. The whole file is
        checked before anything is written. Each function's module is imported when it
        can be, so the job keeps its decorator's queue, retries and controls (a mutex,
        say); one that cannot be imported here is stored by name (its runs then report
        the import error, as for any recurring job whose code is missing)."""
        source, declared = load_file(path, environment)
        for spec in declared.values():
            _import_quietly(spec["function"].partition(":")[0])
        existing = {r.id: r for r in self.list()}
        added, updated = [], []
        for rid, spec in declared.items():
            before = existing.get(rid)
            self.add_or_update(rid, spec["function"], spec["cron"], args=spec.get("args", ()),
                               kwargs=spec.get("kwargs"), tz=spec.get("tz", "UTC"), queue=spec.get("queue"),
                               misfire=spec.get("misfire", "relaxed"), source=source)
            after = self.get(rid)
            if before is None:
                added.append(rid)
            elif after is not None and _definition(before) != _definition(after):
                updated.append(rid)
        removed = [rid for rid, r in existing.items() if r.source == source and rid not in declared]
        for rid in removed:
            self.remove(rid)
        return SyncReport(added, updated, removed)


def _import_quietly(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - reported by the scheduler at each tick instead
        pass


def _definition(r: RecurringJob) -> tuple[Any, ...]:
    return (r.function, r.cron, r.tz, r.queue, r.misfire, r.args, r.kwargs, r.source)


_KEYS = {"function", "cron", "tz", "queue", "args", "kwargs", "misfire"}


def load_file(path: str | os.PathLike[str], environment: str | None = None) -> tuple[str, dict[str, dict[str, Any]]]:
    """Reads recurring jobs from a TOML file: (source, {id: definition}).

        source = "billing"                 # optional; default: the file's name
        [recurring.daily-reports]
        function = "myapp.jobs:generate_reports"
        cron = "0 2 * * *"
        tz = "Europe/Paris"                # optional: UTC
        queue = "default"                  # optional: the function's queue
        args = []                          # optional
        kwargs = { full = true }           # optional
        misfire = "relaxed"                # optional: relaxed, strict or ignorable

        [env.dev.recurring.daily-reports]  # merged over the base entry in environment "dev"
        cron = "*/5 * * * *"

    The environment is the argument, else TASKFIRE_ENVIRONMENT (the worker's
    `--environment`); an environment the file does not mention uses the base entries."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read recurring jobs file {str(p)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    unknown = set(data) - {"source", "recurring", "env"}
    if unknown:
        raise ConfigError(f"{p}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                          f"(expected source, recurring, env)")
    environment = environment or os.environ.get("TASKFIRE_ENVIRONMENT") or None
    declared = {rid: dict(spec) for rid, spec in _table(p, data, "recurring").items()}
    if environment:
        envs = _table(p, data, "env")
        overrides = _table(p, envs.get(environment, {}), "recurring", f"env.{environment}.")
        for rid, spec in overrides.items():
            declared[rid] = {**declared.get(rid, {}), **spec}
    for rid, spec in declared.items():
        _check_entry(f"{p}: recurring job {rid!r}", rid, spec)
    source = data.get("source", p.name)
    if not isinstance(source, str) or not source:
        raise ConfigError(f"{p}: 'source' must be a non-empty string")
    return source, declared


def _check_entry(where: str, rid: str, spec: Any) -> None:
    """One recurring job of a file, checked before anything is written."""
    check_recurring_id(rid)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table")
    bad = set(spec) - _KEYS
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))} (expected {', '.join(sorted(_KEYS))})")
    for key in ("function", "cron"):
        if not isinstance(spec.get(key), str):
            raise ConfigError(f"{where}: '{key}' is missing or not a string")
    if not isinstance(spec.get("args", []), list) or not isinstance(spec.get("kwargs", {}), dict):
        raise ConfigError(f"{where}: 'args' must be an array and 'kwargs' a table")
    try:
        Schedule(spec["cron"], spec.get("tz", "UTC"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _table(p: Path, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{p}: '{where}{key}' must be a table")
    return value
