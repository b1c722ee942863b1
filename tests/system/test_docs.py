"""Every code block of README.md and docs/*.md is checked here, so the guide cannot drift
from the code. One test per block, named by its file and line (`docs/jobs.md:42`).

What is run, and what is not: python scripts and bash commands are run, and their
outcome must be stated (asserted, or shown in a ```text block that their output must
match); python and toml files are written and imported or loaded; a redis.conf is given
to a real redis-server. Not run: README's install line (its parts are checked one by
one, see `check_install`), the commands marked `docs-test: parse` (they need a remote
Redis: the real CLI parser must accept them), and json lines (parsed). Nothing else is
exempt: a block of any other kind fails.

The convention (a block's fence language decides what is done with it):

- A page runs in a temporary directory of its own (its project), against the session's
  throwaway Valkey under a key prefix of its own: everything it runs gets
  TASKFIRE_REDIS_URL and TASKFIRE_PREFIX (other TASKFIRE_* variables are cleared),
  TASKFIRE_DATA_DIR inside the project (so "embedded" starts a server of its own), and
  this venv's `taskfire` first on PATH, and the checkout on PYTHONPATH (`python -m
  benchmarks.ha` runs as from its root). Blocks run in page order; testing one block alone
  first runs the blocks before it.
- ```python whose first line is a comment naming a file (`# myapp/jobs.py`): the file is
  written into the project before the page's first block runs (any block may import it),
  and its test imports it in a fresh interpreter.
- Any other ```python: a script (`__main__`), run in a fresh interpreter in the project
  directory; it must exit 0. Blocks are self-contained (each imports what it uses) and
  state their outcome: with an `assert` statement, or with a ```text block right after
  them. A script that does neither fails (`check_outcome_is_stated`).
- ```bash: run with `bash -e -o pipefail` in the project directory; it must exit 0, and
  a ```text block right after it shows its output. A block holding one `taskfire
  worker`, `taskfire dashboard` or `taskfire up` command instead runs that command in the
  background until the page ends: the test waits until it reports ready (a worker
  "taking jobs", the dashboard answering HTTP, `up` "running"), later blocks use it, and
  after the page's last block it is stopped with SIGTERM and must exit 0. A `taskfire
  worker --burst` ends by itself: it runs in the foreground, as any command.
- ```text is the output of the python or bash block before it: every line must match, in
  order (surrounding whitespace and blank lines aside). `...` inside a line matches
  anything; a line that is only `...` matches any number of lines.
- ```toml whose first line names a file: written like a python file; must parse, and
  if it declares recurring jobs, taskfire's loader must accept it in every environment it
  names.
- ```json: every line must be a JSON value (an example log line, say).
- ```conf whose first line is `# redis.conf`: a real redis-server starts with it and must
  report every setting it makes.
- A block right after `<!-- docs-test: parse -->` is not run, for it needs what a test
  machine lacks (a remote Redis): each line must be a `taskfire` command (optionally after
  VAR=value assignments), and the real CLI parser must accept it; a worker command must
  also make a valid WorkerConfig (bad values raise) with those variables.
- `<!-- docs-test: install -->` marks README's first block: see `check_install`.
- A python file block right after `<!-- docs-test: write -->` is written like the others
  but not imported alone: it needs a framework set up first (a Django URLconf); the page's
  later blocks, which set it up, use it.
- Ports 8000-8099 in a page are replaced by free ports, so parallel runs never collide.
- Executed blocks must not name port 6379: that Redis belongs to the machine.
- Any other fence language, or an unmarked fence, fails: extend this convention first.

Inline code (`tf.requeue_all`, `--lease-timeout`, `job:<id>:history`, ...) is checked by
tests/system/test_docs_names.py, which lists the shapes of span it knows.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from taskfire import cli
from taskfire.embedded import free_port, valkey_binary
from taskfire.recurring import load_file
from tests.conftest import ROOT, report, wait_for

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
OPEN_FENCE = re.compile(r"^(\s*)```(.*)$")
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(\S+)\s*-->$")
FILE_LINE = re.compile(r"^#\s*([\w][\w./-]*\.(?:py|toml|conf))\s*$")
DOC_PORT = re.compile(r"(?<=:)80\d\d\b")
LONG_RUNNING = {"worker": "taking jobs from", "up": "taskfire: running", "dashboard": None}
DIRECTIVES = {"parse", "install", "write"}


@dataclass
class Block:
    page: str        # path relative to the repository, e.g. "docs/jobs.md"
    line: int        # line of the block's first line of code
    lang: str
    code: str
    index: int       # position among the page's blocks
    directive: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def file(self) -> str | None:
        """The project file this block is, if its first line names one."""
        first = self.code.split("\n", 1)[0]
        m = FILE_LINE.match(first)
        return m.group(1) if m and self.lang in ("python", "toml", "conf") else None


def parse_page(path: Path) -> list[Block]:
    rel = str(path.relative_to(ROOT))
    lines = path.read_text().split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = OPEN_FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).strip()
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        d = DIRECTIVE.match(previous)
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        if i == len(lines):
            raise AssertionError(f"{rel}:{start}: the code block is never closed")
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[start:i]]
        blocks.append(Block(rel, start + 1, lang, "\n".join(body), len(blocks), d.group(1) if d else None))
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in parse_page(page)]
BY_PAGE = {page: [b for b in ALL_BLOCKS if b.page == page] for page in {b.page for b in ALL_BLOCKS}}


# -- running a page ------------------------------------------------------------------


class Background:
    """A long-running command of a page (worker, dashboard, up)."""

    def __init__(self, block: Block, command: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.block, self.command, self.proc, self.log = block, command, proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str | None:
        """SIGTERM, as a process manager stops it; a complaint if it did not exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(40)  # a process still running after this is killed below, and reported
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if code != 0:
            return f"{self.command!r} (started at {self.block.id}) exited with {code} on SIGTERM:\n{self.output()[-3000:]}"
        return None


