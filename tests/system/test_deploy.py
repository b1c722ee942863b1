"""docker-compose.yml and the Dockerfile, checked without Docker: their structure (Redis
with AOF on a volume and a health check, a scalable worker, the dashboard behind auth),
and every command line in them parsed by the real `taskfire` CLI, with the environment
the container would have, so that they cannot drift from it."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml  # type: ignore[import-untyped]

from taskfire import cli
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
#: What a user sets before `docker compose up` (the file refuses to start without auth).
USER_ENV = {"TASKFIRE_DASHBOARD_AUTH": "ops:a-long-password"}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^}])*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$ in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise LookupError(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""
    return _VARIABLE.sub(one, value)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), USER_ENV if env is None else env)


def argv_of(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def parse(argv: list[str]) -> Any:
    """The command line as the real CLI parses it; fails the test where argparse refuses it."""
    assert argv[0] == "taskfire", f"{argv}: not a taskfire command"
    try:
        return cli.parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"the taskfire CLI refuses {shlex.join(argv)} (see its message above)")


def worker_config(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker's settings from its command line and its container's environment."""
    for name in list(os.environ):
        if name.startswith("TASKFIRE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    args = parse(argv)
    assert args.command == "worker"
    return cli.worker_config(args)


def seconds(duration: str) -> float:
    """A compose duration ("30s", "1m30s") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"duration {duration!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_redis_keeps_its_data_with_aof_on_a_volume_and_has_a_health_check():
    services = compose()["services"]
    redis = services["redis"]
    argv = argv_of(redis["command"])
    assert argv[0] == "redis-server"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"  # an evicted job is a lost job
    [volume] = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in compose()["volumes"]
    assert argv_of(redis["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]


def test_the_worker_service_scales_and_its_command_is_the_real_cli(monkeypatch):
    services = compose()["services"]
    worker = services["worker"]
    # --scale worker=4 needs no fixed container name nor host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    config = worker_config(argv_of(worker["command"]), worker["environment"], monkeypatch)
    assert urlparse(config.redis_url).hostname == "redis" and "redis" in services
    for module in config.modules:
        importlib.import_module(module)
    # Docker waits stop_grace_period after SIGTERM, then kills: jobs need their shutdown timeout.
    assert seconds(worker["stop_grace_period"]) > config.shutdown_timeout
    assert config.log_format == "json"


def test_the_dashboard_runs_under_gunicorn_behind_auth_and_its_command_is_the_real_cli():
    services = compose()["services"]
    dash = services["dashboard"]
    args = parse(argv_of(dash["command"]))
    assert args.command == "dashboard" and args.run is cli.cmd_dashboard  # gunicorn
    host, _, port = args.bind.rpartition(":")
    assert host == "0.0.0.0" and f"{port}:{port}" in dash["ports"]
    assert args.basic_auth == USER_ENV["TASKFIRE_DASHBOARD_AUTH"] or args.bearer_token
    assert urlparse(dash["environment"]["TASKFIRE_REDIS_URL"]).hostname == "redis"
    assert dash["depends_on"]["redis"]["condition"] == "service_healthy"
    # Without credentials compose refuses to start rather than serve a dashboard nobody may use.
    with pytest.raises(LookupError, match="TASKFIRE_DASHBOARD_AUTH"):
        compose({})


def test_the_images_command_is_the_real_cli_in_exec_form(monkeypatch):
    instructions = dockerfile()
    env = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                name, sep, value = item.partition("=")
                assert sep, f"ENV {rest}: write NAME=value"
                env[name] = value
        if word == "COPY" and not rest.startswith("--"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    entrypoint = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    cmd = [rest for word, rest in instructions if word == "CMD"]
    assert len(cmd) == 1
    # Exec form: the worker is the process that receives SIGTERM, not a shell that drops it.
    argv = (entrypoint[-1] if entrypoint else []) + json.loads(cmd[0])
    config = worker_config(argv, env, monkeypatch)
    assert config.modules and all(importlib.import_module(m) for m in config.modules)
    # The compose services use this image and override its command with the same CLI.
    services = compose()["services"]
    assert services["worker"]["build"] == services["dashboard"]["build"] == "."


def test_a_command_that_drifted_from_the_cli_is_caught(monkeypatch):
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        parse(["taskfire", "worker", "--concurrency", "4"])  # taskfire says --threads
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        parse(["taskfire", "dashboard", "--port", "8008"])
    with pytest.raises(Exception, match="weight"):
        worker_config(["taskfire", "worker", "--queues", "critical:5,default"], {}, monkeypatch)


def test_compose_interpolation_follows_composes_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET}-${UNSET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$$SET-$SET", env) == "x--d-d--$SET-x"
    with pytest.raises(LookupError, match="UNSET: needed"):
        interpolate("${UNSET:?needed}", env)
