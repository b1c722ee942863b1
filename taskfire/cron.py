"""CRON schedules in a time zone: the `Cron` helpers, validation, and the next tick.

Expressions are parsed by croniter: 5 fields (minute hour day month weekday), 6 fields
with seconds first (as Hangfire's), or a macro (@hourly, @daily, ...). When both day of
month and day of week are restricted, a day matching either fires (Unix cron's rule).

Ticks are wall-clock times in the schedule's time zone. Around daylight saving changes:

- spring forward: a tick that falls in the skipped hour fires once, at the end of the gap
  (a daily 02:30 in Europe/Paris fires at 03:00 on that day; ticks every 15 minutes in the
  gap fire once, at 03:00);
- fall back: a schedule whose hour field is `*` or `*/n` ("interval style", e.g. every 15
  minutes or hourly) follows elapsed time and fires in both passes of the repeated hour;
  any other schedule (a fixed hour) fires once, in the first pass.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

_DAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
         "saturday": 6}
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *", "@minutely": "* * * * *", "@every_minute": "* * * * *",
    "@every_second": "* * * * * *",
}
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
#: Ticks looked at for one next run before giving up (a tick that exists only in a
#: skipped hour every day is the worst case: one per day).
_SEARCH_LIMIT = 1000


def _check(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"Cron: {name} must be a whole number from {low} to {high}, not {value!r}")
    return value


class Cron:
    """Expressions for common schedules, in the spirit of Hangfire's `Cron` class."""

    @staticmethod
    def every_second() -> str:
        return "* * * * * *"

    @staticmethod
    def minutely() -> str:
        return "* * * * *"

    @staticmethod
    def hourly(minute: int = 0) -> str:
        return f"{_check('minute', minute, 0, 59)} * * * *"

    @staticmethod
    def daily(hour: int = 0, minute: int = 0) -> str:
        return f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} * * *"

    @staticmethod
    def weekly(day: int | str = "monday", hour: int = 0, minute: int = 0) -> str:
        """day: 0 (Sunday) to 6, or a day's English name."""
        if isinstance(day, str):
            if day.lower() not in _DAYS:
                raise ValueError(f"Cron: day must be a weekday name such as 'monday', not {day!r}")
            day = _DAYS[day.lower()]
        return f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} * * {_check('day', day, 0, 6)}"

    @staticmethod
    def monthly(day: int = 1, hour: int = 0, minute: int = 0) -> str:
        return f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} {_check('day', day, 1, 31)} * *"

    @staticmethod
    def yearly(month: int = 1, day: int = 1, hour: int = 0, minute: int = 0) -> str:
        return (f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} "
                f"{_check('day', day, 1, 31)} {_check('month', month, 1, 12)} *")

    @staticmethod
    def never() -> str:
        """February 31st: a schedule that never fires (the job can still be triggered)."""
        return "0 0 31 2 *"

    @staticmethod
    def minute_interval(n: int) -> str:
        return f"*/{_check('interval', n, 1, 59)} * * * *"

    @staticmethod
    def hour_interval(n: int) -> str:
        return f"0 */{_check('interval', n, 1, 23)} * * *"

    @staticmethod
    def day_interval(n: int) -> str:
        return f"0 0 */{_check('interval', n, 1, 31)} * *"

    @staticmethod
    def month_interval(n: int) -> str:
        return f"0 0 1 */{_check('interval', n, 1, 12)} *"


def to_ms(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class Schedule:
    """A CRON expression in a time zone. Raises ValueError naming the problem."""

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError(f"cron must be a CRON expression such as '0 2 * * *', not {expr!r}")
        self.expr = " ".join(expr.split())
        body = _MACROS.get(self.expr.lower(), self.expr)
        fields = body.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday) "
                             f"or 6 with seconds first, got {len(fields)}")
        self._body = body
        self._seconds = len(fields) == 6
        try:
            croniter(body, datetime(2000, 1, 1), second_at_beginning=self._seconds)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(f"cron {expr!r} is not a valid CRON expression: {exc}") from None
        hour = fields[2 if self._seconds else 1]
        self.interval_style = hour == "*" or hour.startswith("*/")
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"time zone {tz!r} is unknown: use an IANA name such as "
                             f"'Europe/Paris' or 'UTC'") from None
        self.tz = tz

    def __repr__(self) -> str:
        return f"Schedule({self.expr!r}, {self.tz!r})"

    @property
    def fields(self) -> str:
        """The expression as 5 fields, or 6 with seconds first (a macro such as @daily
        written out), for a reader that knows no macros."""
        return self._body

    def next_ms(self, after_ms: int) -> int | None:
        """The first tick strictly after `after_ms` (ms since the epoch), or None if the
        expression never matches."""
        t = self.next_after(from_ms(after_ms))
        return None if t is None else to_ms(t)

    def next_after(self, t: datetime) -> datetime | None:
        """The first tick strictly after the aware datetime `t`, in UTC."""
        t = t.astimezone(_UTC)
        local = t.astimezone(self.zone)
        wall = local.replace(tzinfo=None)
        best: datetime | None = None
        if self.interval_style and local.fold == 0 and self._ambiguous(wall):
            # In the first pass of a repeated hour: the second pass comes before the wall
            # clock moves past this hour, and the plain search below would skip it.
            change = self._offset_change(t, t + (local.utcoffset() - self._offset(wall, 1)))  # type: ignore[operator]
            second_start = change.astimezone(self.zone).replace(tzinfo=None)
            n2 = self._cron_next(second_start - timedelta(microseconds=1))
            if n2 is not None:
                best = n2.replace(tzinfo=self.zone, fold=1).astimezone(_UTC)
        n: datetime | None = wall
        for _ in range(_SEARCH_LIMIT):
            n = self._cron_next(n)  # type: ignore[arg-type]
            if n is None:
                break
            later = [i for i in self._instants(n) if i > t]
            if later:
                return min([*later, best]) if best is not None else min(later)
        return best

    # -- wall clock to instants ------------------------------------------------------

    def _cron_next(self, wall: datetime) -> datetime | None:
        try:
            nxt: datetime = croniter(self._body, wall, second_at_beginning=self._seconds).get_next(datetime)
            return nxt
        except CroniterBadDateError:
            return None

    def _offset(self, wall: datetime, fold: int) -> timedelta:
        return wall.replace(tzinfo=self.zone, fold=fold).utcoffset()  # type: ignore[return-value]

    def _ambiguous(self, wall: datetime) -> bool:
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        return (first.utcoffset() != second.utcoffset()
                and first.astimezone(_UTC).astimezone(self.zone).replace(tzinfo=None) == wall)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants a wall-clock tick stands for: one; two in a repeated hour (the
        second only for interval-style schedules); the end of the gap in a skipped hour."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(_UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(_UTC)
        if first == second:
            return [first]
        if first.astimezone(self.zone).replace(tzinfo=None) == wall:  # it exists: repeated
            return [first, second] if self.interval_style else [first]
        return [self._offset_change(min(first, second), max(first, second))]

    def _offset_change(self, low: datetime, high: datetime) -> datetime:
        """The first whole second in (low, high] whose UTC offset is high's."""
        target = high.astimezone(self.zone).utcoffset()
        lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == target:
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, _UTC)