class Page:
    def __init__(self, name: str, root: Path, url: str) -> None:
        self.name = name
        self.blocks = BY_PAGE[name]
        self.dir = root
        self.prefix = "docs-" + re.sub(r"\W", "-", name) + ":"
        self.url = url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFIRE_")}
        self.env.update(TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=self.prefix, TASKFIRE_DATA_DIR=str(root / "data"),
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1",
                        PYTHONPATH=str(ROOT))  # the checkout's benchmarks and examples, as from its root
        self.ports: dict[str, str] = {}
        self.results: dict[int, str | None] = {}  # block index -> None (passed) or what went wrong
        self.outputs: dict[int, str] = {}
        self.background: list[Background] = []
        self.finished = False
        for b in self.blocks:
            if b.file:
                target = root / b.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.localize(b.code) + "\n")

    def localize(self, text: str) -> str:
        """The block's text with its documentation ports (80xx) replaced by free ones."""
        def swap(m: re.Match[str]) -> str:
            if m.group(0) not in self.ports:
                self.ports[m.group(0)] = str(free_port())
            return self.ports[m.group(0)]
        return DOC_PORT.sub(swap, text)

    def result(self, block: Block) -> None:
        """Runs the page up to this block (once each) and fails if this block failed."""
        for b in self.blocks[:block.index + 1]:
            if b.index not in self.results:
                started = time.perf_counter()
                try:
                    run_block(self, b)
                    self.results[b.index] = None
                except AssertionError as exc:
                    self.results[b.index] = str(exc)
                except Exception as exc:  # a checker's own error (bad TOML, ConfigError...) names the problem too
                    self.results[b.index] = f"{type(exc).__name__}: {exc}"
                if b is self.blocks[-1]:
                    problems = self.finish()
                    if problems:
                        self.results[b.index] = "\n".join(filter(None, [self.results[b.index], *problems]))
                timings.append((b.id, time.perf_counter() - started))
        problem = self.results[block.index]
        if problem is not None:
            earlier = [b.id for b in self.blocks[:block.index] if self.results.get(b.index) and b.lang != "text"]
            note = f"\n(earlier blocks of this page failed too: {', '.join(earlier)})" if earlier else ""
            pytest.fail(f"{block.id} ({block.lang}): {problem}{note}", pytrace=False)

    def finish(self) -> list[str]:
        """Stops the page's background commands; what went wrong doing so."""
        if self.finished:
            return []
        self.finished = True
        problems = [p for p in (bg.stop() for bg in self.background) if p]
        r = redis.Redis.from_url(self.url)
        keys = list(r.scan_iter(match=self.prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i:i + 1000])
        r.close()
        return problems

    def run(self, argv: list[str], code: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, input=code, cwd=self.dir, env=self.env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"still running after {timeout} s; output so far:\n{exc.stdout!r}\n{exc.stderr!r}") from None


