"""Business calendars: when a merchant's team is at work, and how SLA clocks count that time.

A hold's first-touch clock ("4 business hours") only runs while the merchant's team is on shift;
a marketplace reply window or the operational clock runs around the clock (`ALWAYS`).

Semantics the desk relies on:

* **Shifts** are local wall times. A shift whose end is at or before its start is an overnight
  shift that closes on the next day (22:00-06:00); ``end == time(0)`` means midnight, so
  ``Shift(time(0), time(0))`` is a whole day.
* **Holidays** are local dates on which no shift *starts*. An overnight shift that started the
  evening before still runs into the holiday morning (the team is already on the floor), and the
  holiday's own evening shift does not run.
* **Daylight saving** is handled per day: each shift's boundaries are placed on that day's local
  wall clock and converted to UTC with zoneinfo, so a 01:00-03:00 shift lasts one hour on a
  spring-forward day and three on a fall-back day. Boundaries are read with ``fold=0`` (PEP 495):
  an ambiguous wall time (fall-back) is its first occurrence; a wall time inside a spring-forward
  gap is read with the offset in force before the gap, which lands it later by the gap's length
  (02:30 on a 02:00->03:00 day is 03:30), as java.time does. A shift that a gap turns inside out
  (02:30-03:15 on that day) is closed for that day.
* **Clock edges**: business time is counted over half-open spans [opening, closing). A clock that
  runs out exactly at closing time is due at the closing moment, not at the next opening.

Every method takes timezone-aware datetimes and answers in UTC.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recoverydesk.domain.errors import InvalidConfig

MAX_CLOSED_DAYS = 3 * 366
"""How many days in a row without any opening `add` and `next_open` search before giving up."""

_ONE_DAY = timedelta(days=1)
_NO_TIME = timedelta(0)
_LAST_DAY = date.max - _ONE_DAY

Span = tuple[datetime, datetime]
"""One stretch of open time in UTC: [opening, closing)."""


class NoBusinessHours(InvalidConfig, ValueError):
    """The calendar never opens, so a business-time clock on it could never run out."""

    code = "no_business_hours"


@dataclass(frozen=True)
class Shift:
    """One stretch of staffed hours in local wall time; ``end <= start`` continues overnight.

    Times are kept with ``fold=0``: every calendar reads wall times that way (see module notes).
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("shift times are local wall times and must not carry a time zone")
        object.__setattr__(self, "start", self.start.replace(fold=0))
        object.__setattr__(self, "end", self.end.replace(fold=0))

    @property
    def is_overnight(self) -> bool:
        """Whether the shift closes on the day after it starts (including whole-day shifts)."""
        return self.end <= self.start


@dataclass(frozen=True)
class BusinessCalendar:
    """A merchant's working week in its own time zone, minus the dates it does not open."""

    time_zone: str
    weekly: Mapping[int, tuple[Shift, ...]]
    holidays: Container[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as error:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from error
        unknown = sorted(set(self.weekly) - set(range(7)))
        if unknown:
            raise ValueError(f"weekdays run 0 (Monday) to 6 (Sunday), not {unknown}")
        frozen = MappingProxyType({day: tuple(shifts) for day, shifts in self.weekly.items()})
        object.__setattr__(self, "weekly", frozen)
        object.__setattr__(self, "_zone", zone)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """When `duration` of business time has run, counting from `start` (UTC).

        Outside hours the count begins at the next opening; a zero duration is `start` itself.
        Raises `NoBusinessHours` (a ValueError) if the calendar never opens.
        """
        cursor = _as_utc(start)
        if duration < _NO_TIME:
            raise ValueError(f"a business-time duration cannot be negative: {duration}")
        if not duration:
            return cursor
        remaining = duration
        for opens, closes in self._spans_from(self._day_before(cursor), None):
            if closes <= cursor:
                continue
            cursor = max(cursor, opens)
            if remaining <= closes - cursor:
                return cursor + remaining
            remaining -= closes - cursor
            cursor = closes
        raise AssertionError("an open-ended span search ends only by raising")  # pragma: no cover

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """How much business time lies between `start` and `end` (zero if `end` is not later)."""
        cursor, until = _as_utc(start), _as_utc(end)
        total = _NO_TIME
        if until <= cursor:
            return total
        for opens, closes in self._spans_from(self._day_before(cursor), self._local_day(until)):
            if opens >= until:
                break
            if closes <= cursor:
                continue
            stop = min(closes, until)
            total += stop - max(opens, cursor)
            cursor = stop
        return total

    def is_open(self, at: datetime) -> bool:
        """Whether the team is on shift at `at`."""
        moment = _as_utc(at)
        spans = self._spans_from(self._day_before(moment), self._local_day(moment))
        return any(opens <= moment < closes for opens, closes in spans)

    def next_open(self, at: datetime) -> datetime:
        """The first moment at or after `at` when the team is on shift (UTC).

        Raises `NoBusinessHours` (a ValueError) if the calendar never opens.
        """
        moment = _as_utc(at)
        for opens, closes in self._spans_from(self._day_before(moment), None):
            if closes > moment:
                return max(opens, moment)
        raise AssertionError("an open-ended span search ends only by raising")  # pragma: no cover

    def _spans_from(self, first_day: date, last_day: date | None) -> Iterator[Span]:
        """Open spans of the shifts starting on `first_day` .. `last_day`, earliest first.

        Without a last day the search is open-ended and raises `NoBusinessHours` once it has
        walked `MAX_CLOSED_DAYS` days in a row without an opening, so it never loops forever.
        """
        if last_day is None and not any(self.weekly.values()):
            raise NoBusinessHours(f"business calendar ({self.time_zone}) has no opening hours")
        day, closed_days, final_day = first_day, 0, min(last_day or _LAST_DAY, _LAST_DAY)
        while day <= final_day:
            spans = self._spans_on(day)
            closed_days = 0 if spans else closed_days + 1
            if last_day is None and closed_days > MAX_CLOSED_DAYS:
                raise NoBusinessHours(
                    f"business calendar ({self.time_zone}) has no opening hours in the "
                    f"{MAX_CLOSED_DAYS} days up to {day}"
                )
            yield from spans
            day += _ONE_DAY
        if last_day is None:
            raise NoBusinessHours("no opening before the last date the desk can represent")

    def _spans_on(self, day: date) -> list[Span]:
        """Open spans of the shifts that start on local `day`; none on a holiday."""
        shifts = self.weekly.get(day.weekday(), ())
        if not shifts or day in self.holidays:
            return []
        spans = []
        for shift in shifts:
            opens = self._to_utc(day, shift.start)
            closes = self._to_utc(day + _ONE_DAY if shift.is_overnight else day, shift.end)
            if closes > opens:
                spans.append((opens, closes))
        return sorted(spans)

    def _to_utc(self, day: date, wall: time) -> datetime:
        """The UTC moment of a local wall time on `day`, read with ``fold=0``."""
        return datetime.combine(day, wall, tzinfo=self._zone).astimezone(UTC)

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(self._zone).date()

    def _day_before(self, moment: datetime) -> date:
        """The local day before `moment`'s: an overnight shift from it may still be running."""
        day = self._local_day(moment)
        return day - _ONE_DAY if day > date.min else day


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: business calendars only handle timezone-aware times")
    return moment.astimezone(UTC)


ALWAYS = BusinessCalendar(
    time_zone="UTC",
    weekly={weekday: (Shift(time(0), time(0)),) for weekday in range(7)},
)
"""Around the clock, no holidays: marketplace reply windows and the operational clock."""
