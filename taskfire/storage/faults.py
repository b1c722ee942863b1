"""What an error from Redis means: its kind, one line that names the problem and the fix,
and whether the same call may succeed later. Loops log and back off by it (backoff.py),
a worker refuses to start on what waiting cannot fix (`check_access`), and a refused
enqueue says whether its jobs were stored.
"""

from __future__ import annotations

import redis
from redis.exceptions import (AuthenticationError, AuthenticationWrongNumberOfArgsError, BusyLoadingError,
                              NoPermissionError, OutOfMemoryError, ReadOnlyError)

from ..backoff import Trouble, unexplained
from ..errors import ConfigError
from .connection import connect, close, redacted
from .scripts import SlotMoving

#: Every error redis-py raises: a loop that catches these survives whatever Redis does.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)

#: Kinds of trouble that waiting does not end: a worker refuses to start on them.
NEEDS_A_FIX = ("credentials", "certificate", "tls", "permission")


def describe_error(exc: BaseException) -> Trouble:
    """What `exc` means to a caller that will try again (see backoff.Trouble)."""
    text = str(exc)
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        return Trouble("credentials", f"Redis refused the credentials ({text}): check the user and password "
                       f"in the Redis URL (TASKFIRE_REDIS_URL)", serious=True)
    if isinstance(exc, NoPermissionError):
        return Trouble("permission", f"Redis's ACL forbids a command taskfire needs ({text}): grant the user "
                       f"+@all on the prefix's keys, or at least FCALL, FUNCTION LOAD and the read commands",
                       serious=True)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return Trouble("certificate", f"Redis's TLS certificate is not trusted ({text}): give the CA that "
                       f"signed it (rediss://...?ssl_ca_certs=/path/ca.pem)", serious=True)
    if isinstance(exc, redis.ConnectionError) and "[SSL" in text:
        return Trouble("tls", f"the TLS handshake with Redis failed ({text}): is the port a TLS port "
                       f"(rediss://) or a plain one (redis://)?", serious=True)
    if isinstance(exc, OutOfMemoryError):
        return Trouble("full", f"Redis is full ({text}): it refuses new jobs until memory is freed or maxmemory "
                       f"raised; stored jobs still run (docs/operations.md, 'A full Redis')", serious=True)
    if isinstance(exc, ReadOnlyError):
        return Trouble("read-only", f"Redis is a read-only replica ({text}): a failover is under way, or the "
                       f"URL names a replica")
    if isinstance(exc, BusyLoadingError):
        return Trouble("loading", f"Redis is loading its data ({text})")
    if isinstance(exc, SlotMoving):
        return Trouble("moving", "a Redis Cluster slot of taskfire's is moving to another node (resharding) or "
                       "its primary is failing over, so that shard refuses calls until it is done")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return Trouble("unreachable", f"Redis is unavailable ({type(exc).__name__}: {text})")
    if isinstance(exc, redis.ResponseError):
        return Trouble("refused", f"Redis refused the call ({text})", transient=False, serious=True)
    return unexplained(exc)


def check_access(url: str) -> bool:
    """Whether Redis at `url` answers a PING; False if it cannot be reached (yet).
    Raises ConfigError for what waiting cannot fix: credentials refused, a certificate
    not trusted, a TLS port mismatch, an ACL that forbids PING."""
    client = None
    try:
        client = connect(url, socket_timeout=5)  # a cluster client talks to the cluster here
        client.ping()
        return True
    except redis.RedisError as exc:
        trouble = describe_error(exc)
        if trouble.kind in NEEDS_A_FIX:
            raise ConfigError(f"cannot use Redis at {redacted(url)}: {trouble.message}") from None
        return False
    finally:
        if client is not None:
            close(client)