timings: list[tuple[str, float]] = []


def run_block(page: Page, block: Block) -> None:
    if block.directive is not None:
        assert block.directive in DIRECTIVES, f"unknown directive {block.directive!r} (known: {sorted(DIRECTIVES)})"
        {"parse": check_parsed, "install": check_install, "write": check_written}[block.directive](page, block)
        return
    runner = RUNNERS.get(block.lang)
    assert runner is not None, (f"a ```{block.lang or '(no language)'} block: name its language, one of "
                                f"{', '.join(sorted(RUNNERS))} (see the convention in tests/system/test_docs.py)")
    if block.lang in ("python", "bash"):
        assert not re.search(r"(?<!\d)6379(?!\d)", block.code), \
            "an executed block names port 6379, the machine's own Redis"
        check_outcome_is_stated(page, block)
    runner(page, block)


def check_outcome_is_stated(page: Page, block: Block) -> None:
    """A script or a command shows what it does: a ```text block right after it, or (a
    python script) an `assert` statement. Files and background commands are exempt: the
    first are imported, the second must report ready."""
    if block.file or (block.lang == "bash" and any(long_running(c) for c in commands(block.code))):
        return
    following = page.blocks[block.index + 1] if block.index + 1 < len(page.blocks) else None
    if following is not None and following.lang == "text":
        return
    if block.lang == "python" and any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(block.code))):
        return
    raise AssertionError(f"the block states no outcome: follow it with a ```text block of its output"
                         f"{' or assert what it must do' if block.lang == 'python' else ''}")


