"""Creating jobs: the one job factory that the client, batches and recurring jobs share.

A job is made from a job function and a call: its arguments are checked against the
function's signature and encoded, its client filters run (`on_creating` may set
parameters or cancel), its controls become fields (a mutex, a limit, a uniqueness key),
and its id is made here, by the client, so that a call repeated after a dropped
connection creates nothing twice. `on_created` runs once the job is stored.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

import msgspec

from .controls import JobControls
from .errors import ConfigError, EnqueueError
from .filters import CreatedContext, CreatingContext, global_filters, pipeline, run_created, run_creating
from .job import JobFunction, JobOptions, registry
from .payload import encode_args, encode_value, param_field
from .storage import NewBatch, NewJob, Storage

_opts_encoder = msgspec.msgpack.Encoder()
_NO_CONTROLS = JobControls()
_NO_OVERRIDES = JobOptions()

#: What to call once a job is stored (its client filters' on_created), if anything.
OnCreated = Callable[[], None] | None
#: Where a new job goes: given its fields, what ends its id (its shard's mark; see
#: storage/shards.py). None: the home shard, the only one on a single Redis.
Place = Callable[[dict[str, bytes | str]], str] | None


class Placing(Protocol):
    """A store that places new jobs (Storage or AsyncStorage: see storage/shards.py)."""

    def placement(self, fields: dict[str, bytes | str]) -> str: ...

    def mark_of(self, any_id: str) -> str: ...


def same_shard(storage: Placing, any_id: str) -> Place:
    """Places jobs with a job or batch: its continuations, its members."""
    mark = storage.mark_of(any_id)
    return lambda fields: mark


def batch_mark(storage: Placing, parent: str | None) -> str:
    """What ends a new batch's id: its enclosing batch's shard, else one of its own."""
    return storage.mark_of(parent) if parent else storage.placement({})


def new_job_id() -> str:
    """24 hex digits: milliseconds since the epoch, then 48 random bits. Ids sort by
    creation time, and two jobs made in the same millisecond differ by chance alone.
    (`random` is seeded from the OS and reseeded in a forked child; `secrets` would cost
    a system call per id.)"""
    return f"{int(time.time() * 1000):012x}{random.getrandbits(48):012x}"


def resolve(target: JobFunction[..., Any] | str) -> JobFunction[..., Any]:
    """The job function a target names: a @job function, or "module:function". A name
    this process has registered keeps its queue, retries and controls (a mutex, say), as
    the function itself would: a recurring job declared by name in a TOML file must not
    lose them."""
    if isinstance(target, str):
        if ":" not in target:
            raise ConfigError(f"job name {target!r} must look like 'package.module:function'")
        return registry.get(target) or JobFunction(None, target)
    if isinstance(target, JobFunction):
        return target
    if callable(target):
        name = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"
        raise ConfigError(f"{name} is not a job: decorate it with @job")
    raise ConfigError(f"cannot enqueue {target!r}: pass a @job function or a 'module:function' name")


def build(jf: JobFunction[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], due: str = "",
          fields: dict[str, bytes | str] | None = None, place: Place = None) -> tuple[NewJob, OnCreated]:
    """The job to store for a call of `jf`, and what to call once it is stored. Its
    controls are worked out before its id, which `place` ends with its shard's mark (a
    mutex or uniqueness key decides the shard), and the id before its filters run."""
    if jf.name.startswith("__main__:"):
        raise ConfigError(
            f"cannot enqueue {jf.name}: it is defined in the script being run (__main__), "
            f"which a worker cannot import. Move it to a module (e.g. myapp/jobs.py), "
            f"import it from there, and start the worker with that module.")
    signature = None
    if jf.binder is not None:
        jf.binder.check(jf.name, args, kwargs)
        signature = jf.binder.signature
    opts = b"" if jf.overrides == _NO_OVERRIDES else _opts_encoder.encode(jf.overrides)
    filters = pipeline(jf.filters) if jf.filters or len(global_filters) else None
    creating = None
    encoded = encode_args(jf.name, args, kwargs, signature)
    if jf.controls != _NO_CONTROLS or jf.unique_key is not None:
        identity = encoded
        if jf.controls.unique is True and signature is not None:
            # unique=True is "same function and arguments": f(1) and f(n=1) are one call
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            identity = encode_args(jf.name, bound.args, bound.kwargs)
        fields = {**(fields or {}), **jf.controls.fields(jf.name, signature, args, kwargs, jf.unique_key, identity)}
    job_id = new_job_id() + (place(fields or {}) if place is not None else "")
    if filters:
        fields = dict(fields or {})
        creating = CreatingContext(jf.name, args, kwargs, jf.queue, job_id)
        run_creating(filters, creating)
        for name, value in creating.params.items():
            fields[param_field(name)] = encode_value(name, value)
    new = NewJob(id=job_id, fn=jf.name, args=encoded, queue=jf.queue, opts=opts, due=due,
                 fields=fields or {})
    if creating is None or filters is None:
        return new, None
    done = CreatedContext(new.id, creating)
    return new, lambda: run_created(filters, done)


def build_calls(jf: JobFunction[..., Any], calls: Iterable[tuple[Any, ...] | dict[str, Any]],
                place: Place = None) -> list[tuple[NewJob, OnCreated]]:
    """The jobs for many calls of `jf` (a tuple of positional or a dict of keyword
    arguments each), every call checked before any is stored."""
    made = []
    for call in calls:
        if isinstance(call, dict):
            made.append(build(jf, (), call, place=place))
        elif isinstance(call, tuple):
            made.append(build(jf, call, {}, place=place))
        else:
            raise TypeError(f"enqueue_many takes tuples of positional or dicts of keyword "
                            f"arguments, not {type(call).__name__}: {call!r}")
    return made


def stored_ids(made: list[tuple[NewJob, OnCreated]], pending: dict[str, str]) -> list[str]:
    """Once jobs are stored: runs on_created for those created, and returns each one's id
    (or that of the pending job holding its uniqueness key)."""
    for new, created in made:
        if created and new.id not in pending:
            created()
    return [pending.get(new.id, new.id) for new, _ in made]


def build_continuation(target: JobFunction[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any],
                       on: str, place: Place = None) -> tuple[NewJob, OnCreated]:
    if on not in ("succeeded", "finished"):
        raise ConfigError(f"on must be 'succeeded' or 'finished', not {on!r}")
    return build(resolve(target), args, kwargs, place=place)


def continued(kind: str, parent: str, code: int, created: OnCreated) -> None:
    """Once a continuation is stored (continue.lua's `code`): on_created, or the error."""
    if code < 0:
        raise ConfigError(f"cannot continue {kind} {parent!r}: there is no such {kind} "
                          f"(never created, or expired after its retention)")
    if created:
        created()


class Creator:
    """Stores new jobs: one at a time, many at once, as continuations, or as batches."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def create(self, target: JobFunction[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any],
               due: str = "") -> str:
        """Stores one job (now, or at `due`); returns its id, or the id of the pending job
        that holds its uniqueness key."""
        new, created = build(resolve(target), args, kwargs, due, place=self.storage.placement)
        return self.store(new, created)

    def store(self, new: NewJob, created: OnCreated) -> str:
        """Stores a job `build` made (perhaps a while ago: when a database transaction
        commits, say); returns its id, or that of the pending job holding its uniqueness key."""
        pending = self.storage.create([new]).get(new.id)
        if pending is not None:
            return pending
        if created:
            created()
        return new.id

    def create_many(self, target: JobFunction[..., Any] | str,
                    calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[str]:
        """One job per call (positional arguments as a tuple, keyword ones as a dict);
        every call is checked before any job is stored. If not all are stored (a Redis
        that filled up half-way), EnqueueError says which were."""
        made = build_calls(resolve(target), calls, self.storage.placement)
        try:
            pending = self.storage.create([new for new, _ in made])
        except EnqueueError as exc:  # some chunks stored: their on_created runs all the same
            stored = set(exc.stored)
            for new, created in made:
                if created and new.id in stored:
                    created()
            raise
        return stored_ids(made, pending)

    def continue_job(self, kind: str, parent: str, target: JobFunction[..., Any] | str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], on: str) -> str:
        """Stores a job Awaiting a parent job or batch (`kind`), released when it succeeds
        (`on="succeeded"`) or reaches any outcome (`on="finished"`); returns its id."""
        new, created = build_continuation(target, args, kwargs, on, same_shard(self.storage, parent))
        continued(kind, parent, self.storage.continue_job(kind, parent, on, new), created)
        return new.id

    def create_batches(self, batches: Sequence[NewBatch], jobs: Sequence[NewJob],
                       created: Sequence[Callable[[], None]]) -> None:
        """Stores batches and their jobs at once, then runs the jobs' on_created."""
        self.storage.create_batches(batches, jobs)
        for callback in created:
            callback()
