"""The Django app: reads `settings.TASKFIRE` and makes the project's client when ready."""

from __future__ import annotations

import importlib.util
from typing import Any

from django import conf  # (conf.settings, read at call time: the module holds no lazy object)
from django.apps import AppConfig, apps

from ...client import Taskfire
from ...errors import ConfigError

KEYS = ("REDIS_URL", "PREFIX", "RETENTION", "QUEUES", "MODULES", "DASHBOARD_READ_ONLY")

_client: Taskfire | None = None


def settings() -> dict[str, Any]:
    """settings.TASKFIRE, checked: a misspelt key is an error, not a silent default."""
    given = getattr(conf.settings, "TASKFIRE", {}) or {}
    unknown = sorted(set(given) - set(KEYS))
    if unknown:
        raise ConfigError(f"settings.TASKFIRE: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    return dict(given)


def client() -> Taskfire:
    """The project's Taskfire (see TaskfireConfig.ready)."""
    if _client is None:
        raise ConfigError('taskfire has no client yet: add "taskfire.contrib.django" to INSTALLED_APPS')
    return _client


def job_modules() -> list[str]:
    """settings.TASKFIRE["MODULES"], else the `jobs` module of every installed app that has one."""
    configured = settings().get("MODULES")
    if configured:
        return list(configured)
    return [f"{app.name}.jobs" for app in apps.get_app_configs()
            if app.name != TaskfireConfig.name and importlib.util.find_spec(f"{app.name}.jobs") is not None]


class TaskfireConfig(AppConfig):
    name = "taskfire.contrib.django"
    label = "taskfire"
    verbose_name = "taskfire"

    def ready(self) -> None:
        global _client
        s = settings()
        _client = Taskfire(s.get("REDIS_URL"), prefix=s.get("PREFIX"), retention=s.get("RETENTION"))
