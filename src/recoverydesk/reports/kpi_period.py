"""The periods KPI figures are asked for: an ISO week or a date range in the merchant's zone.

A week runs from Monday 00:00 to the next Monday 00:00 local time (KPIS.md), so across a
daylight-saving change it is 167 or 169 hours long; the bounds are kept in aware UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from recoverydesk.domain.errors import InvalidInput

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in aware UTC; ``label`` (``2026-W48`` or ``2026-11-01..2026-11-30``) and
    ``time_zone`` when the period was asked for in a merchant's calendar."""

    start: datetime
    end: datetime
    label: str | None = None
    time_zone: str | None = None

    def as_dict(self) -> dict[str, str]:
        shown = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if self.label is not None:
            shown["label"] = self.label
        if self.time_zone is not None:
            shown["time_zone"] = self.time_zone
        return shown


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def week_period(text: str, zone: str) -> Period:
    """The ISO week ``YYYY-Www`` in ``zone``."""
    found = WEEK.match(text.strip())
    if found is None:
        raise InvalidInput(f"week {text!r}: use the ISO form YYYY-Www (e.g. 2026-W48)")
    year, week = int(found[1]), int(found[2])
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InvalidInput(f"week {text!r}: {year} has no ISO week {week}") from None
    end = _midnight(monday + timedelta(days=7), zone)
    return Period(_midnight(monday, zone), end, label=f"{year}-W{week:02d}", time_zone=zone)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{name} {text!r}: use a date YYYY-MM-DD") from None


def date_range_period(first: str, last: str, zone: str) -> Period:
    """From ``first`` 00:00 to the end of ``last`` (both days included) in ``zone``."""
    start, end = _day(first, "from"), _day(last, "to")
    if end < start:
        raise InvalidInput(f"to {last!r} is before from {first!r}")
    label = f"{start.isoformat()}..{end.isoformat()}"
    return Period(
        _midnight(start, zone), _midnight(end + timedelta(days=1), zone), label, time_zone=zone
    )


def period_asked(week: str | None, first: str | None, last: str | None, zone: str) -> Period:
    """The period of a request: a week, or a range from ``first`` to ``last``; never both."""
    if week is not None and (first is not None or last is not None):
        raise InvalidInput("give a week or a date range (from and to), not both")
    if week is not None:
        return week_period(week, zone)
    if first is None or last is None:
        raise InvalidInput("give a week (YYYY-Www) or a date range: both from and to")
    return date_range_period(first, last, zone)


def month_of(moment: datetime, zone: str) -> tuple[Period, Period]:
    """The calendar month (in ``zone``) that contains ``moment``, and the month before it."""
    local = moment.astimezone(ZoneInfo(zone)).date()
    first = local.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    this = Period(_midnight(first, zone), _midnight(following, zone), first.strftime("%Y-%m"))
    before = Period(_midnight(previous, zone), _midnight(first, zone), previous.strftime("%Y-%m"))
    return this, before
