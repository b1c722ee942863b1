"""The worker's settings: one frozen struct. Each field is a `taskfire worker` option
(`--shutdown-timeout`) and an environment variable (`TASKFIRE_SHUTDOWN_TIMEOUT`)."""

from __future__ import annotations

import os
import re
import socket
from typing import Any, Callable

import msgspec

from ..errors import ConfigError
from ..states import check_queue_name
from ..storage import DEFAULT_PREFIX, DEFAULT_URL

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LOG_FORMATS = ("text", "json")


def parse_queue_spec(spec: str) -> tuple[str, int | None]:
    """"critical" -> ("critical", None); "critical:5" -> ("critical", 5)."""
    name, sep, weight = spec.partition(":")
    check_queue_name(name)
    if not sep:
        return name, None
    if not weight.isdigit() or int(weight) < 1 or int(weight) > 1000:
        raise ConfigError(f"queue {spec!r}: the weight after ':' must be a whole number from 1 to 1000")
    return name, int(weight)


def _check_queues(queues: tuple[str, ...]) -> None:
    """Queues are listed once each, all weighted or none."""
    if not queues:
        raise ConfigError("a worker needs at least one queue")
    specs = [parse_queue_spec(q) for q in queues]
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"a queue is listed twice in {','.join(queues)}")
    weighted = [w is not None for _, w in specs]
    if any(weighted) and not all(weighted):
        raise ConfigError(f"queues {','.join(queues)}: give every queue a weight "
                          f"(critical:5,default:3,low:1) or none (strict order)")


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    modules: tuple[str, ...] = ()
    redis_url: str = DEFAULT_URL
    prefix: str = DEFAULT_PREFIX
    queues: tuple[str, ...] = ("default",)
    processes: int = 1
    threads: int = 10
    name: str = ""
    shutdown_timeout: float = 15.0
    lease_timeout: float = 8.0
    heartbeat_interval: float = 5.0
    server_timeout: float = 30.0
    idle_wait: float = 5.0
    max_recoveries: int = 5
    retention: float = 86400.0
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_interval: float = 5.0
    scheduler: bool = True
    async_limit: int = 1000
    recurring_file: str = ""
    environment: str = ""
    burst: bool = False

    def __post_init__(self) -> None:
        _check_queues(self.queues)
        if self.name and not _NAME.match(self.name):
            raise ConfigError(f"server name {self.name!r}: use up to 64 letters, digits, '.', '_' or '-'")
        for field in ("processes", "threads", "async_limit"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be at least 1")
        for rule, message in _RULES:
            if not rule(self):
                raise ConfigError(message)
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be {' or '.join(LOG_FORMATS)}, not {self.log_format!r}")

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(parse_queue_spec(q)[0] for q in self.queues)

    @property
    def server_name(self) -> str:
        return self.name or socket.gethostname().split(".")[0] or "taskfire"


#: Each setting's bounds, and the message a value outside them gets.
_RULES: tuple[tuple[Callable[[WorkerConfig], bool], str], ...] = (
    (lambda c: 0.5 <= c.idle_wait <= 8, "idle_wait must be between 0.5 and 8 seconds"),
    (lambda c: c.lease_timeout >= 1, "lease_timeout must be at least 1 second"),
    (lambda c: c.server_timeout >= 2 * c.heartbeat_interval, "server_timeout must be at least twice heartbeat_interval"),
    (lambda c: c.shutdown_timeout >= 0 and c.max_recoveries >= 0,
     "shutdown_timeout and max_recoveries must not be negative"),
    (lambda c: 0.1 <= c.metrics_interval <= 3600, "metrics_interval must be between 0.1 and 3600 seconds"),
)

#: What each option means, for `taskfire worker --help`.
HELP = {
    "modules": "modules whose @job functions this worker runs",
    "redis_url": "Redis URL (redis://, rediss://, redis+sentinel://, redis+cluster://, or 'embedded')",
    "prefix": "prefix of every Redis key",
    "queues": "queues to take jobs from: strict priority order (critical,default,low) or "
              "weighted (critical:5,default:3,low:1)",
    "processes": "worker processes",
    "threads": "jobs run at once in each process",
    "name": "server name shown to operators (default: host name)",
    "shutdown_timeout": "seconds running jobs get to finish on SIGTERM before they are requeued",
    "lease_timeout": "seconds after which a silent worker's jobs are requeued",
    "heartbeat_interval": "seconds between server heartbeats",
    "server_timeout": "seconds without a heartbeat before a server is removed",
    "idle_wait": "longest single wait of an idle worker, in seconds",
    "max_recoveries": "times a job may lose its worker (killed, cut off) before it fails",
    "retention": "seconds Succeeded and Deleted jobs are kept",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "text, or json: one JSON object per line, with job_id and function on lines a job logs",
    "metrics_interval": "seconds between flushes of job metrics (run times, retries) to Redis",
    "async_limit": "async jobs run at once in each process (on its event loop)",
    "scheduler": "fire due recurring jobs from this worker's processes (true or false)",
    "recurring_file": "TOML file of recurring jobs, synced when the server starts",
    "environment": "the environment whose section of the recurring file applies (e.g. dev, prod)",
    "burst": "take jobs until the queues are empty and nothing is due within a second, then exit "
             "(exit code 1 if a job's last run failed)",
}

#: A burst worker process's exit codes: it found nothing left to do, and whether a job's
#: last run in it failed. Any other exit is a crash, and the process is replaced.
BURST_DRAINED, BURST_DRAINED_WITH_FAILURES = 100, 101

#: A burst worker does not stop while a job is due this soon (a retry, a delayed job).
BURST_HORIZON_S = 1.0


def env_name(field: str) -> str:
    return "TASKFIRE_" + field.upper()


def parse_value(field: str, raw: str) -> Any:
    """A field's value from its text form (flag or environment variable)."""
    default = WorkerConfig.__struct_defaults__[WorkerConfig.__struct_fields__.index(field)]
    try:
        if isinstance(default, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{field.replace('_', '-')}: {raw!r} is not a {type(default).__name__}") from None
    return raw


def from_env(**given: Any) -> WorkerConfig:
    """The config from keyword values, falling back to TASKFIRE_* variables, then defaults."""
    values: dict[str, Any] = {}
    for field in WorkerConfig.__struct_fields__:
        if given.get(field) is not None:
            values[field] = given[field]
        elif os.environ.get(env_name(field)):
            values[field] = parse_value(field, os.environ[env_name(field)])
    return WorkerConfig(**values)
