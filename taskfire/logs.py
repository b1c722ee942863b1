"""Log output of the `taskfire` command: text lines for people, or JSON lines for a log
collector (`--log-format json`, TASKFIRE_LOG_FORMAT=json).

A JSON line is one object: time (UTC, ISO 8601), level, logger, message, process and
thread; `job_id` and `function` on every line logged while a job runs, through any logger
(the job's own included); any `extra=` fields given to the logging call; `exception` with
the traceback, if any.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from .context import current_job
from .errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(process)d %(name)s: %(message)s"

#: Attributes every LogRecord has: the rest were given with `extra=` (or by JobContextFilter).
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JobContextFilter(logging.Filter):
    """Marks each record logged inside a running job with the job's id and function."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job()
        if job is not None:
            record.job_id = job.id
            record.function = job.name
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_"))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=repr)


def configure(level: str, log_format: str = "text") -> None:
    """Logs to stderr at `level`, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(JobContextFilter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        raise ConfigError(f"log format must be text or json, not {log_format!r}")
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("redis").setLevel(logging.WARNING)  # its DEBUG lines are not ours
