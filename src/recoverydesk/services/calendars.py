"""Merchant business calendars from configuration: time zone, weekly hours and holidays.

A country's public holidays come from the maintained ``holidays`` library; the merchant adds its
own closing dates and may declare working days that override a public holiday.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import pairwise
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recoverydesk.domain.calendar import BusinessCalendar, Shift

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""The keys of `CalendarSpec.hours`, Monday first (index = `date.weekday()`)."""

_DAY_MINUTES = 24 * 60
_RANGE = re.compile(r"\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*")

_Range = tuple[int, int, str]
"""A configured range in minutes from its day's midnight (may end past 24:00), and its label."""


@dataclass(frozen=True)
class MerchantHolidays:
    """The dates no shift starts: country holidays and the merchant's own, minus its working days.

    The country's holidays are a ``holidays`` calendar that fills in each year on first lookup,
    so any year answers.
    """

    country: Container[date] = frozenset()
    extra_dates: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    def __contains__(self, day: object) -> bool:
        if isinstance(day, datetime):
            day = day.date()
        if not isinstance(day, date) or day in self.working_days:
            return False
        return day in self.extra_dates or day in self.country


class CalendarSpec(BaseModel):
    """A merchant's business calendar as configured.

    ``hours`` maps ``mon``..``sun`` to ``"HH:MM-HH:MM"`` ranges: several ranges make split
    shifts, ``"22:00-06:00"`` runs overnight and ``"00:00-24:00"`` is the whole day.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str
    hours: dict[str, list[str]]
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    extra_holidays: list[date] = Field(default_factory=list)
    working_days: list[date] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        weekly_shifts(value)
        return value

    @model_validator(mode="after")
    def _known_holidays(self) -> Self:
        """Messages start with the field's name, so a file's error points at its line."""
        try:
            country_holidays(self.holidays_country, self.holidays_subdivision)
        except ValueError as error:
            field = "holidays_subdivision" if "subdivision" in str(error) else "holidays_country"
            raise ValueError(f"{field}: {error}") from None
        both = sorted(set(self.extra_holidays) & set(self.working_days))
        if both:
            day = both[0].isoformat()
            raise ValueError(f"working_days: {day} is both an extra holiday and a working day")
        return self


def build_calendar(spec: CalendarSpec) -> BusinessCalendar:
    """The merchant's business calendar from its validated configuration."""
    country = country_holidays(spec.holidays_country, spec.holidays_subdivision)
    return BusinessCalendar(
        time_zone=spec.time_zone,
        weekly=weekly_shifts(spec.hours),
        holidays=MerchantHolidays(
            country=frozenset() if country is None else country,
            extra_dates=frozenset(spec.extra_holidays),
            working_days=frozenset(spec.working_days),
        ),
    )


def country_holidays(country: str | None, subdivision: str | None) -> holidays.HolidayBase | None:
    """The public holidays of `country` (and `subdivision`), filled in year by year on lookup."""
    if country is None:
        if subdivision is not None:
            raise ValueError(f"holidays_subdivision {subdivision!r} needs a holidays_country")
        return None
    if country not in holidays.list_supported_countries():
        raise ValueError(
            f"unknown holidays country {country!r}; use an ISO 3166 code such as 'US', 'DE', 'GB'"
        )
    try:
        return holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as error:
        raise ValueError(
            f"unknown holidays subdivision {subdivision!r} for country {country!r}"
        ) from error


def weekly_shifts(hours: Mapping[str, Sequence[str]]) -> dict[int, tuple[Shift, ...]]:
    """Shifts per weekday (0 = Monday) from configured ranges; raises ValueError on bad hours."""
    unknown = [key for key in hours if key not in WEEKDAYS]
    if unknown:
        raise ValueError(f"unknown weekday {unknown[0]!r} in hours; use {', '.join(WEEKDAYS)}")
    ranges = {
        WEEKDAYS.index(key): [_parse_range(key, text) for text in texts]
        for key, texts in hours.items()
    }
    _refuse_overlaps(ranges)
    return {
        weekday: tuple(_shift(start, end) for start, end, _ in sorted(day_ranges))
        for weekday, day_ranges in sorted(ranges.items())
        if day_ranges
    }


def _parse_range(weekday: str, text: str) -> _Range:
    """Minutes from midnight for one ``"HH:MM-HH:MM"`` range; an overnight end passes 24:00."""
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ValueError(f"hours for {weekday}: {text!r} is not a range like '09:00-17:00'")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    start, end = start_hour * 60 + start_minute, end_hour * 60 + end_minute
    if start_hour > 23 or end > _DAY_MINUTES or max(start_minute, end_minute) > 59:
        raise ValueError(
            f"hours for {weekday}: {text!r} has an impossible time "
            "(use 00:00..23:59; 24:00 only as an end)"
        )
    if start == end:
        raise ValueError(
            f"hours for {weekday}: {text!r} is empty; use '00:00-24:00' for the whole day"
        )
    if end < start:
        end += _DAY_MINUTES
    return start, end, f"{weekday} {text.strip()!r}"


def _refuse_overlaps(ranges: Mapping[int, list[_Range]]) -> None:
    """Refuse ranges that overlap on the same day, including an overnight range's morning part."""
    for weekday in range(7):
        spill = [
            (start - _DAY_MINUTES, end - _DAY_MINUTES, label)
            for start, end, label in ranges.get((weekday - 1) % 7, [])
            if end > _DAY_MINUTES
        ]
        ordered = sorted(spill + list(ranges.get(weekday, [])))
        for (_, end, first), (start, _, second) in pairwise(ordered):
            if start < end:
                raise ValueError(f"hours overlap: {first} and {second}")


def _shift(start: int, end: int) -> Shift:
    end %= _DAY_MINUTES
    return Shift(time(start // 60, start % 60), time(end // 60, end % 60))


DEFAULT_CALENDAR_SPEC = CalendarSpec(
    time_zone="UTC",
    hours={weekday: ["09:00-17:00"] for weekday in WEEKDAYS[:5]},
)
"""What a new merchant gets: Monday to Friday, 09:00-17:00 UTC, no public holidays."""
