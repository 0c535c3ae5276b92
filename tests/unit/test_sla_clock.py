"""SLA clocks: due times, stages, pauses and stops on business calendars and the wall clock.

Every expected moment is worked out by hand. Berlin is CET (UTC+1) in November 2026 and CEST
(UTC+2) until Sunday 2026-10-25 03:00, when clocks go back to 02:00. Weekdays: 2026-11-16 and
2026-10-26 are Mondays, 2026-11-20 and 2026-10-23 Fridays. Business hours are Berlin's
Monday to Friday 09:00-17:00 (08:00-16:00 UTC in November), or a split shift 09:00-12:00 and
13:00-17:00.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from recoverydesk.domain.calendar import BusinessCalendar, Shift
from recoverydesk.domain.cases import Case, CaseStatus, Category, Outcome
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.sla import WALL, BusinessTime, ClockName, SlaClock, Stage
from recoverydesk.domain.triage import apply_decision
from recoverydesk.services.calendars import CalendarSpec
from recoverydesk.services.policy import Policy
from recoverydesk.services.triage import Triage

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
BERLIN_ZONE = ZoneInfo("Europe/Berlin")


def utc(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def shift(start: str, end: str) -> Shift:
    return Shift(time.fromisoformat(start), time.fromisoformat(end))


BERLIN = BusinessCalendar("Europe/Berlin", dict.fromkeys(range(5), (shift("09:00", "17:00"),)))
SPLIT = BusinessCalendar(
    "Europe/Berlin", dict.fromkeys(range(5), (shift("09:00", "12:00"), shift("13:00", "17:00")))
)
ALL_DAY_BERLIN = BusinessCalendar(
    "Europe/Berlin", dict.fromkeys(range(7), (shift("00:00", "00:00"),))
)
CALENDARS: dict[str, BusinessTime] = {"berlin": BERLIN, "split": SPLIT, "wall": WALL}


def clock(
    calendar: str,
    at: datetime,
    target: timedelta,
    *,
    pausable: bool = True,
    name: ClockName = ClockName.FIRST_TOUCH,
) -> SlaClock:
    return SlaClock.start(
        name,
        at=at,
        target=target,
        business=calendar != "wall",
        pausable=pausable,
        calendar=CALENDARS[calendar],
    )


# --- due times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "start", "target", "due"),
    [
        # Fri 15:00-17:00 Berlin is 2 h, then Monday 09:00-11:00
        pytest.param("berlin", utc(11, 20, 14), 4 * HOUR, utc(11, 23, 10), id="across-a-weekend"),
        # Tue 16:00-17:00 is 1 h, then Wednesday 09:00-12:00
        pytest.param("berlin", utc(11, 17, 15), 4 * HOUR, utc(11, 18, 11), id="overnight"),
        # 07:00 Berlin: the count starts at 09:00
        pytest.param("berlin", utc(11, 16, 6), HOUR, utc(11, 16, 9), id="before-opening"),
        # Saturday: the count starts Monday 09:00
        pytest.param("berlin", utc(11, 21, 10), 2 * HOUR, utc(11, 23, 10), id="from-saturday"),
        # 10:00-12:00 is 2 h, lunch is closed, 13:00-15:00
        pytest.param("split", utc(11, 16, 9), 4 * HOUR, utc(11, 16, 14), id="split-over-lunch"),
        # 12:30 is lunch: the count starts at 13:00
        pytest.param("split", utc(11, 16, 11, 30), HOUR, utc(11, 16, 13), id="split-in-lunch"),
        # Fri 16:00-17:00, Mon 09:00-12:00, 13:00-17:00, Tue 09:00-12:00 = 1+3+4+3
        pytest.param(
            "split", utc(11, 20, 15), 11 * HOUR, utc(11, 24, 11), id="split-across-a-weekend"
        ),
        pytest.param("wall", utc(11, 20, 14), 4 * HOUR, utc(11, 20, 18), id="wall-4h"),
        pytest.param("wall", utc(11, 20, 14), 24 * HOUR, utc(11, 21, 14), id="wall-over-saturday"),
    ],
)
def test_a_started_clock_is_due_after_its_target_in_its_time(calendar, start, target, due):
    # given a clock started at `start`
    started = clock(calendar, start, target)
    # then it is due once the target has run on its calendar (or the wall clock)
    assert started.due_at == due
    assert started.moment(Stage.BREACH, CALENDARS[calendar]) == due
    assert (started.running, started.paused, started.running_since) == (True, False, start)


@pytest.mark.parametrize(
    ("calendar", "start", "target", "warning", "breach", "escalation"),
    [
        # 3 h: Fri 15-17 + Mon 09-10; 4 h: Mon 09-11; 6 h: Mon 09-13 (Berlin)
        pytest.param(
            "berlin",
            utc(11, 20, 14),
            4 * HOUR,
            utc(11, 23, 9),
            utc(11, 23, 10),
            utc(11, 23, 12),
            id="berlin-4h-over-the-weekend",
        ),
        # 45 min: Mon 16:30-17:00 + Tue 09:00-09:15; 60 min: 09:30; 90 min: 10:00
        pytest.param(
            "berlin",
            utc(11, 16, 15, 30),
            HOUR,
            utc(11, 17, 8, 15),
            utc(11, 17, 8, 30),
            utc(11, 17, 9),
            id="berlin-1h-overnight",
        ),
        # 3 h: 10-12 + 13-14; 4 h: 13-15; 6 h: 13-17, due at the closing moment
        pytest.param(
            "split",
            utc(11, 16, 9),
            4 * HOUR,
            utc(11, 16, 13),
            utc(11, 16, 14),
            utc(11, 16, 16),
            id="split-4h",
        ),
        pytest.param(
            "wall",
            utc(11, 20, 14),
            4 * HOUR,
            utc(11, 20, 17),
            utc(11, 20, 18),
            utc(11, 20, 20),
            id="wall-4h",
        ),
    ],
)
def test_stages_come_at_75_100_and_150_percent(
    calendar, start, target, warning, breach, escalation
):
    # given a running clock
    started = clock(calendar, start, target)
    time_of = CALENDARS[calendar]
    # then its warning, breach and escalation come at 75%, 100% and 150% of the target
    moments = {stage: started.moment(stage, time_of) for stage in Stage}
    assert moments == {Stage.WARNING: warning, Stage.BREACH: breach, Stage.ESCALATION: escalation}


# --- pause and resume ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "start", "pause", "resume", "consumed", "paused_for", "due_before", "due_after"),
    [
        # started Mon 10:00 Berlin; paused 12:00 (2 h used); back Tue 11:00:
        # Mon 12-17 + Tue 09-11 = 7 h paused; 2 h left from Tue 11:00 = 13:00 Berlin
        pytest.param(
            "berlin",
            utc(11, 16, 9),
            utc(11, 16, 11),
            utc(11, 17, 10),
            2 * HOUR,
            7 * HOUR,
            utc(11, 16, 13),
            utc(11, 17, 12),
            id="overnight-pause",
        ),
        # started Fri 14:00 Berlin; paused Fri 16:00 (2 h used); back Mon 09:00:
        # 1 h of business time paused (Fri 16-17); due Mon 11:00 Berlin instead of 10:00
        pytest.param(
            "berlin",
            utc(11, 20, 13),
            utc(11, 20, 15),
            utc(11, 23, 8),
            2 * HOUR,
            HOUR,
            utc(11, 23, 9),
            utc(11, 23, 10),
            id="weekend-pause",
        ),
        # paused Fri 19:00 Berlin, back Mon 09:00: no business time passed, due unchanged
        pytest.param(
            "berlin",
            utc(11, 20, 13),
            utc(11, 20, 18),
            utc(11, 23, 8),
            3 * HOUR,
            timedelta(0),
            utc(11, 23, 9),
            utc(11, 23, 9),
            id="pause-out-of-hours",
        ),
        # split shift: started Mon 10:00 Berlin, paused 11:00 (1 h), back 14:00:
        # 11-12 + 13-14 = 2 h paused; 3 h left from 14:00 = 17:00 Berlin
        pytest.param(
            "split",
            utc(11, 16, 9),
            utc(11, 16, 10),
            utc(11, 16, 13),
            HOUR,
            2 * HOUR,
            utc(11, 16, 14),
            utc(11, 16, 16),
            id="split-pause-over-lunch",
        ),
        # a pausable wall clock: paused 2h30, due 2h30 later
        pytest.param(
            "wall",
            utc(11, 16, 9),
            utc(11, 16, 10),
            utc(11, 16, 12, 30),
            HOUR,
            150 * MINUTE,
            utc(11, 16, 13),
            utc(11, 16, 15, 30),
            id="wall-pause",
        ),
    ],
)
def test_a_pause_pushes_the_due_time_by_the_business_time_spent_paused(
    calendar, start, pause, resume, consumed, paused_for, due_before, due_after
):
    # given a 4-hour pausable clock
    running = clock(calendar, start, 4 * HOUR)
    time_of = CALENDARS[calendar]
    assert running.due_at == due_before
    # when the desk waits on the customer from `pause`
    assert running.pause(pause, time_of)
    # then the clock holds what it used and is due at no time
    assert (running.paused, running.consumed, running.due_at) == (True, consumed, None)
    assert [running.moment(stage, time_of) for stage in Stage] == [None, None, None]
    assert running.due_stages(resume + 30 * 24 * HOUR, time_of) == []
    # when the customer answers at `resume`
    assert running.resume(resume, time_of)
    # then the due time moves by exactly the business time spent paused
    assert time_of.elapsed(pause, resume) == paused_for
    assert running.due_at == due_after == time_of.add(due_before, paused_for)
    assert running.pauses == [[pause, resume]]
    assert (running.running, running.running_since) == (True, resume)


def test_pausing_twice_or_resuming_a_running_clock_changes_nothing():
    # given a running business clock
    running = clock("berlin", utc(11, 16, 9), 4 * HOUR)
    # when it is resumed while running, then paused twice
    assert not running.resume(utc(11, 16, 10), BERLIN)
    assert running.pause(utc(11, 16, 10), BERLIN)
    assert not running.pause(utc(11, 16, 11), BERLIN)
    # then only the first pause counts
    assert running.pauses == [[utc(11, 16, 10), None]]
    assert running.consumed == HOUR


def test_two_pauses_are_both_remembered_and_both_push_the_due_time():
    # given a 4-hour clock started Mon 10:00 Berlin (due 14:00 Berlin)
    running = clock("berlin", utc(11, 16, 9), 4 * HOUR)
    # when it is paused 11:00-12:00 and 13:00-13:30 Berlin
    running.pause(utc(11, 16, 10), BERLIN)
    running.resume(utc(11, 16, 11), BERLIN)
    running.pause(utc(11, 16, 12), BERLIN)
    running.resume(utc(11, 16, 12, 30), BERLIN)
    # then it used 2 h and is due 1h30 later: 15:30 Berlin
    assert running.consumed == 2 * HOUR
    assert running.due_at == utc(11, 16, 14, 30)
    assert running.pauses == [
        [utc(11, 16, 10), utc(11, 16, 11)],
        [utc(11, 16, 12), utc(11, 16, 12, 30)],
    ]


@pytest.mark.parametrize("calendar", ["berlin", "wall"])
def test_a_clock_that_does_not_pause_ignores_pause(calendar):
    # given an operational clock: a fixed deadline that never pauses
    deadline = utc(11, 18, 12)
    start = utc(11, 16, 9)
    operational = clock(
        calendar, start, deadline - start, pausable=False, name=ClockName.OPERATIONAL
    )
    time_of = CALENDARS[calendar]
    due = operational.due_at
    # when the desk starts waiting on the customer
    assert not operational.pause(utc(11, 16, 11), time_of)
    # then it keeps running to the same moment, with no pause on record
    assert (operational.running, operational.due_at, operational.pauses) == (True, due, [])
    assert not operational.resume(utc(11, 17, 10), time_of)
    assert operational.due_at == due


# --- stop ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_at", "consumed", "breached"),
    [
        pytest.param(utc(11, 16, 12), 3 * HOUR, False, id="in-time"),
        pytest.param(utc(11, 16, 13), 4 * HOUR, False, id="at-the-due-moment"),
        pytest.param(utc(11, 16, 15), 6 * HOUR, True, id="late"),
        # Mon 10-17 + Tue 09-10 Berlin; Monday evening does not count
        pytest.param(utc(11, 17, 9), 8 * HOUR, True, id="next-morning"),
    ],
)
def test_stop_records_what_was_used_and_whether_it_breached(stop_at, consumed, breached):
    # given a 4-hour business clock started Mon 10:00 Berlin (due 14:00 Berlin)
    running = clock("berlin", utc(11, 16, 9), 4 * HOUR)
    # when it stops
    assert running.stop(stop_at, BERLIN)
    # then it records the business time used and whether that passed the target
    assert (running.consumed, running.breached, running.stopped_at) == (
        consumed,
        breached,
        stop_at,
    )
    # and it no longer runs, keeps its due time, and has no stage ahead
    assert (running.running, running.paused, running.due_at) == (False, False, utc(11, 16, 13))
    assert running.due_stages(utc(12, 31), BERLIN) == []
    # and stopping again changes nothing
    assert not running.stop(utc(12, 31), BERLIN)
    assert running.consumed == consumed


def test_stopping_a_paused_clock_closes_the_pause():
    # given a clock paused after 2 hours
    running = clock("berlin", utc(11, 16, 9), 4 * HOUR)
    running.pause(utc(11, 16, 11), BERLIN)
    # when it stops the next day
    running.stop(utc(11, 17, 15), BERLIN)
    # then the paused time is not counted and the pause has an end
    assert (running.consumed, running.breached) == (2 * HOUR, False)
    assert running.pauses == [[utc(11, 16, 11), utc(11, 17, 15)]]
    assert not running.resume(utc(11, 17, 16), BERLIN)


def test_a_fired_breach_counts_as_breached_while_running():
    # given a running clock whose breach stage fired
    running = clock("wall", utc(11, 16, 9), HOUR)
    assert not running.breached
    running.fired[Stage.BREACH.value] = utc(11, 16, 10)
    # then it is breached
    assert running.breached


# --- due stages ----------------------------------------------------------------------------------

# A 4-hour clock from Fri 15:00 Berlin: warning Mon 10:00, breach 11:00, escalation 13:00 Berlin
WARN, BREACH, ESCALATE = utc(11, 23, 9), utc(11, 23, 10), utc(11, 23, 12)


@pytest.mark.parametrize(
    ("now", "fired", "due"),
    [
        pytest.param(utc(11, 20, 23), [], [], id="friday-night-nothing"),
        pytest.param(WARN - MINUTE, [], [], id="a-minute-before-the-warning"),
        pytest.param(WARN, [], [(Stage.WARNING, WARN)], id="warning-on-the-dot"),
        pytest.param(
            utc(11, 23, 11),
            [],
            [(Stage.WARNING, WARN), (Stage.BREACH, BREACH)],
            id="two-stages-in-order",
        ),
        pytest.param(
            utc(11, 23, 11), [Stage.WARNING], [(Stage.BREACH, BREACH)], id="warning-fired"
        ),
        pytest.param(
            utc(11, 24, 9),
            [Stage.WARNING, Stage.BREACH],
            [(Stage.ESCALATION, ESCALATE)],
            id="escalation-left",
        ),
        pytest.param(utc(11, 24, 9), list(Stage), [], id="all-fired"),
    ],
)
def test_due_stages_lists_the_stages_come_and_not_fired(now, fired, due):
    # given a running clock with some stages fired
    running = clock("berlin", utc(11, 20, 14), 4 * HOUR)
    for stage in fired:
        running.fired[stage.value] = now
    # then due_stages lists the stages that have come and have not fired, in order
    assert running.due_stages(now, BERLIN) == due


def test_each_stage_is_due_once():
    # given a running clock, checked over and over as the escalation timer would
    running = clock("berlin", utc(11, 20, 14), 4 * HOUR)
    seen = []
    # when every due stage is put in `fired` as it is reported
    for now in [WARN, WARN, utc(11, 23, 11), utc(11, 23, 11), utc(11, 24, 9), utc(11, 30, 9)]:
        for stage, moment in running.due_stages(now, BERLIN):
            running.fired[stage.value] = now
            seen.append((stage, moment))
    # then each stage came exactly once
    assert seen == [(Stage.WARNING, WARN), (Stage.BREACH, BREACH), (Stage.ESCALATION, ESCALATE)]
    assert running.breached


# --- to_dict / from_dict -------------------------------------------------------------------------


def test_a_clock_survives_a_round_trip_through_its_dict():
    # given a clock that was paused, resumed and warned
    running = clock("berlin", utc(11, 16, 9), 4 * HOUR)
    running.pause(utc(11, 16, 11), BERLIN)
    running.resume(utc(11, 17, 10), BERLIN)
    running.fired["warning"] = utc(11, 17, 11)
    # when it is written as JSON and read back
    body = running.to_dict()
    again = SlaClock.from_dict(json.loads(json.dumps(body)))
    # then it is the same clock, and the dict reads as documented
    assert again == running
    assert body == {
        "name": "first_touch",
        "started_at": "2026-11-16T09:00:00+00:00",
        "target_seconds": 14400,
        "business": True,
        "pausable": True,
        "consumed_seconds": 7200,
        "running_since": "2026-11-17T10:00:00+00:00",
        "stopped_at": None,
        "pauses": [["2026-11-16T11:00:00+00:00", "2026-11-17T10:00:00+00:00"]],
        "fired": {"warning": "2026-11-17T11:00:00+00:00"},
        "due_at": "2026-11-17T12:00:00+00:00",
        "breached": False,
    }


def test_a_stopped_clock_with_fractions_of_a_second_survives_a_round_trip():
    # given an operational clock started at a real `now` (with microseconds), stopped late
    start = utc(11, 16, 9) + timedelta(microseconds=250_000)
    deadline = utc(11, 16, 12)
    operational = clock("wall", start, deadline - start, pausable=False, name=ClockName.OPERATIONAL)
    operational.stop(utc(11, 16, 12, 0, 1) + timedelta(microseconds=500_000), BERLIN)
    # when it is written and read back
    again = SlaClock.from_dict(json.loads(json.dumps(operational.to_dict())))
    # then nothing is lost: the same target, use and breach moment
    assert again == operational
    assert again.target == timedelta(hours=2, minutes=59, seconds=59, microseconds=750_000)
    assert again.consumed == timedelta(hours=3, seconds=1, microseconds=250_000)
    assert (again.breached, again.due_at) == (True, deadline)


# --- daylight saving: Berlin goes back an hour on Sunday 2026-10-25 ------------------------------


@pytest.mark.parametrize(
    ("calendar", "start", "target", "due"),
    [
        # Fri 15:00-17:00 CEST (13-15 UTC), then Monday 09:00-11:00 CET (08-10 UTC)
        pytest.param(
            "berlin", utc(10, 23, 13), 4 * HOUR, utc(10, 26, 10), id="business-over-dst-weekend"
        ),
        # Fri 2 h + Mon 8 h + Tue 8 h + Wed 09:00-15:00 CET
        pytest.param(
            "berlin", utc(10, 23, 13), 24 * HOUR, utc(10, 28, 14), id="business-24h-dst-week"
        ),
        pytest.param("wall", utc(10, 23, 13), 24 * HOUR, utc(10, 24, 13), id="wall-24h-dst-week"),
        # Sat 12:00 CEST + 24 h = Sun 11:00 CET: 23 hours later on the local clock
        pytest.param(
            "wall",
            datetime(2026, 10, 24, 12, tzinfo=BERLIN_ZONE),
            24 * HOUR,
            datetime(2026, 10, 25, 11, tzinfo=BERLIN_ZONE),
            id="wall-24h-over-the-fall-back",
        ),
    ],
)
def test_a_dst_week_wall_clock_against_business_clock(calendar, start, target, due):
    # given a clock started in the week Berlin leaves summer time
    started = clock(calendar, start, target)
    # then it is due at the hand-computed moment
    assert started.due_at == due


def test_stages_of_a_24h_business_clock_in_the_dst_week():
    # given a 24-hour business clock from Fri 2026-10-23 15:00 CEST
    started = clock("berlin", utc(10, 23, 13), 24 * HOUR)
    # then: 18 h = Fri 2 + Mon 8 + Tue 8, at Tuesday's close (17:00 CET);
    # 36 h = 34 h by Thursday's close, + Fri 09:00-11:00 CET
    assert [started.moment(stage, BERLIN) for stage in Stage] == [
        utc(10, 27, 16),
        utc(10, 28, 14),
        utc(10, 30, 10),
    ]
    # and the wall clock would have run 69 hours from Friday to Monday 11:00 CET, business 4
    assert BERLIN.elapsed(utc(10, 23, 13), utc(10, 26, 10)) == 4 * HOUR
    assert WALL.elapsed(utc(10, 23, 13), utc(10, 26, 10)) == 69 * HOUR


def test_the_wall_clock_counts_real_hours_whatever_the_zone_of_its_times():
    # given two Berlin noons around the fall-back night
    saturday_noon = datetime(2026, 10, 24, 12, tzinfo=BERLIN_ZONE)
    sunday_noon = datetime(2026, 10, 25, 12, tzinfo=BERLIN_ZONE)
    # then 25 real hours lie between them, and 24 hours on from Saturday noon is 10:00 UTC
    assert WALL.elapsed(saturday_noon, sunday_noon) == 25 * HOUR
    assert WALL.add(saturday_noon, 24 * HOUR) == utc(10, 25, 10)
    assert WALL.add(saturday_noon, 24 * HOUR).tzinfo is UTC
    # and a naive time is refused, as business calendars refuse it
    with pytest.raises(ValueError, match="naive"):
        WALL.add(datetime(2026, 10, 24, 12), HOUR)


def test_a_round_the_clock_calendar_counts_the_25_hour_day():
    # given a Berlin calendar open around the clock every day
    sunday = datetime(2026, 10, 25, tzinfo=BERLIN_ZONE)
    monday = datetime(2026, 10, 26, tzinfo=BERLIN_ZONE)
    # then the fall-back Sunday holds 25 business hours, and a 24-hour clock agrees with the wall
    assert ALL_DAY_BERLIN.elapsed(sunday, monday) == 25 * HOUR
    assert ALL_DAY_BERLIN.add(utc(10, 24, 10), 24 * HOUR) == WALL.add(utc(10, 24, 10), 24 * HOUR)


# --- Triage.keep_clocks --------------------------------------------------------------------------

T0 = utc(11, 16, 9)  # Mon 10:00 Berlin: triaged
T1 = utc(11, 16, 11)  # Mon 12:00 Berlin: waiting on the customer
T2 = utc(11, 17, 10)  # Tue 11:00 Berlin: the customer answered
T3 = utc(11, 17, 11)  # Tue 12:00 Berlin: delivered, closed
PROMISED = utc(11, 18, 12)

BERLIN_DESK = Triage(
    Policy(
        calendar=CalendarSpec(
            time_zone="Europe/Berlin",
            hours={day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        )
    ),
    1,
)


def delivery_case() -> tuple[Case, OrderView]:
    """A damaged parcel of an amazon order, triaged at T0 into the delivery queue (P2)."""
    order = OrderView(ref="1001")
    order.apply(
        CanonicalEvent(
            id="amazon:o",
            source=EventSource.AMAZON,
            type=EventType.ORDER_PLACED,
            occurred_at=T0 - 48 * HOUR,
            order=OrderFacts(
                ref="1001", channel="amazon", value=Decimal("80.00"), promised_by=PROMISED
            ),
        )
    )
    order.apply(
        CanonicalEvent(
            id="wms:s",
            source=EventSource.WMS,
            type=EventType.FULFILLMENT_SHIPPED,
            occurred_at=T0 - 24 * HOUR,
            order=OrderFacts(ref="1001"),
        )
    )
    case = Case.open(
        order_ref="1001",
        category=Category.DELIVERY_EXCEPTION,
        opened_at=T0,
        opened_by="carrier:x",
        hold_type=None,
        recorded_at=T0,
    )
    apply_decision(case, BERLIN_DESK.decide(case, order, None, T0), at=T0, version=1)
    assert (case.queue, case.priority, case.deadline) == ("delivery", "P2", PROMISED)
    return case, order


# First touch 4 business hours, resolution 8 (the delivery queue), the operational clock to the
# promised delivery (51 h of wall time), the marketplace reply 24 h of wall time.
STARTED = {
    "first_touch": utc(11, 16, 13),  # Mon 10-14 Berlin
    "resolution": utc(11, 17, 9),  # Mon 10-17 + Tue 09-10 Berlin
    "operational": PROMISED,
    "marketplace_reply": utc(11, 17, 9),
}
# Paused Mon 12:00 - Tue 11:00 Berlin: 7 business hours; first touch and resolution used 2 h
RESUMED = {
    "first_touch": utc(11, 17, 12),  # 2 h left from Tue 11:00 Berlin
    "resolution": utc(11, 17, 16),  # 6 h left from Tue 11:00 Berlin: 17:00
    "operational": PROMISED,
    "marketplace_reply": utc(11, 17, 9),
}
# Closed at T3: 2 h + 1 h of business time; 26 h of wall time
AT_CLOSE = {
    "first_touch": (3 * HOUR, False),
    "resolution": (3 * HOUR, False),
    "operational": (26 * HOUR, False),
    "marketplace_reply": (26 * HOUR, True),
}


def test_triage_starts_the_clocks_of_the_queue():
    # given a triaged delivery case on an amazon order
    case, order = delivery_case()
    # when its clocks are kept
    assert BERLIN_DESK.keep_clocks(case, order, T0)
    # then the four clocks run to their due times
    assert {name: c.due_at for name, c in case.clocks.items()} == STARTED
    assert {name: (c.business, c.pausable) for name, c in case.clocks.items()} == {
        "first_touch": (True, True),
        "resolution": (True, True),
        "operational": (False, False),
        "marketplace_reply": (False, False),
    }
    # and keeping them again changes nothing
    assert not BERLIN_DESK.keep_clocks(case, order, T0 + MINUTE)


def test_waiting_on_the_customer_pauses_only_the_sla_clocks():
    # given the case's clocks running
    case, order = delivery_case()
    BERLIN_DESK.keep_clocks(case, order, T0)
    # when the desk waits on the customer
    case.move_to(CaseStatus.WAITING_CUSTOMER, at=T1, actor="agent:ann")
    assert BERLIN_DESK.keep_clocks(case, order, T1)
    # then first touch and resolution pause; the operational and marketplace clocks run on
    assert {name: c.paused for name, c in case.clocks.items()} == {
        "first_touch": True,
        "resolution": True,
        "operational": False,
        "marketplace_reply": False,
    }
    assert {name: c.due_at for name, c in case.clocks.items()} == {
        **STARTED,
        "first_touch": None,
        "resolution": None,
    }
    # and while still waiting nothing more changes
    assert not BERLIN_DESK.keep_clocks(case, order, T1 + HOUR)


def test_resuming_work_restarts_the_paused_clocks_later():
    # given the case paused while waiting on the customer
    case, order = delivery_case()
    BERLIN_DESK.keep_clocks(case, order, T0)
    case.move_to(CaseStatus.WAITING_CUSTOMER, at=T1, actor="agent:ann")
    BERLIN_DESK.keep_clocks(case, order, T1)
    # when the customer answers and the case is back in progress
    case.move_to(CaseStatus.IN_PROGRESS, at=T2, actor="agent:ann")
    assert BERLIN_DESK.keep_clocks(case, order, T2)
    # then every clock runs, the paused ones due 7 business hours later
    assert {name: c.running for name, c in case.clocks.items()} == dict.fromkeys(STARTED, True)
    assert {name: c.due_at for name, c in case.clocks.items()} == RESUMED
    assert case.clocks["first_touch"].pauses == [[T1, T2]]
    assert case.clocks["operational"].pauses == []


def test_closing_the_case_stops_every_clock():
    # given the case worked, paused and resumed
    case, order = delivery_case()
    BERLIN_DESK.keep_clocks(case, order, T0)
    case.move_to(CaseStatus.WAITING_CUSTOMER, at=T1, actor="agent:ann")
    BERLIN_DESK.keep_clocks(case, order, T1)
    case.move_to(CaseStatus.IN_PROGRESS, at=T2, actor="agent:ann")
    BERLIN_DESK.keep_clocks(case, order, T2)
    # when the carrier confirms the delivery and the case closes
    case.confirm_outcome(
        Outcome.DELIVERED,
        reason_code=None,
        confirmed_at=T3,
        event_id="carrier:d",
        at=T3,
        root_cause="carrier_exception",
    )
    assert BERLIN_DESK.keep_clocks(case, order, T3 + HOUR)
    # then every clock stopped at the close, with what it used and whether it breached
    assert {name: c.stopped_at for name, c in case.clocks.items()} == dict.fromkeys(STARTED, T3)
    assert {name: (c.consumed, c.breached) for name, c in case.clocks.items()} == AT_CLOSE
    assert not BERLIN_DESK.keep_clocks(case, order, T3 + 2 * HOUR)


def test_the_first_touch_stops_the_first_touch_and_marketplace_clocks():
    # given the case's clocks running
    case, order = delivery_case()
    BERLIN_DESK.keep_clocks(case, order, T0)
    # when an agent first acts on it at Mon 11:30 Berlin
    touched = utc(11, 16, 10, 30)
    case.touch(at=touched, actor="agent:ann")
    assert BERLIN_DESK.keep_clocks(case, order, touched)
    # then first touch and marketplace reply stop there; resolution and operational run on
    stopped = {name: c.stopped_at for name, c in case.clocks.items()}
    assert stopped == {
        "first_touch": touched,
        "resolution": None,
        "operational": None,
        "marketplace_reply": touched,
    }
    assert case.clocks["first_touch"].consumed == 90 * MINUTE


def test_the_operational_clock_follows_a_moved_promise():
    # given the case's clocks running to the promised delivery (Wed 12:00 UTC)
    case, order = delivery_case()
    BERLIN_DESK.keep_clocks(case, order, T0)
    # when the carrier's new promise moves it a day later and the case is triaged again
    later = PROMISED + 24 * HOUR
    order.promised_by = later
    apply_decision(case, BERLIN_DESK.decide(case, order, None, T1), at=T1, version=1)
    assert BERLIN_DESK.keep_clocks(case, order, T1)
    # then the operational clock is due at the new promise, and the change is on the timeline
    assert case.clocks["operational"].due_at == later
    assert case.pending[-1].kind == "clock_changed"
    assert case.pending[-1].detail == {"clock": "operational", "due_at": later.isoformat()}
    # and the other clocks keep their due times
    assert case.clocks["first_touch"].due_at == STARTED["first_touch"]


def test_a_dispute_due_date_without_a_zone_is_taken_as_utc():
    # given a chargeback whose processor gave its due date without a time zone
    order = OrderView(ref="1001")
    case = Case.open(
        order_ref="1001",
        category=Category.CHARGEBACK,
        opened_at=T0,
        opened_by="psp:d",
        hold_type=None,
        recorded_at=T0,
        data={"due_by": "2026-11-30T12:00:00"},
    )
    # when it is triaged
    decision = BERLIN_DESK.decide(case, order, None, T0)
    # then its deadline is two days before the due date, in UTC, and the clocks can start
    assert decision.deadline == utc(11, 28, 12)
    apply_decision(case, decision, at=T0, version=1)
    assert BERLIN_DESK.keep_clocks(case, order, T0)
    assert case.clocks["operational"].due_at == utc(11, 28, 12)
