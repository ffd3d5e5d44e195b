"""Schedule timing: cron in time zones across DST, intervals, catch-up."""

from __future__ import annotations

import datetime as dt

import pytest

from taskservice.timing import ON_TIME_WINDOW, Timing, check_cron, check_timezone, due_runs

UTC = dt.UTC


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_cron_in_a_time_zone() -> None:
    timing = Timing(cron="0 9 * * *", timezone="America/New_York")
    # 9:00 in New York in November is 14:00 UTC
    assert timing.first_after(utc(2026, 11, 27, 0, 0)) == utc(2026, 11, 27, 14, 0)


def test_a_skipped_local_time_runs_after_the_jump() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2026-03-29: 02:30 runs at 03:30 CEST."""
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    first = timing.first_after(utc(2026, 3, 28, 12, 0))
    assert first == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert first.astimezone(dt.timezone(dt.timedelta(hours=2))).hour == 3
    # and the next day it is 02:30 again
    assert timing.first_after(first) == utc(2026, 3, 30, 0, 30)


def test_a_repeated_local_time_runs_once() -> None:
    """Europe/Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 runs once, the first time."""
    timing = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    first = timing.first_after(utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first 02:30
    assert timing.first_after(first) == utc(2026, 10, 26, 1, 30)  # next day, 02:30 CET


def test_hourly_cron_on_the_spring_forward_day_has_no_duplicates() -> None:
    timing = Timing(cron="30 * * * *", timezone="Europe/Berlin")
    runs, t = [], utc(2026, 3, 28, 23, 0)
    for _ in range(5):
        t = timing.first_after(t)
        runs.append(t)
    assert len(set(runs)) == 5
    assert runs == sorted(runs)


def test_seconds_field_and_intervals() -> None:
    assert Timing(cron="* * * * * */10").first_after(utc(2026, 1, 1, 0, 0, 3)) == utc(
        2026, 1, 1, 0, 0, 10
    )
    assert Timing(interval_seconds=90).first_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 1, 30)


def test_on_time_runs_are_each_deferred() -> None:
    timing = Timing(cron="* * * * * *")
    runs, after = due_runs(timing, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 2), "skip")
    assert runs == [utc(2026, 1, 1, 0, 0, s) for s in (0, 1, 2)]
    assert after == utc(2026, 1, 1, 0, 0, 3)


@pytest.mark.parametrize(("catch_up", "expected"), [("once", 1), ("skip", 0)])
def test_missed_runs_follow_the_catch_up_policy(catch_up: str, expected: int) -> None:
    timing = Timing(cron="0 * * * *")  # hourly
    now = utc(2026, 1, 1, 12, 0, 30)
    runs, after = due_runs(timing, utc(2026, 1, 1, 3, 0), now, catch_up)  # type: ignore[arg-type]
    # 03:00 .. 11:00 were missed; 12:00 is on time
    assert runs[-1] == utc(2026, 1, 1, 12, 0)
    assert len(runs) == expected + 1
    if catch_up == "once":
        assert runs[0] == utc(2026, 1, 1, 11, 0)
    assert after == utc(2026, 1, 1, 13, 0)


def test_a_long_outage_is_not_replayed_run_by_run() -> None:
    timing = Timing(interval_seconds=1)
    now = utc(2026, 1, 2)
    runs, after = due_runs(timing, utc(2026, 1, 1), now, "once")
    assert len(runs) == 1 + int(ON_TIME_WINDOW.total_seconds())  # one catch-up, then on time
    assert after == now + dt.timedelta(seconds=1)


@pytest.mark.parametrize("bad", ["", "* * *", "61 * * * *", "every day", "* * * * * * *"])
def test_bad_cron_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        check_cron(bad)


def test_bad_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        check_timezone("Mars/Olympus")
    with pytest.raises(ValueError, match="exactly one"):
        Timing(cron="* * * * *", interval_seconds=5)
