"""Business calendars: how SLA clocks count business time across weekends, shifts, holidays and DST.

Every expected moment is worked out by hand (UTC offsets: New York EST -5 / EDT -4, Berlin
CET +1 / CEST +2). Weekdays: 2026-11-16 is a Monday, 2026-11-20 a Friday.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recoverydesk.domain.calendar import ALWAYS, BusinessCalendar, NoBusinessHours, Shift
from recoverydesk.services.calendars import DEFAULT_CALENDAR_SPEC, CalendarSpec, build_calendar

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def shift(start: str, end: str) -> Shift:
    return Shift(time.fromisoformat(start), time.fromisoformat(end))


def every(days: range, *shifts: Shift, zone: str = "UTC") -> BusinessCalendar:
    return BusinessCalendar(time_zone=zone, weekly=dict.fromkeys(days, shifts))


WEEKDAYS, WHOLE_WEEK = range(5), range(7)
OFFICE = every(WEEKDAYS, shift("09:00", "17:00"))
SPLIT = every(WEEKDAYS, shift("09:00", "12:00"), shift("13:00", "17:00"))
NIGHTS = every(WEEKDAYS, shift("22:00", "06:00"))
NY_OFFICE = every(WEEKDAYS, shift("09:00", "17:00"), zone="America/New_York")
CALENDARS = {"office": OFFICE, "split": SPLIT, "nights": NIGHTS, "ny_office": NY_OFFICE}


def spec(**overrides: Any) -> CalendarSpec:
    """A New York office, Monday to Friday 09:00-17:00, with `overrides` applied."""
    hours = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    fields: dict[str, Any] = {"time_zone": "America/New_York", "hours": hours}
    return CalendarSpec.model_validate(fields | overrides)


# --- add -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "start", "duration", "expected"),
    [
        pytest.param(
            "office", utc(2026, 11, 16, 10), 2 * HOUR, utc(2026, 11, 16, 12), id="same-day"
        ),
        pytest.param(
            "office", utc(2026, 11, 16, 10), 8 * HOUR, utc(2026, 11, 17, 10), id="next-day"
        ),
        pytest.param(
            "office", utc(2026, 11, 16, 8), 8 * HOUR, utc(2026, 11, 16, 17), id="due-at-close"
        ),
        pytest.param(
            "office", utc(2026, 11, 20, 16), 2 * HOUR, utc(2026, 11, 23, 10), id="weekend"
        ),
        pytest.param(
            "office", utc(2026, 11, 21, 12), HOUR, utc(2026, 11, 23, 10), id="from-saturday"
        ),
        pytest.param(
            "office",
            utc(2026, 11, 22, 23),
            30 * MINUTE,
            utc(2026, 11, 23, 9, 30),
            id="sunday-night",
        ),
        pytest.param(
            "office", utc(2026, 11, 20, 17), timedelta(0), utc(2026, 11, 20, 17), id="zero"
        ),
        pytest.param(
            "office", utc(2026, 11, 21, 12), timedelta(0), utc(2026, 11, 21, 12), id="zero-closed"
        ),
        pytest.param(
            "office", utc(2026, 11, 16, 9), 240 * HOUR, utc(2026, 12, 25, 17), id="30-days"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 11), 2 * HOUR, utc(2026, 11, 16, 14), id="over-lunch"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 12, 30), HOUR, utc(2026, 11, 16, 14), id="from-lunch-gap"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 11), HOUR, utc(2026, 11, 16, 12), id="due-at-lunch"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 16), 2 * HOUR, utc(2026, 11, 17, 10), id="split-next"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 9), 7 * HOUR, utc(2026, 11, 16, 17), id="split-day"
        ),
        pytest.param(
            "nights", utc(2026, 11, 16, 23), 2 * HOUR, utc(2026, 11, 17, 1), id="midnight"
        ),
        pytest.param("nights", utc(2026, 11, 17, 5), 2 * HOUR, utc(2026, 11, 17, 23), id="day-gap"),
        pytest.param(
            "nights", utc(2026, 11, 20, 23), 8 * HOUR, utc(2026, 11, 23, 23), id="fri-night"
        ),
        pytest.param("nights", utc(2026, 11, 16, 12), HOUR, utc(2026, 11, 16, 23), id="from-noon"),
        pytest.param(
            "nights", utc(2026, 11, 23, 3), HOUR, utc(2026, 11, 23, 23), id="no-sun-night"
        ),
        pytest.param(
            "ny_office", utc(2026, 11, 16, 14), 8 * HOUR, utc(2026, 11, 16, 22), id="ny-day"
        ),
        pytest.param("ny_office", utc(2026, 11, 16, 22), HOUR, utc(2026, 11, 17, 15), id="ny-next"),
        pytest.param(
            "ny_office",
            datetime(2026, 11, 16, 9, tzinfo=NEW_YORK),
            HOUR,
            utc(2026, 11, 16, 15),
            id="ny-local-start",
        ),
    ],
)
def test_add_counts_business_time_only(
    calendar: str, start: datetime, duration: timedelta, expected: datetime
) -> None:
    # given a calendar and a clock starting at `start`
    # when the clock runs for `duration` of business time
    due = CALENDARS[calendar].add(start, duration)
    # then it is due at the hand-computed moment, in UTC
    assert due == expected
    assert due.tzinfo is UTC


# --- elapsed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "start", "end", "expected"),
    [
        pytest.param(
            "office", utc(2026, 11, 16, 10), utc(2026, 11, 16, 12), 2 * HOUR, id="same-day"
        ),
        pytest.param(
            "office", utc(2026, 11, 20, 16), utc(2026, 11, 23, 10), 2 * HOUR, id="weekend"
        ),
        pytest.param("office", utc(2026, 11, 21), utc(2026, 11, 22, 23), timedelta(0), id="closed"),
        pytest.param(
            "office", utc(2026, 11, 16, 12), utc(2026, 11, 16, 10), timedelta(0), id="back"
        ),
        pytest.param(
            "office", utc(2026, 11, 16, 8), utc(2026, 11, 16, 18), 8 * HOUR, id="full-day"
        ),
        pytest.param("office", utc(2026, 11, 16), utc(2026, 11, 23), 40 * HOUR, id="week"),
        pytest.param("split", utc(2026, 11, 16, 11), utc(2026, 11, 16, 14), 2 * HOUR, id="lunch"),
        pytest.param(
            "split", utc(2026, 11, 16, 12, 15), utc(2026, 11, 16, 12, 45), timedelta(0), id="in-gap"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 9), utc(2026, 11, 16, 17), 7 * HOUR, id="split-day"
        ),
        pytest.param(
            "split", utc(2026, 11, 16, 12, 30), utc(2026, 11, 17, 10), 5 * HOUR, id="gap-to-next"
        ),
        pytest.param("nights", utc(2026, 11, 16, 20), utc(2026, 11, 17, 8), 8 * HOUR, id="night"),
        pytest.param("nights", utc(2026, 11, 16), utc(2026, 11, 23), 40 * HOUR, id="night-week"),
        pytest.param(
            "nights", utc(2026, 11, 21, 7), utc(2026, 11, 23, 21), timedelta(0), id="night-weekend"
        ),
        pytest.param(
            "nights", utc(2026, 11, 20, 23), utc(2026, 11, 21, 3), 4 * HOUR, id="into-sat"
        ),
        pytest.param("ny_office", utc(2026, 11, 16), utc(2026, 11, 17), 8 * HOUR, id="ny-day"),
    ],
)
def test_elapsed_measures_business_time_between_two_moments(
    calendar: str, start: datetime, end: datetime, expected: timedelta
) -> None:
    # given a calendar and two moments
    # when the business time between them is measured
    # then it matches the hand count
    assert CALENDARS[calendar].elapsed(start, end) == expected


# --- is_open / next_open ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "at", "expected"),
    [
        pytest.param("office", utc(2026, 11, 16, 9), True, id="opening-counts"),
        pytest.param("office", utc(2026, 11, 16, 17), False, id="closing-does-not"),
        pytest.param("office", utc(2026, 11, 21, 12), False, id="saturday"),
        pytest.param("split", utc(2026, 11, 16, 12, 30), False, id="lunch"),
        pytest.param("split", utc(2026, 11, 16, 13), True, id="after-lunch"),
        pytest.param("nights", utc(2026, 11, 16, 22), True, id="night-opens"),
        pytest.param("nights", utc(2026, 11, 17, 3), True, id="after-midnight"),
        pytest.param("nights", utc(2026, 11, 21, 3), True, id="friday-night-into-saturday"),
        pytest.param("nights", utc(2026, 11, 22, 3), False, id="sunday-morning"),
        pytest.param("nights", utc(2026, 11, 23, 3), False, id="monday-morning"),
        pytest.param("ny_office", utc(2026, 11, 16, 14), True, id="ny-09-est"),
        pytest.param("ny_office", utc(2026, 11, 16, 13, 59), False, id="ny-before-09-est"),
    ],
)
def test_is_open_tells_whether_the_team_is_on_shift(
    calendar: str, at: datetime, expected: bool
) -> None:
    # given a calendar, when asked about a moment, then it answers by the shifts
    assert CALENDARS[calendar].is_open(at) is expected


@pytest.mark.parametrize(
    ("calendar", "at", "expected"),
    [
        pytest.param("office", utc(2026, 11, 16, 10), utc(2026, 11, 16, 10), id="already-open"),
        pytest.param("office", utc(2026, 11, 16, 8), utc(2026, 11, 16, 9), id="before-opening"),
        pytest.param("office", utc(2026, 11, 20, 17), utc(2026, 11, 23, 9), id="friday-close"),
        pytest.param("split", utc(2026, 11, 16, 12), utc(2026, 11, 16, 13), id="lunch"),
        pytest.param("nights", utc(2026, 11, 21, 6), utc(2026, 11, 23, 22), id="saturday-6am"),
        pytest.param("ny_office", utc(2026, 11, 21, 12), utc(2026, 11, 23, 14), id="ny-monday"),
    ],
)
def test_next_open_is_the_next_moment_on_shift(
    calendar: str, at: datetime, expected: datetime
) -> None:
    # given a calendar, when asked for the next opening, then it is the hand-computed moment
    assert CALENDARS[calendar].next_open(at) == expected


# --- holidays --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, utc(2026, 11, 27, 15), id="thanksgiving-skipped"),
        pytest.param(
            {"extra_holidays": ["2026-11-27"]}, utc(2026, 11, 30, 15), id="merchant-extra-date"
        ),
        pytest.param({"working_days": ["2026-11-26"]}, utc(2026, 11, 26, 15), id="working-day"),
    ],
)
def test_us_holidays_and_merchant_dates_pause_the_clock(
    overrides: dict[str, Any], expected: datetime
) -> None:
    # given a New York office on US public holidays (Thanksgiving: Thursday 2026-11-26)
    calendar = build_calendar(spec(holidays_country="US", **overrides))
    # when a 2-hour clock starts at Wednesday 16:00 EST (21:00 UTC)
    due = calendar.add(utc(2026, 11, 25, 21), 2 * HOUR)
    # then it resumes on the next working day at 10:00 EST (15:00 UTC)
    assert due == expected


def test_german_unity_day_closes_a_saturday_shift() -> None:
    # given a Berlin shop open Monday to Saturday on German public holidays
    hours = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}
    calendar = build_calendar(
        CalendarSpec(time_zone="Europe/Berlin", hours=hours, holidays_country="DE")
    )
    # when a 2-hour clock starts on Friday 2026-10-02 at 16:00 CEST (14:00 UTC)
    due = calendar.add(utc(2026, 10, 2, 14), 2 * HOUR)
    # then Saturday 2026-10-03 (Tag der Deutschen Einheit) and Sunday are skipped:
    # due Monday 10:00 CEST
    assert due == utc(2026, 10, 5, 8)
    assert not calendar.is_open(utc(2026, 10, 3, 10))
    assert calendar.is_open(utc(2026, 10, 10, 10))


def test_country_holidays_answer_for_any_year() -> None:
    # given calendars with US and German public holidays
    us = build_calendar(spec(holidays_country="US"))
    berlin = build_calendar(spec(time_zone="Europe/Berlin", holidays_country="DE"))
    # when years never looked up before are asked about
    # then each year is filled in on demand
    assert date(2019, 11, 28) in us.holidays
    assert date(2031, 10, 3) in berlin.holidays
    assert date(2031, 10, 2) not in berlin.holidays
    assert not berlin.is_open(utc(2031, 10, 3, 10))  # Friday 12:00 CEST


@pytest.mark.parametrize(
    ("subdivision", "open_on_epiphany"),
    [pytest.param(None, True, id="germany"), pytest.param("BY", False, id="bavaria")],
)
def test_subdivision_holidays_apply(subdivision: str | None, open_on_epiphany: bool) -> None:
    # given a Berlin-time office with German holidays, optionally Bavaria's
    calendar = build_calendar(
        spec(
            time_zone="Europe/Berlin",
            holidays_country="DE",
            holidays_subdivision=subdivision,
        )
    )
    # when asked about Tuesday 2026-01-06 (Epiphany, a holiday in Bavaria) at 12:00 CET
    # then only Bavaria is closed
    assert calendar.is_open(utc(2026, 1, 6, 11)) is open_on_epiphany


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(utc(2026, 11, 26, 8), True, id="wednesday-night-runs-into-thanksgiving"),
        pytest.param(utc(2026, 11, 27, 4), False, id="no-shift-starts-on-thanksgiving"),
        pytest.param(utc(2026, 11, 28, 4), True, id="friday-night-runs"),
    ],
)
def test_an_overnight_shift_runs_into_a_holiday_morning(at: datetime, expected: bool) -> None:
    # given New York night shifts (22:00-06:00, Monday to Friday) on US holidays
    calendar = build_calendar(
        spec(
            hours={day: ["22:00-06:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            holidays_country="US",
        )
    )
    # when asked about 03:00 EST Thursday, 23:00 EST Thursday and 23:00 EST Friday
    # then only the shift starting on the holiday itself is cancelled
    assert calendar.is_open(at) is expected


# --- daylight saving -------------------------------------------------------------------------

DST_DAYS = [
    # zone, local day as [start, end) in UTC, length of the day, 01:00-03:00 shift length
    pytest.param(
        "America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23 * HOUR, HOUR, id="ny-spring"
    ),
    pytest.param(
        "America/New_York",
        utc(2026, 11, 1, 4),
        utc(2026, 11, 2, 5),
        25 * HOUR,
        3 * HOUR,
        id="ny-fall",
    ),
    pytest.param(
        "Europe/Berlin",
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 22),
        23 * HOUR,
        HOUR,
        id="berlin-spring",
    ),
    pytest.param(
        "Europe/Berlin",
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 23),
        25 * HOUR,
        3 * HOUR,
        id="berlin-fall",
    ),
]


@pytest.mark.parametrize(("zone", "day_start", "day_end", "day_length", "shift_length"), DST_DAYS)
def test_a_round_the_clock_local_day_follows_the_wall_clock(
    zone: str,
    day_start: datetime,
    day_end: datetime,
    day_length: timedelta,
    shift_length: timedelta,
) -> None:
    # given a 24/7 calendar in a zone with daylight saving
    calendar = every(WHOLE_WEEK, shift("00:00", "00:00"), zone=zone)
    # when the business time of the changeover day is measured
    # then it is the real length of that day (23 or 25 hours)
    assert calendar.elapsed(day_start, day_end) == day_length
    # and a 24-hour clock ends 24 real hours later
    assert calendar.add(day_start, 24 * HOUR) == day_start + timedelta(days=1)


@pytest.mark.parametrize(("zone", "day_start", "day_end", "day_length", "shift_length"), DST_DAYS)
def test_a_shift_over_the_changed_hour_shrinks_or_grows(
    zone: str,
    day_start: datetime,
    day_end: datetime,
    day_length: timedelta,
    shift_length: timedelta,
) -> None:
    # given a daily 01:00-03:00 shift in a zone with daylight saving
    calendar = every(WHOLE_WEEK, shift("01:00", "03:00"), zone=zone)
    # when the changeover day is measured
    # then the shift is 1 hour on spring-forward day and 3 hours on fall-back day
    assert calendar.elapsed(day_start, day_end) == shift_length


@pytest.mark.parametrize(
    ("zone", "start", "duration", "expected"),
    [
        # 01:00 EST = 06:00Z .. 03:00 EDT = 07:00Z; then Mar 9 01:00 EDT = 05:00Z
        pytest.param(
            "America/New_York",
            utc(2026, 3, 8, 6),
            90 * MINUTE,
            utc(2026, 3, 9, 5, 30),
            id="ny-spring",
        ),
        # 01:00 EDT = 05:00Z .. 03:00 EST = 08:00Z
        pytest.param(
            "America/New_York",
            utc(2026, 11, 1, 5),
            150 * MINUTE,
            utc(2026, 11, 1, 7, 30),
            id="ny-fall",
        ),
        # 01:00 CET = 00:00Z .. 03:00 CEST = 01:00Z; then Mar 30 01:00 CEST = Mar 29 23:00Z
        pytest.param(
            "Europe/Berlin",
            utc(2026, 3, 29, 0),
            90 * MINUTE,
            utc(2026, 3, 29, 23, 30),
            id="berlin-spring",
        ),
        # 01:00 CEST = Oct 24 23:00Z .. 03:00 CET = 02:00Z
        pytest.param(
            "Europe/Berlin",
            utc(2026, 10, 24, 23),
            150 * MINUTE,
            utc(2026, 10, 25, 1, 30),
            id="berlin-fall",
        ),
    ],
)
def test_add_over_the_changed_hour(
    zone: str, start: datetime, duration: timedelta, expected: datetime
) -> None:
    # given a daily 01:00-03:00 shift, when a clock runs from its opening on a changeover day
    calendar = every(WHOLE_WEEK, shift("01:00", "03:00"), zone=zone)
    # then it is due at the hand-computed moment
    assert calendar.add(start, duration) == expected


def test_the_repeated_hour_of_fall_back_is_open() -> None:
    # given a daily 01:00-03:00 New York shift
    calendar = every(WHOLE_WEEK, shift("01:00", "03:00"), zone="America/New_York")
    # when asked about 01:30 EST on 2026-11-01, the second time the clocks show 01:30
    # then the team is still on shift
    assert calendar.is_open(utc(2026, 11, 1, 6, 30))


@pytest.mark.parametrize(
    ("opens", "closes", "day_start", "day_end", "expected"),
    [
        # a gap-time opening reads with the pre-gap offset: 02:30 EST = 07:30Z; 05:00 EDT = 09:00Z
        pytest.param(
            "02:30", "05:00", utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 90 * MINUTE, id="gap-opening"
        ),
        # 02:30 EST = 07:30Z is after 03:15 EDT = 07:15Z: that day the shift does not run
        pytest.param(
            "02:30", "03:15", utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), timedelta(0), id="inside-out"
        ),
        # the day after, the same shift is 45 minutes: 06:30Z .. 07:15Z
        pytest.param(
            "02:30", "03:15", utc(2026, 3, 9, 4), utc(2026, 3, 10, 4), 45 * MINUTE, id="day-after"
        ),
        # an ambiguous opening is its first occurrence: 01:30 EDT = 05:30Z; 02:00 EST = 07:00Z
        pytest.param(
            "01:30", "02:00", utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 90 * MINUTE, id="ambiguous"
        ),
    ],
)
def test_dst_boundaries_are_read_with_fold_zero(
    opens: str, closes: str, day_start: datetime, day_end: datetime, expected: timedelta
) -> None:
    # given a daily New York shift with a boundary in the spring gap or the fall-back repeat
    calendar = every(WHOLE_WEEK, shift(opens, closes), zone="America/New_York")
    # when that local day is measured, then wall times resolve the fold=0 way
    assert calendar.elapsed(day_start, day_end) == expected


def test_a_gap_time_opening_lands_after_the_gap() -> None:
    # given a daily 02:30-05:00 New York shift, when asked on the spring-forward night
    calendar = every(WHOLE_WEEK, shift("02:30", "05:00"), zone="America/New_York")
    # then the team opens at 03:30 EDT (07:30Z)
    assert calendar.next_open(utc(2026, 3, 8, 6)) == utc(2026, 3, 8, 7, 30)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(utc(2026, 3, 8, 5), utc(2026, 3, 9, 5), id="ny-spring-day"),
        pytest.param(utc(2026, 10, 24, 22), utc(2026, 10, 25, 22), id="berlin-fall-day"),
    ],
)
def test_always_is_the_wall_clock(start: datetime, expected: datetime) -> None:
    # given the round-the-clock calendar, when a 24-hour clock runs, then it ends 24 hours later
    assert ALWAYS.add(start, 24 * HOUR) == expected
    assert ALWAYS.elapsed(start, expected) == 24 * HOUR
    assert ALWAYS.is_open(start)


# --- properties ------------------------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]


def _quarter(index: int) -> time:
    return time(index // 4, index % 4 * 15)


shifts = st.builds(
    lambda start, length: Shift(_quarter(start), _quarter((start + length) % 96)),
    st.integers(0, 95),
    st.integers(1, 96),
)
calendars = st.builds(
    BusinessCalendar,
    time_zone=st.sampled_from(ZONES),
    weekly=st.dictionaries(
        st.integers(0, 6), st.lists(shifts, min_size=1, max_size=3).map(tuple), min_size=1
    ),
    holidays=st.frozensets(st.dates(date(2025, 1, 1), date(2029, 12, 31)), max_size=20),
)
moments = st.datetimes(datetime(2025, 6, 1), datetime(2028, 6, 1), timezones=st.just(UTC))
durations = st.timedeltas(timedelta(0), timedelta(days=3))


@settings(max_examples=150, deadline=None)
@given(calendar=calendars, start=moments, duration=durations)
def test_elapsed_undoes_add(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    # given any calendar with at least one shift, when a clock runs for `duration`
    due = calendar.add(start, duration)
    # then exactly `duration` of business time lies between start and due time
    assert calendar.elapsed(start, due) == duration
    assert due >= start


@settings(max_examples=100, deadline=None)
@given(calendar=calendars, at=moments)
def test_next_open_is_open_and_nothing_is_skipped(calendar: BusinessCalendar, at: datetime) -> None:
    # given any calendar, when the next opening is asked for
    opening = calendar.next_open(at)
    # then it is open then, and no business time lies before it
    assert calendar.is_open(opening)
    assert calendar.elapsed(at, opening) == timedelta(0)


# --- refusals --------------------------------------------------------------------------------

NAIVE = datetime(2026, 11, 16, 10)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: OFFICE.add(NAIVE, HOUR), id="add"),
        pytest.param(lambda: OFFICE.elapsed(NAIVE, utc(2026, 11, 17)), id="elapsed-start"),
        pytest.param(lambda: OFFICE.elapsed(utc(2026, 11, 15), NAIVE), id="elapsed-end"),
        pytest.param(lambda: OFFICE.is_open(NAIVE), id="is-open"),
        pytest.param(lambda: OFFICE.next_open(NAIVE), id="next-open"),
    ],
)
def test_naive_datetimes_are_refused(call: Any) -> None:
    # given a naive datetime, when any calendar method gets it, then it is refused
    with pytest.raises(ValueError, match="naive datetime"):
        call()


class EveryDay:
    """A holiday list that closes every date."""

    def __contains__(self, day: object) -> bool:
        return True


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        pytest.param(BusinessCalendar("UTC", {}), "has no opening hours", id="no-weekly-hours"),
        pytest.param(BusinessCalendar("UTC", {0: ()}), "has no opening hours", id="empty-monday"),
        pytest.param(
            BusinessCalendar("UTC", {0: (shift("09:00", "17:00"),)}, EveryDay()),
            "no opening hours in the 1098 days",
            id="all-holidays",
        ),
    ],
)
def test_a_calendar_that_never_opens_fails_clearly(
    calendar: BusinessCalendar, message: str
) -> None:
    # given a calendar that never opens
    # when a clock is started or the next opening asked for, then a clear error comes back
    with pytest.raises(NoBusinessHours, match=message) as raised:
        calendar.add(utc(2026, 11, 16), HOUR)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(ValueError, match=message):
        calendar.next_open(utc(2026, 11, 16))
    # and measuring on it is simply zero
    assert calendar.elapsed(utc(2026, 11, 16), utc(2026, 11, 23)) == timedelta(0)


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        OFFICE.add(utc(2026, 11, 16, 10), -HOUR)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'", id="zone"),
        pytest.param({"weekly": {7: ()}}, "weekdays run 0 (Monday) to 6 (Sunday)", id="weekday"),
    ],
)
def test_business_calendar_refuses_bad_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        BusinessCalendar(**({"time_zone": "UTC", "weekly": {}} | fields))


# --- configuration ---------------------------------------------------------------------------


def test_hours_become_shifts() -> None:
    # given split, overnight, evening-to-midnight and whole-day ranges
    hours = {
        "mon": ["13:00-17:00", "09:00-12:00"],
        "tue": ["22:00-06:00"],
        "wed": ["22:00-24:00"],
        "thu": ["00:00-06:00"],
        "sun": ["00:00-24:00"],
    }
    # when the calendar is built
    calendar = build_calendar(CalendarSpec(time_zone="Europe/Berlin", hours=hours))
    # then each range is a shift, in order, with 24:00 read as midnight
    assert calendar.time_zone == "Europe/Berlin"
    assert dict(calendar.weekly) == {
        0: (shift("09:00", "12:00"), shift("13:00", "17:00")),
        1: (shift("22:00", "06:00"),),
        2: (shift("22:00", "00:00"),),
        3: (shift("00:00", "06:00"),),
        6: (shift("00:00", "00:00"),),
    }


def test_default_calendar_is_weekday_office_hours_in_utc() -> None:
    # given the default spec, when built
    calendar = build_calendar(DEFAULT_CALENDAR_SPEC)
    # then it is Monday to Friday 09:00-17:00 UTC
    assert calendar.time_zone == "UTC"
    assert dict(calendar.weekly) == dict.fromkeys(WEEKDAYS, (shift("09:00", "17:00"),))
    assert calendar.add(utc(2026, 11, 20, 16), 2 * HOUR) == utc(2026, 11, 23, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"hours": {"monday": ["09:00-17:00"]}}, "unknown weekday 'monday'", id="key"),
        pytest.param({"hours": {"mon": ["9-17"]}}, "'9-17' is not a range like", id="malformed"),
        pytest.param({"hours": {"mon": ["09:00-25:00"]}}, "has an impossible time", id="hour-25"),
        pytest.param({"hours": {"mon": ["24:00-06:00"]}}, "has an impossible time", id="start-24"),
        pytest.param({"hours": {"mon": ["09:60-17:00"]}}, "has an impossible time", id="minute-60"),
        pytest.param({"hours": {"mon": ["09:00-09:00"]}}, "'09:00-09:00' is empty", id="zero"),
        pytest.param(
            {"hours": {"mon": ["09:00-12:00", "11:00-13:00"]}},
            "hours overlap: mon '09:00-12:00' and mon '11:00-13:00'",
            id="overlap",
        ),
        pytest.param(
            {"hours": {"mon": ["22:00-06:00"], "tue": ["05:00-09:00"]}},
            "hours overlap: mon '22:00-06:00' and tue '05:00-09:00'",
            id="overnight-overlap",
        ),
        pytest.param(
            {"hours": {"sun": ["23:00-01:00"], "mon": ["00:30-08:00"]}},
            "hours overlap: sun '23:00-01:00' and mon '00:30-08:00'",
            id="sunday-night-overlap",
        ),
        pytest.param({"holidays_country": "XX"}, "unknown holidays country 'XX'", id="country"),
        pytest.param(
            {"holidays_country": "US", "holidays_subdivision": "ZZ"},
            "unknown holidays subdivision 'ZZ' for country 'US'",
            id="subdivision",
        ),
        pytest.param(
            {"holidays_subdivision": "BY"}, "'BY' needs a holidays_country", id="no-country"
        ),
        pytest.param({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'", id="zone"),
        pytest.param({"time_zone": "America"}, "unknown time zone 'America'", id="zone-folder"),
        pytest.param({"holiday_country": "US"}, "Extra inputs are not permitted", id="extra-key"),
        pytest.param(
            {"extra_holidays": ["2026-12-24"], "working_days": ["2026-12-24"]},
            "2026-12-24 is both an extra holiday and a working day",
            id="both",
        ),
    ],
)
def test_calendar_spec_refuses_bad_configuration(overrides: dict[str, Any], message: str) -> None:
    # given a calendar configuration with one mistake
    # when it is validated, then the error names the offending value
    with pytest.raises(ValidationError, match=re.escape(message)):
        spec(**overrides)