def failed(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    return f"{what} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


# The block is compiled under the page's name, padded so that tracebacks give the page's lines.
BOOT = ("import sys; src = sys.stdin.read(); "
        "exec(compile('\\n' * (int(sys.argv[2]) - 1) + src, sys.argv[1], 'exec'), {'__name__': '__main__'})")


def run_python(page: Page, block: Block) -> None:
    if block.file:
        module = block.file.removesuffix(".py").replace("/", ".")
        proc = page.run([sys.executable, "-c", f"import {module}"])
        assert proc.returncode == 0, failed(f"importing {module}", proc)
        page.outputs[block.index] = proc.stdout + proc.stderr
        return
    proc = page.run([sys.executable, "-c", BOOT, block.page, str(block.line)], page.localize(block.code))
    assert proc.returncode == 0, failed("the block", proc)
    page.outputs[block.index] = proc.stdout + proc.stderr


def check_written(page: Page, block: Block) -> None:
    assert block.lang == "python" and block.file, "docs-test: write applies to a python file block (# path.py)"
    assert (page.dir / block.file).exists()


def long_running(command: str) -> str | None:
    """The taskfire subcommand if this command runs until stopped."""
    words = shlex.split(command, comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    if "--burst" in words:
        return None
    if len(words) >= 2 and Path(words[0]).name == "taskfire" and words[1] in LONG_RUNNING:
        return words[1]
    return None


def commands(code: str) -> list[str]:
    """The block's commands: one per line, a trailing backslash continuing it; comments
    and blank lines dropped."""
    out, current = [], ""
    for line in code.split("\n"):
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if shlex.split(current, comments=True):
            out.append(current.strip())
        current = ""
    return out


def run_bash(page: Page, block: Block) -> None:
    code = page.localize(block.code)
    cmds = commands(code)
    kinds = [long_running(c) for c in cmds]
    if any(kinds):
        assert len(cmds) == 1, "a block with a long-running taskfire command must hold only that command"
        start_background(page, block, cmds[0], kinds[0])  # type: ignore[arg-type]
        return
    proc = page.run(["bash", "-e", "-o", "pipefail", "-c", code])
    page.outputs[block.index] = proc.stdout + proc.stderr
    assert proc.returncode == 0, failed("the commands", proc)


def start_background(page: Page, block: Block, command: str, kind: str) -> None:
    log = page.dir / f"background-{len(page.background)}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=page.dir, env=page.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    bg = Background(block, command, proc, log)
    page.background.append(bg)
    ready_line = LONG_RUNNING[kind]
    if ready_line is not None:
        ready = lambda: ready_line in bg.output()  # noqa: E731
    else:
        bind = re.search(r"--bind[ =](\S+)", command)
        address = bind.group(1) if bind else "127.0.0.1:8008"
        ready = lambda: answers(f"http://{address}/")  # noqa: E731
    try:
        wait_for(lambda: ready() or proc.poll() is not None, 60, f"{command!r} to be ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bg.output()[-3000:]}") from None
    assert proc.poll() is None, f"{command!r} exited with {proc.returncode}:\n{bg.output()[-3000:]}"


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # it answered: 401 or 403 when it wants credentials
    except OSError:
        return False
    return True


def check_output(page: Page, block: Block) -> None:
    source = page.blocks[block.index - 1] if block.index else None
    assert source is not None and source.lang in ("python", "bash") and not source.file, (
        "a ```text block shows the output of the python or bash block right before it; there is none")
    assert source.index in page.outputs, f"the block before it ({source.id}) produced no output to compare"
    expected = [line.strip() for line in page.localize(block.code).split("\n") if line.strip()]
    actual = [line.strip() for line in page.outputs[source.index].split("\n") if line.strip()]
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else ".*?".join(map(re.escape, line.split("..."))) + r"\n"
                      for line in expected)
    if not re.fullmatch(pattern, "".join(line + "\n" for line in actual)):
        raise AssertionError(f"the output of {source.id} does not match.\n--- expected\n" + "\n".join(expected)
                             + "\n--- actual\n" + "\n".join(actual))


def check_json(page: Page, block: Block) -> None:
    for n, line in enumerate(block.code.splitlines()):
        if line.strip():
            try:
                json.loads(line)
            except ValueError as exc:
                pytest.fail(f"{block.page}:{block.line + n}: not JSON: {exc}")


def check_toml(page: Page, block: Block) -> None:
    assert block.file, "a ```toml block starts with a comment naming its file (# recurring.toml)"
    path = page.dir / block.file
    data = tomllib.loads(path.read_text())
    if "recurring" in data or "env" in data:
        for env in [None, *data.get("env", {})]:
            load_file(path, env)  # raises ConfigError naming the problem


def check_redis_conf(page: Page, block: Block) -> None:
    assert block.file == "redis.conf", "a ```conf block is a redis.conf: its first line is `# redis.conf`"
    binary = shutil.which("redis-server") or str(valkey_binary())
    port = free_port()
    data = page.dir / "redis-conf-check"
    data.mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, str(page.dir / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data), "--daemonize", "no", "--logfile", ""],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
    try:
        def up() -> bool:
            assert proc.poll() is None, f"{binary} refused the file:\n{proc.stdout.read().decode() if proc.stdout else ''}"
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                return bool(client.ping())
            return False
        wait_for(up, 20, "redis-server to start with the documented redis.conf")
        for line in block.code.split("\n"):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            name, value = words[0], " ".join(words[1:]).strip('"')
            got = client.config_get(name).get(name)
            assert got is not None, f"redis-server does not know the setting {name!r}"
            assert got == str(memory_bytes(value)), f"{name}: the file says {value!r}, redis-server reports {got!r}"
    finally:
        client.close()
        proc.terminate()
        proc.wait(20)


