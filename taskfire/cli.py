"""The `taskfire` command: worker, up, job, jobs, queue, server, recurring, stats."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable, Sequence


from . import logs
from .client import Taskfire
from .errors import ConfigError, TaskfireError
from .job import registry
from .server import config as cfg
from .storage import TRANSIENT_ERRORS, connection
from .storage import check_access

log = logging.getLogger("taskfire")


def setup_logging(level: str, log_format: str | None = None) -> None:
    """Text or JSON lines on stderr (the format defaults to TASKFIRE_LOG_FORMAT, else text)."""
    logs.configure(level, log_format or os.environ.get("TASKFIRE_LOG_FORMAT") or "text")


def import_modules(modules: Sequence[str]) -> None:
    """Imports the job modules (from the current directory too, as `python -m` would)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            detail = "".join(traceback.format_exception(exc))
            raise SystemExit(f"{detail}\ntaskfire: cannot import job module {name!r}: "
                             f"{type(exc).__name__}: {exc}") from None


def add_worker_options(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per WorkerConfig field, each also read from its TASKFIRE_* variable."""
    for field in cfg.WorkerConfig.__struct_fields__:
        if field in skip:
            continue
        env = cfg.env_name(field)
        if field == "modules":
            parser.add_argument("modules", nargs="*", help=f"{cfg.HELP[field]} [{env}]")
            continue
        if cfg.WorkerConfig.__struct_defaults__[cfg.WorkerConfig.__struct_fields__.index(field)] is False:
            # a switch (--burst): a value after it would swallow the module that follows
            parser.add_argument("--" + field.replace("_", "-"), dest=field, action="store_const", const="true",
                                help=f"{cfg.HELP[field]} [{env}=1]")
            continue
        parser.add_argument("--" + field.replace("_", "-"), dest=field, metavar="VALUE",
                            help=f"{cfg.HELP[field]} [{env}]")


def worker_config(args: argparse.Namespace, **extra: Any) -> cfg.WorkerConfig:
    given = {}
    for field in cfg.WorkerConfig.__struct_fields__:
        raw = getattr(args, field, None)
        if field == "modules":
            given[field] = tuple(raw) if raw else None
        elif raw is not None:
            given[field] = cfg.parse_value(field, raw)
    given.update({k: v for k, v in extra.items() if v is not None})
    return cfg.from_env(**given)


def check_server(url: str, prefix: str) -> None:
    """Refuses what waiting cannot fix: credentials Redis refuses, a certificate it does
    not trust, a redis:// URL that names a Redis Cluster node (keys outside that node's
    slots would fail at every call). A Redis not up yet is waited for. Warns when Redis
    may evict keys: an evicted job is a lost job."""
    if not check_access(url):  # raises ConfigError on what waiting cannot fix
        log.warning("Redis at %s does not answer yet; the workers wait for it", connection.redacted(url))
        return
    facts = connection.server_facts(url)  # None where the server would not say
    if facts.cluster_enabled and not connection.is_cluster_url(url):
        raise ConfigError(f"{connection.redacted(url)} is a Redis Cluster node: use "
                          f"{connection.CLUSTER_SCHEME}://host:port and a hash-tagged prefix such as "
                          f"'{{taskfire}}:'")
    policy = facts.eviction_policy
    if policy and policy != "noeviction":
        log.warning("Redis maxmemory-policy is %r: under memory pressure it may evict jobs. "
                    "Set it to 'noeviction'.", policy)


def cmd_worker(args: argparse.Namespace) -> int:
    config = worker_config(args)
    setup_logging(config.log_level, config.log_format)
    if config.redis_url == "embedded":
        from .embedded import EmbeddedServer
        config = cfg.WorkerConfig(**{**_asdict(config), "redis_url": EmbeddedServer.shared().url})
    import_modules(config.modules)
    names = sorted(n for n in registry if n.split(":")[0] in config.modules)
    if not names:
        log.warning("no @job functions found in %s", ", ".join(config.modules) or "(no modules given)")
    else:
        log.info("jobs: %s", ", ".join(names))
    check_server(config.redis_url, config.prefix)
    if config.recurring_file:
        report = Taskfire(config.redis_url, prefix=config.prefix).recurring.sync(
            config.recurring_file, config.environment or None)
        log.info("recurring jobs from %s: %s", config.recurring_file, report)
    from .server.server import Server
    client_factory = functools.partial(Taskfire, config.redis_url, prefix=config.prefix, retention=config.retention)
    return Server(config, client_factory).run()


def _asdict(config: cfg.WorkerConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__struct_fields__}


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded server + worker + dashboard (+ demo jobs), until Ctrl-C."""
    from .embedded import EmbeddedServer
    setup_logging(os.environ.get("TASKFIRE_LOG_LEVEL", "INFO"))
    if args.dashboard != "off":
        dashboard_factory()  # its libraries missing: say so before starting anything
    server = EmbeddedServer(args.data_dir)
    joined = server.join()
    url = server.url if joined else server.start()
    print(f"taskfire: embedded Valkey at {url} (data in {server.data_dir}"
          f"{', already running' if joined else ''})", flush=True)
    env = dict(os.environ, TASKFIRE_REDIS_URL=url)
    worker = subprocess.Popen(_up_worker_command(args), env=env)
    children = [worker]
    if args.dashboard != "off":
        dashboard_args = [sys.executable, "-m", "taskfire", "dashboard", "--bind", args.dashboard, "--workers", "1"]
        if args.prefix:
            dashboard_args += ["--prefix", args.prefix]
        children.append(subprocess.Popen(dashboard_args, env=env))
    stopping = False

    def stop_children() -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        stop_children()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if args.demo:
            from .demo import run_demo
            run_demo(Taskfire(url, prefix=args.prefix or None), lambda: stopping or worker.poll() is not None)
        print("taskfire: running; press Ctrl-C to stop", flush=True)
        while worker.poll() is None:
            time.sleep(0.2)
    finally:
        stop_children()
        for child in children:
            child.wait()
        if not joined:
            server.stop()
    return 0 if stopping else (worker.returncode or 0)


