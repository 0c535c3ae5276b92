"""SLA clocks: a budget of (business or wall) time that runs, pauses, resumes and stops.

Each open case carries its clocks: ``first_touch`` and ``resolution`` count business time on the
merchant's calendar and pause while the desk waits on the customer; ``operational`` runs to a fixed
deadline (ship cutoff, promised delivery, a processor's evidence date) and never pauses;
``marketplace_reply`` counts wall time (a marketplace's 24-hour reply window) whatever the
business hours. Every clock passes three stages: a warning at 75% of its budget, the breach at
100% and the escalation at 150%; each stage fires once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol


class ClockName(StrEnum):
    FIRST_TOUCH = "first_touch"
    RESOLUTION = "resolution"
    OPERATIONAL = "operational"
    MARKETPLACE_REPLY = "marketplace_reply"


class Stage(StrEnum):
    WARNING = "warning"
    BREACH = "breach"
    ESCALATION = "escalation"


STAGE_SHARE: dict[Stage, float] = {Stage.WARNING: 0.75, Stage.BREACH: 1.0, Stage.ESCALATION: 1.5}


class BusinessTime(Protocol):
    """What a clock needs of a calendar (``domain.calendar.BusinessCalendar`` is one)."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...


class WallTime:
    """Plain elapsed time: clocks that ignore business hours.

    Counted in UTC (and answered in UTC, like a business calendar): Python's arithmetic on two
    times of the same zone is wall-clock arithmetic, which would make "24 hours" 25 real hours
    across a fall-back night.
    """

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return _utc(start) + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return max(_utc(end) - _utc(start), timedelta(0))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: SLA clocks only handle timezone-aware times")
    return moment.astimezone(UTC)


WALL = WallTime()


@dataclass(slots=True)
class SlaClock:
    """One clock of one case. ``consumed`` is the budget used before ``running_since``."""

    name: ClockName
    started_at: datetime
    target: timedelta
    business: bool
    pausable: bool
    consumed: timedelta = timedelta(0)
    running_since: datetime | None = None
    stopped_at: datetime | None = None
    pauses: list[list[datetime | None]] = field(default_factory=list)
    fired: dict[str, datetime] = field(default_factory=dict)
    due_at: datetime | None = None  # the breach moment while running; kept when stopped

    @classmethod
    def start(
        cls,
        name: ClockName,
        *,
        at: datetime,
        target: timedelta,
        business: bool,
        pausable: bool,
        calendar: BusinessTime,
    ) -> SlaClock:
        clock = cls(name, at, max(target, timedelta(0)), business, pausable, running_since=at)
        clock.due_at = clock.moment(Stage.BREACH, calendar)
        return clock

    @property
    def running(self) -> bool:
        return self.running_since is not None

    @property
    def paused(self) -> bool:
        return self.stopped_at is None and self.running_since is None

    def time(self, calendar: BusinessTime) -> BusinessTime:
        return calendar if self.business else WALL

    def moment(self, stage: Stage, calendar: BusinessTime) -> datetime | None:
        """When ``stage`` comes, if the clock keeps running; None while paused or stopped."""
        if self.running_since is None:
            return None
        left = self.target * STAGE_SHARE[stage] - self.consumed
        if left <= timedelta(0):
            return self.running_since
        return self.time(calendar).add(self.running_since, left)

    def used(self, at: datetime, calendar: BusinessTime) -> timedelta:
        if self.running_since is None:
            return self.consumed
        return self.consumed + self.time(calendar).elapsed(self.running_since, at)

    def pause(self, at: datetime, calendar: BusinessTime) -> bool:
        if not self.pausable or self.running_since is None:
            return False
        self.consumed = self.used(at, calendar)
        self.running_since, self.due_at = None, None
        self.pauses.append([at, None])
        return True

    def resume(self, at: datetime, calendar: BusinessTime) -> bool:
        if not self.paused:
            return False
        self.running_since = at
        self.due_at = self.moment(Stage.BREACH, calendar)
        if self.pauses and self.pauses[-1][1] is None:
            self.pauses[-1][1] = at
        return True

    def stop(self, at: datetime, calendar: BusinessTime) -> bool:
        if self.stopped_at is not None:
            return False
        self.consumed = self.used(at, calendar)
        self.running_since, self.stopped_at = None, at
        if self.pauses and self.pauses[-1][1] is None:
            self.pauses[-1][1] = at
        return True

    @property
    def breached(self) -> bool:
        return Stage.BREACH.value in self.fired or (
            self.stopped_at is not None and self.consumed > self.target
        )

    def due_stages(self, now: datetime, calendar: BusinessTime) -> list[tuple[Stage, datetime]]:
        """The stages that have come by ``now`` and not fired yet, in order."""
        due = []
        for stage in Stage:
            moment = self.moment(stage, calendar)
            if stage.value not in self.fired and moment is not None and moment <= now:
                due.append((stage, moment))
        return due

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name.value,
            "started_at": self.started_at.isoformat(),
            "target_seconds": _seconds(self.target),
            "business": self.business,
            "pausable": self.pausable,
            "consumed_seconds": _seconds(self.consumed),
            "running_since": _iso(self.running_since),
            "stopped_at": _iso(self.stopped_at),
            "pauses": [[_iso(start), _iso(end)] for start, end in self.pauses],
            "fired": {stage: at.isoformat() for stage, at in self.fired.items()},
            "due_at": _iso(self.due_at),
            "breached": self.breached,
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> SlaClock:
        return cls(
            name=ClockName(body["name"]),
            started_at=_time(body["started_at"]),
            target=timedelta(seconds=body["target_seconds"]),
            business=bool(body["business"]),
            pausable=bool(body["pausable"]),
            consumed=timedelta(seconds=body["consumed_seconds"]),
            running_since=_maybe(body.get("running_since")),
            stopped_at=_maybe(body.get("stopped_at")),
            pauses=[[_maybe(a), _maybe(b)] for a, b in body.get("pauses", [])],
            fired={stage: _time(at) for stage, at in body.get("fired", {}).items()},
            due_at=_maybe(body.get("due_at")),
        )


def _seconds(span: timedelta) -> int | float:
    """Whole seconds as an int; a fraction (clocks run from real ``now``s) kept to the
    microsecond, so a stored clock comes back with the same breach moment."""
    seconds = span.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
