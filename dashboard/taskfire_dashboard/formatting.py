"""How the dashboard writes times, durations and values (Jinja filters)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

#: The most of a value a page shows (a 20 MB argument would make a 20 MB page).
PRETTY_LIMIT = 20_000


def when(ts: float | None) -> str:
    """A time (epoch seconds) in UTC, or a dash."""
    if not ts:
        return "—"
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return f"{ts:.0f} s after the epoch (past year 9999)"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pretty(value: Any) -> str:
    """A value as indented JSON (its repr when JSON cannot say it), its first
    PRETTY_LIMIT characters when it is longer (`taskfire job show` prints it all)."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except RecursionError:
            text = "(nested too deeply to show)"
    if len(text) <= PRETTY_LIMIT:
        return text
    return f"{text[:PRETTY_LIMIT]}\n… ({len(text) - PRETTY_LIMIT:,} more characters: taskfire job show ID prints them)"
