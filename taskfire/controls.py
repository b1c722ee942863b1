"""Job controls: limits on when and how a job runs, declared with @job.

    timeout=30                 the run fails with JobTimeout after 30 s (retries apply)
    mutex="sync-{customer_id}" at most one such job runs at a time, cluster-wide; the name
                               is a template over the job's arguments
    mutex_timeout=600          how long a job waits for its mutex or limit before failing
    concurrency=2              at most 2 runs of this function at once, cluster-wide
    limit=("crm-api", 2)       at most 2 runs at once of every job naming this limit (a
                               limit shared by several functions, or a queue's jobs)
    rate=(100, 60)             at most 100 starts per 60 s, cluster-wide (sliding window)
    unique="invoice-{invoice_id}"  while a job with this key is pending (enqueued,
                               scheduled, awaiting or running), enqueueing another returns
                               the pending job's id; True means "same function and
                               arguments"

Limits and rates are enforced by the fetch script: a job that may not start now waits as
Scheduled (for a limit, until a holder finishes, which wakes the longest waiter at once;
for a rate, until the window has room), so waiting costs no CPU and no Redis calls. A
holder's place lapses with its lease when its worker dies.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import string
from typing import Any

import msgspec

from .errors import ConfigError

_LIMIT_NAME = re.compile(r"^[A-Za-z0-9_.:{}-]{1,200}$")


def _template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


class JobControls(msgspec.Struct, frozen=True, omit_defaults=True):
    timeout: float | None = None
    mutex: str | None = None
    mutex_timeout: float = 600.0
    concurrency: int | None = None
    limit: tuple[str, int] | None = None
    rate: tuple[int, float] | None = None
    unique: str | bool | None = None

    def check(self, name: str, signature: inspect.Signature | None) -> None:
        """Raises ConfigError naming a bad control, at decoration time."""
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ConfigError(f"{name}: timeout must be a number of seconds > 0, not {self.timeout!r}")
        if not (isinstance(self.mutex_timeout, (int, float)) and self.mutex_timeout > 0):
            raise ConfigError(f"{name}: mutex_timeout must be a number of seconds > 0")
        if sum(x is not None for x in (self.mutex, self.concurrency, self.limit)) > 1:
            raise ConfigError(f"{name}: choose one of mutex, concurrency and limit")
        if self.concurrency is not None and (not isinstance(self.concurrency, int) or self.concurrency < 1):
            raise ConfigError(f"{name}: concurrency must be a whole number >= 1, not {self.concurrency!r}")
        if self.limit is not None:
            if (not isinstance(self.limit, tuple) or len(self.limit) != 2 or not isinstance(self.limit[1], int)
                    or self.limit[1] < 1 or not _LIMIT_NAME.match(str(self.limit[0]))):
                raise ConfigError(f"{name}: limit must be (name, max running >= 1), not {self.limit!r}")
        if self.rate is not None:
            if (not isinstance(self.rate, tuple) or len(self.rate) != 2 or not isinstance(self.rate[0], int)
                    or self.rate[0] < 1 or not isinstance(self.rate[1], (int, float)) or self.rate[1] <= 0):
                raise ConfigError(f"{name}: rate must be (starts >= 1, per seconds > 0), not {self.rate!r}")
        for label, template in (("mutex", self.mutex), ("unique", self.unique)):
            if isinstance(template, str):
                if not template:
                    raise ConfigError(f"{name}: {label} must not be empty")
                params = set(signature.parameters) if signature is not None else set()
                unknown = [f for f in _template_fields(template) if f not in params]
                if signature is not None and unknown:
                    raise ConfigError(f"{name}: {label} {template!r} names {', '.join(unknown)}, which "
                                      f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'}")

    def fields(self, name: str, signature: inspect.Signature | None, args: tuple[Any, ...],
               kwargs: dict[str, Any], unique_key: str | None, encoded_args: bytes) -> dict[str, bytes | str]:
        """The job-hash fields that make the fetch script and the client enforce these."""
        out: dict[str, bytes | str] = {}
        bound: dict[str, Any] | None = None

        def render(template: str) -> str:
            nonlocal bound
            if bound is None:
                if signature is None:
                    raise ConfigError(f"{name}: a template needs the function's signature")
                b = signature.bind(*args, **kwargs)
                b.apply_defaults()
                bound = dict(b.arguments)
            return template.format(**bound)

        limit = None
        if self.mutex is not None:
            limit = (f"mutex:{render(self.mutex)}", 1)
        elif self.concurrency is not None:
            limit = (f"concurrency:{name}", self.concurrency)
        elif self.limit is not None:
            limit = (f"limit:{self.limit[0]}", self.limit[1])
        if limit is not None:
            out.update(limit=limit[0], limit_max=str(limit[1]),
                       limit_timeout=str(int(self.mutex_timeout * 1000)))
        if self.rate is not None:
            out.update(rate=name, rate_max=str(self.rate[0]), rate_period=str(int(self.rate[1] * 1000)))
        key = unique_key
        if key is None and self.unique is True:
            key = f"{name}:{hashlib.sha1(encoded_args).hexdigest()}"
        elif key is None and isinstance(self.unique, str):
            key = f"{name}:{render(self.unique)}"
        if key is not None:
            out["unique"] = key
        return out
