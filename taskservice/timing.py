"""When a schedule runs: cron in a time zone (DST included) or a fixed interval, and catch-up."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

CatchUp = Literal["once", "skip"]

# A run found this late is still on time and deferred; later than this, it was
# missed (no worker ran) and the schedule's catch-up policy decides.
ON_TIME_WINDOW = dt.timedelta(seconds=60)
_UTC = dt.UTC


def check_cron(expression: str) -> str:
    """The expression if it is valid cron (5 fields, or 6 with seconds last) and
    names a time that exists (not 30 February), else ValueError."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(
            f"{expression!r} is not a cron expression: use 5 fields "
            "(minute hour day month weekday) or 6 (with seconds last), e.g. '30 2 * * *'"
        )
    try:
        # Any start will do: without a year field, a cron that fires at all
        # fires within 28 years of any date.
        croniter(expression, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterError as exc:
        raise ValueError(
            f"{expression!r} never fires: no date matches its day and month (e.g. 30 February)"
        ) from exc
    return expression


def check_timezone(name: str) -> str:
    """The name if it is an IANA time zone, else ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{name!r} is not a known time zone, e.g. 'Europe/Paris' or 'UTC'"
        ) from exc
    return name


@dataclass(frozen=True)
class Timing:
    """A schedule's timing: `cron` in `timezone`, or every `interval_seconds`.

    Cron times are local wall-clock times. A local time that does not exist on
    a day (clocks jump forward over it) runs at the same distance after the
    jump: 02:30 becomes 03:30. A local time that occurs twice (clocks go back)
    runs once, at its first occurrence."""

    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give cron or interval_seconds, exactly one")
        if self.cron is not None:
            check_cron(self.cron)
        if self.interval_seconds is not None and self.interval_seconds < 1:
            raise ValueError("interval_seconds must be at least 1")
        check_timezone(self.timezone)

    @property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _aware(self, local: dt.datetime) -> dt.datetime:
        # fold=0: the first of a repeated time; the earlier offset for a skipped one.
        return local.replace(tzinfo=self._zone, fold=0).astimezone(_UTC)

    def first_after(self, after: dt.datetime) -> dt.datetime:
        """The first run strictly after `after` (aware), in UTC."""
        if self.interval_seconds is not None:
            return (after + dt.timedelta(seconds=self.interval_seconds)).astimezone(_UTC)
        assert self.cron is not None
        local = after.astimezone(self._zone).replace(tzinfo=None)
        times = croniter(self.cron, local)
        for _ in range(10_000):
            candidate = self._aware(times.get_next(dt.datetime))
            if candidate > after:
                return candidate
        raise ValueError(f"cron {self.cron!r} never runs after {after.isoformat()}")

    def last_at_or_before(self, moment: dt.datetime, start: dt.datetime) -> dt.datetime:
        """The latest run in [start, moment], given that `start` is a run."""
        if self.interval_seconds is not None:
            steps = (moment - start) // dt.timedelta(seconds=self.interval_seconds)
            return start + steps * dt.timedelta(seconds=self.interval_seconds)
        assert self.cron is not None
        local = moment.astimezone(self._zone).replace(tzinfo=None) + dt.timedelta(seconds=1)
        times = croniter(self.cron, local)
        for _ in range(10_000):
            candidate = self._aware(times.get_prev(dt.datetime))
            if candidate <= moment:
                return max(candidate, start)
        return start


def due_runs(
    timing: Timing, next_run_at: dt.datetime, now: dt.datetime, catch_up: CatchUp
) -> tuple[list[dt.datetime], dt.datetime]:
    """The run times to defer now, and the schedule's next run after them.

    Runs due within ON_TIME_WINDOW are each deferred. Older ones were missed:
    with catch_up 'once' the latest of them is deferred, with 'skip' none."""
    runs: list[dt.datetime] = []
    due = next_run_at
    cutoff = now - ON_TIME_WINDOW
    if due <= cutoff:
        missed = timing.last_at_or_before(cutoff, due)
        if catch_up == "once":
            runs.append(missed)
        due = timing.first_after(missed)
    while due <= now:
        runs.append(due)
        due = timing.first_after(due)
    return runs, due
