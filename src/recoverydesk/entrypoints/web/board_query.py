"""What the queue board reads: open cases per queue and priority, and the top of the queue in
the desk's priority order (priority, operational due time, revenue at risk, age), each with its
nearest SLA due time. Set-based SQL over the partial indexes of open cases:

- the counts are one grouped query answered from ``ix_cases_open_counts`` alone (it holds every
  column the query reads, so neither database visits the cases' rows);
- the top of the queue reads the first page of each queue and priority the counts found, in
  ``ix_cases_queue_page``'s own order (the index is sorted by queue and priority, then by the
  rest of the desk's priority order), and merges those pages: at most a page per queue and
  priority is read, however many cases are open. Each page names the index's leading columns,
  so the planner takes that index even before the table has statistics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Select, func, select, union_all

from recoverydesk.entrypoints.web.templates import span
from recoverydesk.persistence.tables import cases, is_open, orders

AT_RISK = timedelta(hours=1)  # a clock due within this long is shown as at risk
PAGE = 50


@dataclass(frozen=True, slots=True)
class BoardFilter:
    queue: str | None = None
    category: str | None = None
    priority: str | None = None
    channel: str | None = None
    fulfillment_type: str | None = None
    owner: str | None = None

    def query_string(self, **changes: str | None) -> str:
        values = {
            "queue": self.queue,
            "category": self.category,
            "priority": self.priority,
            "channel": self.channel,
            "fulfillment_type": self.fulfillment_type,
            "owner": self.owner,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True, slots=True)
class Countdown:
    """The nearest due time of a case: its clock, how long is left, and the breach risk."""

    risk: str  # breached | at_risk | on_track | paused | none
    text: str
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BoardRow:
    id: int
    order_ref: str
    category: str
    priority: str
    queue: str
    status: str
    owner: str | None
    opened_at: datetime
    revenue_at_risk: Decimal | None
    channel: str | None
    fulfillment_type: str | None
    countdown: Countdown


@dataclass
class QueueCount:
    queue: str
    stored: str | None = None  # the queue as the cases hold it (None: not routed)
    groups: dict[str | None, int] = field(default_factory=dict)  # by priority as stored
    by_priority: dict[str, int] = field(default_factory=dict)
    breached: int = 0
    at_risk: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_priority.values())


UNROUTED = "unrouted"


def _filtered(merchant_id: int, wanted: BoardFilter, columns: list[Any]) -> Select[Any]:
    query = select(*columns).where(cases.c.merchant_id == merchant_id, is_open(cases.c.status))
    if wanted.queue == UNROUTED:  # the board's row of cases no routing rule placed
        query = query.where(cases.c.queue.is_(None))
    elif wanted.queue:
        query = query.where(cases.c.queue == wanted.queue)
    # The segment filters read the case's copy of its order's (kept equal by the stores).
    for name, column in (
        ("category", cases.c.category),
        ("priority", cases.c.priority),
        ("owner", cases.c.owner),
        ("channel", cases.c.order_channel),
        ("fulfillment_type", cases.c.order_fulfillment_type),
    ):
        value = getattr(wanted, name)
        if value:
            query = query.where(column == value)
    return query


def queue_counts(
    db: Connection, merchant_id: int, wanted: BoardFilter, *, now: datetime
) -> list[QueueCount]:
    """Every queue with open cases: counts by priority, and how many are past or near their
    operational due time."""
    late = func.count().filter(cases.c.due_sort < now)
    near = func.count().filter((cases.c.due_sort >= now) & (cases.c.due_sort < now + AT_RISK))
    query = _filtered(
        merchant_id, wanted, [cases.c.queue, cases.c.priority, func.count(), late, near]
    ).group_by(cases.c.queue, cases.c.priority)
    found: dict[str, QueueCount] = {}
    for queue, priority, count, breached, at_risk in db.execute(query):
        entry = found.setdefault(queue or UNROUTED, QueueCount(queue or UNROUTED, queue))
        entry.by_priority[priority or "P3"] = entry.by_priority.get(priority or "P3", 0) + count
        entry.groups[priority] = count
        entry.breached += int(breached or 0)
        entry.at_risk += int(at_risk or 0)
    return [found[name] for name in sorted(found)]


_COLUMNS = [
    cases.c.id,
    cases.c.order_ref,
    cases.c.category,
    cases.c.priority,
    cases.c.queue,
    cases.c.status,
    cases.c.owner,
    cases.c.opened_at,
    cases.c.revenue_at_risk,
    cases.c.deadline,
    cases.c.clocks,
    cases.c.due_sort,
    cases.c.risk_cents,
]


def top_cases(
    db: Connection,
    merchant_id: int,
    wanted: BoardFilter,
    *,
    now: datetime,
    limit: int = PAGE,
    groups: Sequence[tuple[str | None, str | None]] | None = None,
) -> list[BoardRow]:
    """The first open cases in the priority order, with their SLA countdowns. ``groups``, the
    (queue, priority) pairs that have open cases (``page_groups`` of the counts), lets each
    one's first page be read from the index and the pages merged; without them the open cases
    are sorted whole."""
    query = _first_page(merchant_id, wanted, limit, groups)
    rows = list(db.execute(query))
    kinds = _order_kinds(db, merchant_id, [row.order_ref for row in rows])
    return [
        BoardRow(
            id=row.id,
            order_ref=row.order_ref,
            category=row.category,
            priority=row.priority or "P3",
            queue=row.queue or UNROUTED,
            status=row.status,
            owner=row.owner,
            opened_at=row.opened_at,
            revenue_at_risk=row.revenue_at_risk,
            channel=kinds.get(row.order_ref, (None, None))[0],
            fulfillment_type=kinds.get(row.order_ref, (None, None))[1],
            countdown=countdown(row.status, row.clocks, row.deadline, now),
        )
        for row in rows
    ]


def _in_priority_order(query: Select[Any], limit: int) -> Select[Any]:
    found = query.selected_columns
    return query.order_by(
        found.priority, found.due_sort, found.risk_cents.desc(), found.opened_at, found.id
    ).limit(limit)


def page_groups(counts: Sequence[QueueCount]) -> list[tuple[str | None, str | None]]:
    """The (queue, priority) pairs, as the cases hold them, that have open cases."""
    return [(count.stored, priority) for count in counts for priority in count.groups]


def _first_page(
    merchant_id: int,
    wanted: BoardFilter,
    limit: int,
    groups: Sequence[tuple[str | None, str | None]] | None,
) -> Select[Any]:
    if not groups:
        return _in_priority_order(_filtered(merchant_id, wanted, _COLUMNS), limit)
    pages = [
        _in_priority_order(
            _filtered(merchant_id, wanted, _COLUMNS).where(
                _is(cases.c.queue, queue), _is(cases.c.priority, priority)
            ),
            limit,
        )
        for queue, priority in groups
    ]
    if len(pages) == 1:
        return pages[0]
    merged = union_all(*(select(page.subquery()) for page in pages)).subquery()
    return _in_priority_order(select(merged), limit)


def _is(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def _order_kinds(
    db: Connection, merchant_id: int, refs: list[str]
) -> dict[str, tuple[str | None, str | None]]:
    if not refs:
        return {}
    query = select(orders.c.ref, orders.c.channel, orders.c.fulfillment_type).where(
        orders.c.merchant_id == merchant_id, orders.c.ref.in_(refs)
    )
    return {ref: (channel, kind) for ref, channel, kind in db.execute(query)}


_CHOICES: dict[tuple[str, int], tuple[float, dict[str, list[str]]]] = {}
CHOICES_FOR = 60.0  # seconds a merchant's filter values are kept (they change slowly)


def filter_choices(db: Connection, merchant_id: int) -> dict[str, list[str]]:
    """The values the board's filters offer, kept for a minute per merchant (reading them
    scans the merchant's open cases and orders)."""
    key = (db.engine.url.render_as_string(hide_password=True), merchant_id)
    kept = _CHOICES.get(key)
    if kept is not None and time.monotonic() - kept[0] < CHOICES_FOR:
        return kept[1]
    found = _read_choices(db, merchant_id)
    _CHOICES[key] = (time.monotonic(), found)
    return found


