"""Where taskfire connects: the one place a URL becomes a redis-py client.

    redis://[[user]:password@]host[:port][/db]       one server (also rediss:// and unix://,
                                                     with redis-py's query options)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
                     [?sentinel_password=...&sentinel_username=...]
        Sentinels (default port 26379) say which server is the primary of `service`;
        every new connection asks them, so clients and workers follow a failover. The
        user and password are the Redis servers'; the sentinels' own are query options.
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]
        Redis Cluster (default port 6379): any nodes, the client finds the rest. The key
        prefix must carry a hash tag ("{taskfire}:") so every key is in one slot.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from ..errors import ConfigError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
_PLAIN_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")
#: Seconds a sentinel gets to answer: a dead one must not hold up finding the primary.
SENTINEL_TIMEOUT = 1.0
#: Attempts a cluster call makes after its first, 10 ms doubling up to 100 ms apart.
CLUSTER_RETRIES = 5


class Address(NamedTuple):
    host: str
    port: int


class Target(NamedTuple):
    """A parsed redis+sentinel:// or redis+cluster:// URL."""

    scheme: str
    nodes: list[Address]  # the sentinels, or the cluster's startup nodes
    username: str | None
    password: str | None
    service: str = ""  # sentinel: the monitored primary's name
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def redacted(url: str) -> str:
    """The URL without its passwords (in the user part or the query), for messages."""
    url = re.sub(r"(password=)[^&]*", r"\1***", url)
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, userinfo = head.partition("://")
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{tail}"


def has_hash_tag(prefix: str) -> bool:
    """Whether every key under `prefix` hashes on the same tag: the prefix holds a '{',
    then a '}' with at least one character between (Redis Cluster's rule)."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1)
    return start >= 0 and end > start + 1


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() == CLUSTER_SCHEME


def parse(url: str) -> Target:
    """Parses a redis+sentinel:// or redis+cluster:// URL; ConfigError names what is wrong."""
    shown = redacted(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ConfigError(f"Redis URL {shown!r}: expected {SENTINEL_SCHEME}:// or {CLUSTER_SCHEME}://")
    parts = urlsplit("//" + rest)  # netloc, path and query; the host list is parsed below
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    nodes = [_address(shown, item, default_port) for item in hostlist.split(",") if item.strip()]
    if not nodes:
        raise ConfigError(f"Redis URL {shown!r}: name at least one host:port")
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query, keep_blank_values=True)
    if scheme == CLUSTER_SCHEME:
        if query:
            raise ConfigError(f"Redis URL {shown!r}: {CLUSTER_SCHEME}:// takes no query options "
                              f"(got {', '.join(sorted(query))})")
        if segments not in ([], ["0"]):
            raise ConfigError(f"Redis URL {shown!r}: Redis Cluster has only database 0")
        return Target(scheme, nodes, username, password)
    if not segments or len(segments) > 2:
        raise ConfigError(f"Redis URL {shown!r}: give the monitored primary's name, and optionally a "
                          f"database: {SENTINEL_SCHEME}://host:26379/mymaster/0")
    db = segments[1] if len(segments) == 2 else "0"
    if not db.isdigit():
        raise ConfigError(f"Redis URL {shown!r}: database {db!r} is not a number")
    unknown = sorted(set(query) - set(_SENTINEL_OPTIONS))
    if unknown:
        raise ConfigError(f"Redis URL {shown!r}: unknown option(s) {', '.join(unknown)}; "
                          f"{SENTINEL_SCHEME}:// takes {', '.join(_SENTINEL_OPTIONS)}")
    return Target(scheme, nodes, username, password, service=unquote(segments[0]), db=int(db),
                  sentinel_username=query.get("sentinel_username", [None])[-1],
                  sentinel_password=query.get("sentinel_password", [None])[-1])


def _check_database(url: str, scheme: str) -> None:
    """Refuses a redis:// or rediss:// path that is not a database number (redis-py would
    quietly use database 0 for "/xyz")."""
    if scheme == "unix":
        return  # the path is the socket's; the database is the `db` query option
    path = urlsplit(url).path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ConfigError(f"Redis URL {redacted(url)!r}: {path!r} is not a database number "
                          f"({scheme}://host:port/0 for database 0)")


def _address(shown: str, item: str, default_port: int) -> Address:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ConfigError(f"Redis URL {shown!r}: {item!r} has no host")
    if port and not port.isdigit():
        raise ConfigError(f"Redis URL {shown!r}: port {port!r} of {host} is not a number")
    return Address(host, int(port) if port else default_port)