def memory_bytes(value: str) -> str | int:
    m = re.fullmatch(r"(\d+)(kb|mb|gb)", value.lower())
    return int(m.group(1)) * 1024 ** ("kb mb gb".split().index(m.group(2)) + 1) if m else value


def check_parsed(page: Page, block: Block) -> None:
    assert block.lang in ("bash", "shell"), "docs-test: parse applies to command blocks"
    env: dict[str, str] = {}
    for command in commands(page.localize(block.code)):
        words = shlex.split(command, comments=True)
        if words[0] == "export":
            words.pop(0)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if not words:
            continue
        assert Path(words[0]).name == "taskfire", f"{command!r}: a parse-only block holds taskfire commands only"
        args = parse_cli(words[1:], command)
        if args.command == "worker":
            with environment(env):
                cli.worker_config(args)  # raises ConfigError on a bad value


def parse_cli(argv: list[str], what: str) -> Any:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return cli.parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"{what!r} is refused by taskfire's parser: {err.getvalue().strip()}") from None


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("TASKFIRE_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)


def check_install(page: Page, block: Block) -> None:
    """README's first block: the two commands a newcomer and CI run. Installing again here
    would only test pip; each piece the commands rely on is checked instead, and
    `taskfire up --demo` itself is run by tests/integration/test_cli.py."""
    assert block.code.split("\n") == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/taskfire up --demo",
        ".venv/bin/python -m pytest",
    ], "README's two commands changed: CI runs the second one; update this check (and CI) with them"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "pytest>=8" in project["project"]["optional-dependencies"]["dev"]
    assert project["project"]["scripts"]["taskfire"] == "taskfire.cli:main"
    assert project["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert parse_cli(["up", "--demo"], "taskfire up --demo").demo is True
    from tests.integration import test_cli
    assert callable(test_cli.test_up_demo_runs_the_sample_jobs_on_the_embedded_server_with_its_dashboard_and_stops_cleanly)


RUNNERS = {"python": run_python, "bash": run_bash, "text": check_output, "toml": check_toml,
           "conf": check_redis_conf, "json": check_json}


# -- the tests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Page]]:
    made: dict[str, Page] = {}

    def get(name: str) -> Page:
        if name not in made:
            made[name] = Page(name, tmp_path_factory.mktemp(re.sub(r"\W", "-", name)), server.url)
        return made[name]

    yield made_on_demand(made, get)
    for p in made.values():
        p.finish()
    if timings:
        slowest = sorted(timings, key=lambda t: -t[1])[:3]
        report(f"docs: {len(timings)} blocks in {sum(t for _, t in timings):.1f} s; slowest "
               + ", ".join(f"{i} {t:.1f} s" for i, t in slowest))


class made_on_demand(dict[str, Page]):
    """The pages run so far; a page is set up when a test first asks for it."""

    def __init__(self, made: dict[str, Page], make: Any) -> None:
        super().__init__()
        self.made, self.make = made, make

    def __missing__(self, name: str) -> Page:
        page = self.made[name] = self[name] = self.make(name)
        return page


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_block(block: Block, pages: dict[str, Page]) -> None:
    pages[block.page].result(block)


def test_the_guide_is_there() -> None:
    """An empty parametrization would pass silently: the pages and their blocks must exist."""
    assert (ROOT / "docs" / "README.md").exists() and len(PAGES) > 2, "no guide in docs/"
    assert len(ALL_BLOCKS) > 20, f"only {len(ALL_BLOCKS)} code blocks found"
