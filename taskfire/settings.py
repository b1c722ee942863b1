"""A client's settings (sync or asyncio): from its arguments, else the TASKFIRE_*
variables, else the defaults; "embedded" becomes the embedded server's URL."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, NamedTuple

from .errors import ConfigError
from .storage import DEFAULT_PREFIX, DEFAULT_URL

DEFAULT_RETENTION = timedelta(days=1)
#: Seconds a call to Redis may take (TASKFIRE_TIMEOUT).
DEFAULT_TIMEOUT = 5.0


def _number_from_env(name: str, default: float, kind: type[int] | type[float] = int) -> Any:
    """A number from the environment variable `name` (default when unset), or a
    ConfigError naming the variable."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None


class ClientSettings(NamedTuple):
    url: str
    prefix: str
    retention_s: int
    wait_replicas: int
    wait_timeout_ms: int
    timeout: float   # seconds a call to Redis may take
    embedded: Any  # the EmbeddedServer started or joined for "embedded", else None


def client_settings(url: str | None, prefix: str | None, retention: timedelta | float | None,
                    wait_replicas: int | None, wait_timeout_ms: int | None,
                    timeout: float | None = None) -> ClientSettings:
    """See Taskfire's docstring for what each setting means."""
    url = url or os.environ.get("TASKFIRE_REDIS_URL") or DEFAULT_URL
    embedded = None
    if url == "embedded":
        from .embedded import EmbeddedServer
        embedded = EmbeddedServer.shared()
        url = embedded.url
    if retention is None:
        retention = _number_from_env("TASKFIRE_RETENTION", DEFAULT_RETENTION.total_seconds(), float)
    seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
    if seconds < 1:
        raise ConfigError(f"retention must be at least one second, not {retention!r}")
    prefix = prefix if prefix is not None else os.environ.get("TASKFIRE_PREFIX", DEFAULT_PREFIX)
    if wait_replicas is None:
        wait_replicas = _number_from_env("TASKFIRE_WAIT_REPLICAS", 0)
    if wait_timeout_ms is None:
        wait_timeout_ms = _number_from_env("TASKFIRE_WAIT_TIMEOUT_MS", 1000)
    if timeout is None:
        timeout = _number_from_env("TASKFIRE_TIMEOUT", DEFAULT_TIMEOUT, float)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 3600:
        raise ConfigError(f"timeout must be a number of seconds between 0 and 3600, not {timeout!r}")
    return ClientSettings(url, prefix, int(seconds), wait_replicas, wait_timeout_ms, float(timeout), embedded)