def connect(url: str, *, socket_timeout: float) -> redis.Redis | RedisCluster:
    """A client for `url`: redis.Redis for one server or a Sentinel-watched primary,
    RedisCluster for a cluster. Only a cluster client talks to the server here (to learn
    the slots); the others connect on first use."""
    options: dict[str, Any] = dict(socket_timeout=socket_timeout, socket_connect_timeout=min(5.0, socket_timeout),
                                   socket_keepalive=True)
    scheme = url.partition("://")[0].lower()
    if scheme == "unix":  # TCP keepalive means nothing on a unix socket (redis-py refuses it)
        options.pop("socket_keepalive")
    if scheme in _PLAIN_SCHEMES:
        _check_database(url, scheme)
        return redis.Redis.from_url(url, health_check_interval=30, **options)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ConfigError(f"Redis URL {redacted(url)!r}: unknown scheme {scheme!r}; use redis://, rediss://, "
                          f"unix://, {SENTINEL_SCHEME}:// or {CLUSTER_SCHEME}://")
    target = parse(url)
    if target.scheme == SENTINEL_SCHEME:
        sentinel = Sentinel(
            [(a.host, a.port) for a in target.nodes],
            sentinel_kwargs=dict(socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT,
                                 username=target.sentinel_username, password=target.sentinel_password),
            username=target.username, password=target.password, db=target.db, health_check_interval=30,
            **options)
        return sentinel.master_for(target.service)
    try:
        # Few, short retries inside a call (redis-py's default: 10, up to 1 s apart, so a
        # call to a primary that died spent the whole failover in them): taskfire's own
        # loops retry with backoff, and a worker passes over a shard whose call failed
        # (routing.py) only once the call has failed.
        cluster = RedisCluster(startup_nodes=[ClusterNode(a.host, a.port) for a in target.nodes],
                               username=target.username, password=target.password,
                               retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), CLUSTER_RETRIES),
                               **options)
    except RedisClusterException as exc:  # not a ConnectionError: make it one, so callers wait and retry
        raise redis.ConnectionError(f"Redis Cluster at {redacted(url)}: {exc}") from exc
    cluster.commands_parser = _FunctionCallKeys(cluster.commands_parser)  # type: ignore[assignment]
    return cluster


def connect_async(url: str, *, socket_timeout: float) -> redis.asyncio.Redis | AsyncRedisCluster:
    """An asyncio client for `url` (one server, a Sentinel-watched primary, or a Redis
    Cluster), for AsyncTaskfire. Its calls are not retried by redis-py: as on the sync
    path, the caller decides what may be sent twice. On a cluster, the script calls go
    to the nodes directly (aio_scripts.py), never repeated; the client's own routing
    and retries (as the sync cluster client's, short) serve the plain reads and writes
    (a job's record, a parameter), which may be sent twice. It connects on first use."""
    options: dict[str, Any] = dict(socket_timeout=socket_timeout, socket_connect_timeout=5,
                                   retry=AsyncRetry(NoBackoff(), 0))
    scheme = url.partition("://")[0].lower()
    if scheme in _PLAIN_SCHEMES:
        return redis.asyncio.Redis.from_url(url, health_check_interval=30, **options)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ConfigError(f"Redis URL {redacted(url)!r}: unknown scheme {scheme!r}; use redis://, rediss://, "
                          f"unix://, {SENTINEL_SCHEME}:// or {CLUSTER_SCHEME}://")
    target = parse(url)
    if target.scheme == CLUSTER_SCHEME:
        # as many connections per node as tasks waiting on it (a plain client's pool has
        # no bound either): each `await tf.wait(...)` holds one for its BLPOP
        return AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(a.host, a.port) for a in target.nodes], username=target.username,
            password=target.password, max_connections=2**31,
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), CLUSTER_RETRIES),
            socket_timeout=socket_timeout, socket_connect_timeout=5)
    sentinel = redis.asyncio.Sentinel(
        [(a.host, a.port) for a in target.nodes],
        sentinel_kwargs=dict(socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT,
                             username=target.sentinel_username, password=target.sentinel_password),
        username=target.username, password=target.password, db=target.db, **options)
    return sentinel.master_for(target.service)


class _FunctionCallKeys:
    """The cluster client's key finder, reading an FCALL's keys off the command itself.
    redis-py asks the server for them (COMMAND GETKEYS), a round trip before every
    FCALL; they are where EVALSHA's are: FCALL name numkeys key..."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def get_keys(self, redis_conn: Any, *args: Any) -> list[Any] | None:
        if str(args[0]).upper() == "FCALL":
            return list(args[3:3 + int(args[2])])
        return self.parser.get_keys(redis_conn, *args)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def close(client: redis.Redis | RedisCluster) -> None:
    """Closes a client from `connect`, with its connections to sentinels, if any."""
    pool = getattr(client, "connection_pool", None)
    client.close()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:  # Sentinel.close() is new in redis-py 6
            sentinel.close()


class ServerFacts(NamedTuple):
    """What a worker checks of its server before it starts (None: the server would not say,
    as managed servers may forbid INFO and CONFIG)."""

    cluster_enabled: bool | None
    eviction_policy: str | None


def server_facts(url: str) -> ServerFacts:
    client = connect(url, socket_timeout=5)
    try:
        try:
            cluster = client.info("cluster").get("cluster_enabled") == 1
        except redis.RedisError:
            cluster = None
        try:
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.RedisError:
            policy = None
        return ServerFacts(cluster, policy)
    finally:
        close(client)


def probe(port: int, timeout: float = 2.0) -> str:
    """Whether a server on a loopback port answers: "ready", "loading" (replaying its
    data) or "down"."""
    client = redis.Redis(port=port, socket_timeout=timeout)
    try:
        client.ping()
        return "ready"
    except redis.BusyLoadingError:
        return "loading"
    except redis.RedisError:
        return "down"
    finally:
        client.close()
