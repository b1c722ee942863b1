"""How the dashboard writes times, durations, numbers, values and schedules (Jinja
filters), one way on every page: a time is relative ("3 minutes ago", by humanize) with
the exact time on hover, in UTC until app.js shows it in the viewer's time zone if they
chose so; counts have thousands separators; a CRON schedule is said in words by
cron-descriptor."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

import humanize
from cron_descriptor import ExpressionDescriptor, FormatError, Options  # type: ignore[import-untyped]
from markupsafe import Markup, escape

from taskfire.cron import Schedule

#: Characters of a value shown on a job's page before it is cut (the whole value is a
#: link away).
VALUE_CHARS = 20_000


def when(ts: float | datetime | None, now: float | None = None) -> Markup:
    """A time (epoch seconds or an aware datetime) as `<time>`: relative, with the exact
    UTC time on hover and in `datetime` for app.js; a dash if there is none."""
    if ts is None or ts == 0:
        return Markup("—")
    try:
        moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):  # a stored time past year 9999
        return Markup("{:.0f} s after the epoch (past year 9999)").format(ts)
    moment = moment.astimezone(timezone.utc)
    reference = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    relative = humanize.naturaltime(moment, when=reference)
    exact = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), exact, relative)


def breakable(name: str | None) -> Markup:
    """A dotted name (a function, an exception type) that may wrap after each "." and
    ":" rather than mid-word: benchmarks.shop_jobs:send_receipt."""
    if not name:
        return Markup("")
    return Markup(str(escape(name)).replace(".", ".<wbr>").replace(":", ":<wbr>"))


def duration(seconds: float | None) -> str:
    """A span of time at the precision it deserves: 840 ms, 2.5 s, 3.2 min, 1.5 h."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def number(n: int | float | None) -> str:
    """A count with thousands separators."""
    return "—" if n is None else humanize.intcomma(n)


def size(n: int | None) -> str:
    """Bytes, for people: 20.0 MB."""
    return "—" if n is None else humanize.naturalsize(n)


def pretty(value: Any) -> str:
    """A value as indented JSON (its repr when JSON cannot say it); pages cut long ones
    with `cut`."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(value)
        except RecursionError:
            return "(nested too deeply to show)"


def cut(text: str, limit: int = VALUE_CHARS) -> tuple[str, bool]:
    """(text, whether it was cut) to at most `limit` characters."""
    return (text, False) if len(text) <= limit else (text[:limit] + "…", True)


def call_preview(args: list[Any], kwargs: dict[str, Any], limit: int = 120) -> str:
    """A call's arguments on one line, cut to `limit` characters: (42, 'x', retry=True)."""
    parts = [_compact(a) for a in args] + [f"{k}={_compact(v)}" for k, v in kwargs.items()]
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def value_preview(value: Any, limit: int = 120) -> str:
    text = _compact(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


_CRON_WORDS = Options()
_CRON_WORDS.use_24hour_time_format = True
_CRON_WORDS.verbose = False


@lru_cache(maxsize=1024)
def describe_cron(expr: str, tz: str = "UTC") -> str | None:
    """A CRON schedule in words ("At 02:00", "Every 15 minutes", "At 09:30, Monday
    through Friday"), or what is wrong with it: "Never: no date matches it" for one such
    as `Cron.never()` (February 31st). None when the expression cannot be read (the
    page shows it as it is)."""
    try:
        schedule = Schedule(expr, tz)
    except ValueError:
        return None
    if schedule.next_after(datetime.now(timezone.utc)) is None:
        return "Never: no date matches it (the job runs only when triggered)"
    try:
        return str(ExpressionDescriptor(schedule.fields, _CRON_WORDS).get_description())
    except (FormatError, ValueError, KeyError, IndexError):
        return None


FILTERS: dict[str, Callable[..., Any]] = {"when": when, "breakable": breakable, "duration": duration, "number": number, "size": size, "pretty": pretty,
           "describe_cron": describe_cron}
