"""`python manage.py taskfire_worker [modules] [options]`: `taskfire worker` for the
project, with Django set up in every worker process (they are forked from this one),
the connection settings and job modules from settings.TASKFIRE, and database connections
closed around each job (CloseOldConnections)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections

from taskfire import cli
from taskfire.contrib.django.apps import job_modules, settings
from taskfire.contrib.django.connections import CloseOldConnections
from taskfire.filters import global_filters


class Command(BaseCommand):
    help = "Runs taskfire workers for the project's jobs (the options of `taskfire worker`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        cli.add_worker_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        s = settings()
        fields = {f: options.get(f) for f in cli.cfg.WorkerConfig.__struct_fields__}
        fields["modules"] = fields["modules"] or job_modules()
        for field, key in (("redis_url", "REDIS_URL"), ("prefix", "PREFIX"), ("queues", "QUEUES"),
                           ("retention", "RETENTION")):
            if fields[field] is None and s.get(key) is not None:
                fields[field] = str(s[key]) if field != "queues" or isinstance(s[key], str) else ",".join(s[key])
        global_filters.add(CloseOldConnections())
        connections.close_all()  # the worker processes are forked from this one: share no socket
        code = cli.cmd_worker(argparse.Namespace(**fields))
        if code:
            sys.exit(code)