def _up_worker_command(args: argparse.Namespace) -> list[str]:
    """The `taskfire worker` command `taskfire up` runs (with the demo's jobs and queues)."""
    modules = list(args.modules or [])
    if args.demo and "taskfire.demo" not in modules:
        modules.append("taskfire.demo")
    command = [sys.executable, "-m", "taskfire", "worker", *modules]
    for flag in ("queues", "processes", "threads", "prefix"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    if args.demo and not args.queues:
        command += ["--queues", "critical,default,low"]
    return command


def cmd_job(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    if args.action == "show":
        job = tf.get_job(args.id)
        if job is None:
            print(f"no job {args.id}", file=sys.stderr)
            return 1
        print(f"{job.id}  {job.function}  queue={job.queue}  state={job.state}")
        print(f"args={job.args!r} kwargs={job.kwargs!r} retries={job.retry_count}")
        if job.recurring_id:
            print(f"fired by recurring job {job.recurring_id!r} for its {job.recurring_tick:%Y-%m-%d %H:%M:%S} UTC tick")
        if job.result is not None:
            print(f"result={job.result!r}")
        for e in job.history:
            print(f"  {e.at:%Y-%m-%d %H:%M:%S.%f}  {e.state:<10} {e.reason or ''}")
        if job.exception and job.exception.traceback:
            print(job.exception.traceback)
        return 0
    done = tf.requeue(args.id) if args.action == "requeue" else tf.delete(args.id)
    print(f"{args.action}d {args.id}" if done else f"{args.id}: no such job, or nothing to do")
    return 0 if done else 1


def cmd_recurring(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    if args.action == "sync":
        if not args.target:
            raise ConfigError("recurring sync needs the TOML file: taskfire recurring sync FILE")
        print(tf.recurring.sync(args.target, args.env))
        return 0
    if args.action == "list":
        jobs = tf.recurring.list()
        if not jobs:
            print("no recurring jobs")
        for r in jobs:
            state = "enabled" if r.enabled else "disabled"
            nxt = f"{r.next_run:%Y-%m-%d %H:%M:%S} UTC" if r.next_run else "never"
            last = f"{r.last_run:%Y-%m-%d %H:%M:%S} UTC ({r.last_job_state or 'gone'})" if r.last_run else "never"
            print(f"{r.id}  {r.function}  cron={r.cron!r} tz={r.tz} queue={r.queue} {state}")
            print(f"    next {nxt}  last {last}{'  ERROR: ' + r.error if r.error else ''}")
        return 0
    if not args.target:
        raise ConfigError(f"recurring {args.action} needs the recurring job's id")
    if args.action == "trigger":
        job_id = tf.recurring.trigger(args.target)
        print(f"enqueued job {job_id}" if job_id else f"no recurring job {args.target!r}")
        return 0 if job_id else 1
    done = {"enable": tf.recurring.enable, "disable": tf.recurring.disable,
            "remove": tf.recurring.remove}[args.action](args.target)
    print(f"{args.action}d {args.target}" if done else f"no recurring job {args.target!r}")
    return 0 if done or args.action == "remove" else 1


def cmd_queue(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    if args.action == "list":
        before = {q.name: q for q in tf.queues.list()}
        time.sleep(args.sample)
        now = datetime.now(timezone.utc)
        print(f"{'queue':<24}{'length':>9}  {'state':<8}{'oldest':>10}{'in/s':>9}{'out/s':>9}")
        for q in tf.queues.list():
            b = before.get(q.name, q)
            age = f"{(now - q.oldest_enqueued_at).total_seconds():.1f}s" if q.oldest_enqueued_at else "-"
            print(f"{q.name:<24}{q.length:>9}  {'paused' if q.paused else 'active':<8}{age:>10}"
                  f"{(q.jobs_in - b.jobs_in) / args.sample:>9.1f}{(q.jobs_out - b.jobs_out) / args.sample:>9.1f}")
        return 0
    if not args.names:
        raise ConfigError(f"queue {args.action} needs a queue name")
    if args.action in ("pause", "resume"):
        for name in args.names:
            changed = tf.queues.pause(name) if args.action == "pause" else tf.queues.resume(name)
            print(f"{name}: {args.action}d" if changed else f"{name}: already {args.action}d")
        return 0
    if args.action == "move":
        if len(args.names) != 2:
            raise ConfigError("queue move needs two names: FROM TO")
        r = tf.queues.move(*args.names)
        print(f"moved {r.changed} job(s) from {args.names[0]} to {args.names[1]} in {r.calls} call(s)")
        return 0
    for name in args.names:
        r = tf.queues.purge(name)
        print(f"{name}: purged {r.changed} job(s) in {r.calls} call(s)")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    act = tf.requeue_all if args.action == "requeue" else tf.delete_all
    t0 = time.perf_counter()
    r = act(args.state, function=args.function, exception=args.exception, queue=args.queue)
    print(f"{args.action}d {r.changed} {args.state} job(s) (looked at {r.looked_at}) in {r.calls} "
          f"call(s), {time.perf_counter() - t0:.2f} s")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    if args.action == "quiet":
        if not args.id:
            raise ConfigError("server quiet needs the server's id (see: taskfire server list)")
        done = tf.quiet_server(args.id)
        print(f"{args.id}: asked to go quiet" if done else f"no server {args.id!r}")
        return 0 if done else 1
    now = tf.storage.server_time_ms()
    for s in tf.servers():
        age = (now - int(s.get("heartbeat", now))) / 1000
        print(f"{s['id']}  host={s.get('host')} pid={s.get('pid')} queues={s.get('queues')} "
              f"{s.get('processes')}x{s.get('threads')} state={s.get('state', 'running')} heartbeat {age:.1f}s ago")
    return 0


def resolve_callable(target: str, option: str) -> Callable[..., Any]:
    """`module:function` imported, or a ConfigError naming what is wrong with it."""
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"{option} takes MODULE:FUNCTION, not {target!r}")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except ImportError as exc:
        raise ConfigError(f"{option} {target}: cannot import {module_name!r}: {exc}") from exc
    except AttributeError:
        raise ConfigError(f"{option} {target}: module {module_name!r} has no {name!r}") from None
    if not callable(found):
        raise ConfigError(f"{option} {target}: {name!r} is not a function")
    return found  # type: ignore[no-any-return]


def dashboard_factory() -> Callable[..., Any]:
    """taskfire_dashboard.create_app, or a ConfigError saying how to install what it needs."""
    try:
        from taskfire_dashboard import create_app
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs its libraries ({exc.name or exc}): "
                          f"pip install 'taskfire[dashboard]'") from None
    return create_app


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serves the dashboard with gunicorn."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped,unused-ignore]

    create_app = dashboard_factory()
    setup_logging(os.environ.get("TASKFIRE_LOG_LEVEL", "INFO"))
    url = args.redis_url or os.environ.get("TASKFIRE_REDIS_URL")
    if url == "embedded":
        from .embedded import EmbeddedServer
        url = EmbeddedServer.shared().url
    basic = None
    if args.basic_auth:
        user, sep, password = args.basic_auth.partition(":")
        if not sep or not user or not password:
            raise ConfigError("--basic-auth takes USER:PASSWORD")
        basic = (user, password)
    if not check_access(url or connection.DEFAULT_URL):  # credentials or a certificate refused: ConfigError
        log.warning("Redis at %s does not answer yet; pages fail until it does",
                    connection.redacted(url or connection.DEFAULT_URL))
    secret = os.environ.get("TASKFIRE_DASHBOARD_SECRET") or os.urandom(32).hex()  # one per server, shared by its workers
    app = create_app(url, prefix=args.prefix, basic_auth=basic, bearer_token=args.bearer_token,
                     read_only=args.read_only, secret_key=secret)
    if args.pages and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --pages from the current directory, as a worker's modules
    for target in args.pages:
        add_pages = resolve_callable(target, "--pages")
        add_pages(app)
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--bind takes HOST:PORT, not {args.bind!r}")
    if host not in ("127.0.0.1", "localhost", "::1") and not (basic or args.bearer_token):
        log.warning("dashboard bound to %s without --basic-auth or --bearer-token: only requests from this "
                    "machine will be served", args.bind)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", args.bind)
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-" if args.access_log else None)
            # gunicorn's control socket is one path per user (~/.gunicorn/gunicorn.ctl):
            # several dashboards on a host would share it, and `gunicornc` would steer
            # whichever bound it last. Nothing here uses it.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app

    print(f"taskfire dashboard on http://{args.bind}/", flush=True)
    Server().run()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    tf = Taskfire(args.redis_url, prefix=args.prefix)
    counts = tf.storage.monitor.counts()
    for q in counts["queues"]:
        print(f"queue {q['name']:<20} {q['length']}")
    states, totals = counts["states"], counts["totals"]
    print(f"scheduled {states['Scheduled']}  processing {states['Processing']}  failed (now) {states['Failed']}  "
          f"servers {counts['servers']}")
    print(f"total succeeded {totals['succeeded']}  failed attempts {totals['failed']}  deleted {totals['deleted']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="taskfire", description="Background jobs on Redis.", allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run workers for the given job modules")
    add_worker_options(w)
    w.set_defaults(run=cmd_worker)

    u = sub.add_parser("up", help="start the embedded server and a worker (for a first try)")
    u.add_argument("modules", nargs="*", help="job modules for the worker")
    u.add_argument("--demo", action="store_true", help="enqueue sample jobs and report on them")
    u.add_argument("--data-dir", default=None, help="where the embedded server keeps its data [TASKFIRE_DATA_DIR]")
    u.add_argument("--dashboard", default="127.0.0.1:8008", metavar="HOST:PORT",
                   help="where to serve the dashboard (default 127.0.0.1:8008), or 'off'")
    for flag in ("queues", "processes", "threads", "prefix"):
        u.add_argument(f"--{flag}", default=None, help=cfg.HELP[flag])
    u.set_defaults(run=cmd_up)

    def connection(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--redis-url", default=None, help="Redis URL [TASKFIRE_REDIS_URL]")
        sp.add_argument("--prefix", default=None, help="key prefix [TASKFIRE_PREFIX]")

    j = sub.add_parser("job", help="show, requeue or delete a job")
    j.add_argument("action", choices=("show", "requeue", "delete"))
    j.add_argument("id")
    connection(j)
    j.set_defaults(run=cmd_job)

    rc = sub.add_parser("recurring", help="list, trigger, enable, disable, remove or sync recurring jobs")
    rc.add_argument("action", choices=("list", "trigger", "enable", "disable", "remove", "sync"))
    rc.add_argument("target", nargs="?", help="the recurring job's id (the TOML file for sync)")
    rc.add_argument("--env", default=None, help="sync: the file's environment section to apply [TASKFIRE_ENVIRONMENT]")
    connection(rc)
    rc.set_defaults(run=cmd_recurring)

    q = sub.add_parser("queue", help="list, pause, resume, move or purge queues")
    q.add_argument("action", choices=("list", "pause", "resume", "move", "purge"))
    q.add_argument("names", nargs="*", help="queue name(s); move takes FROM TO")
    q.add_argument("--sample", type=float, default=1.0, help="list: seconds over which in/out rates are measured")
    connection(q)
    q.set_defaults(run=cmd_queue)

    jb = sub.add_parser("jobs", help="requeue or delete every job in a state (optionally filtered)")
    jb.add_argument("action", choices=("requeue", "delete"))
    jb.add_argument("--state", default="Failed", help="the jobs' state (default Failed)")
    jb.add_argument("--function", default=None, help="only jobs of this function (module:name)")
    jb.add_argument("--exception", default=None, help="only jobs that failed with this exception type")
    jb.add_argument("--queue", default=None, help="only jobs of this queue")
    connection(jb)
    jb.set_defaults(run=cmd_jobs)

    sv = sub.add_parser("server", help="list servers, or quiet one before a deploy")
    sv.add_argument("action", choices=("list", "quiet"))
    sv.add_argument("id", nargs="?")
    connection(sv)
    sv.set_defaults(run=cmd_server)

    d = sub.add_parser("dashboard", help="serve the dashboard (gunicorn)")
    d.add_argument("--bind", default="127.0.0.1:8008", help="HOST:PORT (default 127.0.0.1:8008)")
    d.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    d.add_argument("--threads", type=int, default=4, help="threads per worker process")
    d.add_argument("--read-only", action="store_true", help="show everything, allow no action")
    d.add_argument("--basic-auth", default=None, help="USER:PASSWORD required of every request")
    d.add_argument("--bearer-token", default=None, help="a token accepted as 'Authorization: Bearer ...'")
    d.add_argument("--access-log", action="store_true", help="log each request")
    d.add_argument("--pages", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="a function called with the app to add the application's own pages (repeatable)")
    connection(d)
    d.set_defaults(run=cmd_dashboard)

    s = sub.add_parser("stats", help="queue lengths and counters")
    connection(s)
    s.set_defaults(run=cmd_stats)
    for command in sub.choices.values():
        command.allow_abbrev = False  # a misspelt flag is an error, never a guess
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"taskfire: {exc}", file=sys.stderr)
        return 2
    except TaskfireError as exc:
        print(f"taskfire: {exc}", file=sys.stderr)
        return 1
    except TRANSIENT_ERRORS as exc:
        print(f"taskfire: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