def _read_choices(db: Connection, merchant_id: int) -> dict[str, list[str]]:
    """What the merchant's open cases and orders hold."""
    open_cases = (cases.c.merchant_id == merchant_id) & is_open(cases.c.status)
    found: dict[str, list[str]] = {}
    for name, column in (
        ("queue", cases.c.queue),
        ("category", cases.c.category),
        ("owner", cases.c.owner),
    ):
        values = db.execute(select(column).where(open_cases).distinct()).scalars()
        found[name] = sorted(str(v) for v in values if v)
    for name, column in (
        ("channel", orders.c.channel),
        ("fulfillment_type", orders.c.fulfillment_type),
    ):
        values = db.execute(
            select(column).where(orders.c.merchant_id == merchant_id).distinct()
        ).scalars()
        found[name] = sorted(str(v) for v in values if v)
    found["priority"] = ["P1", "P2", "P3"]
    return found


def countdown(
    status: str, clocks: dict[str, Any], deadline: datetime | None, now: datetime
) -> Countdown:
    """The nearest due time among the running SLA clocks and the operational deadline."""
    due: list[tuple[datetime, str]] = []
    paused = False
    for name, clock in (clocks or {}).items():
        if clock.get("stopped_at"):
            continue
        if not clock.get("running_since"):
            paused = True
            continue
        if clock.get("due_at"):
            due.append((datetime.fromisoformat(clock["due_at"]), name.replace("_", " ")))
    if deadline is not None:
        due.append((deadline, "deadline"))
    if not due:
        if paused or status.startswith("waiting"):
            return Countdown("paused", "Paused: waiting")
        return Countdown("none", "No SLA clock")
    when, what = min(due)
    if when <= now:
        return Countdown("breached", f"Breached: {what} {span(now - when)} ago", when)
    label = "At risk" if when - now < AT_RISK else "On track"
    risk = "at_risk" if when - now < AT_RISK else "on_track"
    return Countdown(risk, f"{label}: {what} in {span(when - now)}", when)
