"""The order figures of KPIS.md: one grouped query over the orders placed in the period.

Orders are counted once (a row per order), by channel x fulfilment type. An order *shipped* when
a shipment was ever created (a shipped or delivered time). Late delivery compares calendar dates
in the merchant's time zone: PostgreSQL converts with ``timezone()``. SQLite has no time-zone
database: around the period (``NEAR``), where deliveries and promises fall, the zone's UTC
offsets are worked out once with ``zoneinfo`` and the query shifts the stored UTC text by the
offset of its span (``date(...)``, native); a time outside goes to a small deterministic SQL
function (``rd_local_date``) that converts it with ``zoneinfo``: calling Python for each order
would cost more than the rest of the query.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, exists, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from recoverydesk.persistence.tables import cancellations, orders
from recoverydesk.persistence.types import UTCDateTime
from recoverydesk.reports.kpi_period import Period
from recoverydesk.reports.kpi_tally import Tallies

EXAMPLES = 5
MISSING = ("channel", "fulfillment_type", "value", "currency", "ship_by", "promised_by")
NEAR = (timedelta(days=92), timedelta(days=366))  # before the period's start, after its end
_STEP = 6 * 3600  # a zone changes its offset at most once in this many seconds


def _local_date_text(stored: str | None, zone: str) -> str | None:
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored[:-1]).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


def local_date(db: Connection, column: Any, zone: str, period: Period) -> ColumnElement[Any]:
    """The calendar date of a stored UTC time in ``zone``, in SQL."""
    if db.dialect.name == "postgresql":
        return cast("ColumnElement[Any]", func.date(func.timezone(zone, column)))
    raw = db.connection.driver_connection
    assert raw is not None
    raw.create_function("rd_local_date", 2, _local_date_text, deterministic=True)
    converted: ColumnElement[Any] = func.rd_local_date(column, zone)
    first, last = (int(t.timestamp()) for t in (period.start - NEAR[0], period.end + NEAR[1]))
    spans = _offsets(zone, first, last)
    ends = [start for start, _ in spans[1:]] + [last]
    whens: list[tuple[Any, ColumnElement[Any]]] = [(column < _stored(first), converted)]
    for (_, offset), end in zip(spans, ends, strict=True):
        whens.append((column < _stored(end), _shifted(column, offset)))
    return case(*whens, else_=converted)


def _stored(seconds: int) -> ColumnElement[Any]:
    return literal(datetime.fromtimestamp(seconds, UTC), UTCDateTime)


def _shifted(column: Any, offset: int) -> ColumnElement[Any]:
    """The date of stored UTC text ``offset`` seconds later (whole seconds: SQLite rounds the
    fraction to milliseconds, which can carry into the next day)."""
    if offset == 0:
        return cast("ColumnElement[Any]", func.substr(column, 1, 10))
    return cast("ColumnElement[Any]", func.date(func.substr(column, 1, 19), f"{offset:+d} seconds"))


def _offset(zone: ZoneInfo, seconds: int) -> int:
    shift = datetime.fromtimestamp(seconds, zone).utcoffset()
    return int(shift.total_seconds()) if shift is not None else 0


@lru_cache(maxsize=256)
def _offsets(name: str, first: int, last: int) -> tuple[tuple[int, int], ...]:
    """The UTC offsets of zone ``name`` from ``first`` to ``last`` (epoch seconds), as
    (from, offset) spans, each change found to the second."""
    zone = ZoneInfo(name)
    spans = [(first, _offset(zone, first))]
    for at in range(first, last, _STEP):
        following = min(at + _STEP, last)
        if _offset(zone, following) == spans[-1][1]:
            continue
        low, high = at, following  # the offset changes after low, by high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if _offset(zone, middle) == spans[-1][1] else (low, middle)
        spans.append((high, _offset(zone, high)))
    return tuple(spans)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def order_conditions(
    db: Connection, merchant_id: int, zone: str, period: Period
) -> dict[str, ColumnElement[bool]]:
    """Each counted fact of an order as a SQL condition, by the tally key it adds to."""
    o = orders.c
    shipped = or_(o.shipped_at.is_not(None), o.delivered_at.is_not(None))
    by_customer = exists().where(
        cancellations.c.merchant_id == merchant_id,
        cancellations.c.order_ref == o.ref,
        cancellations.c.requested_by == "customer",
    )
    shipped_before_placed = o.shipped_at < o.placed_at
    delivered_before_shipped = o.delivered_at < o.shipped_at
    timed_ship = and_(o.shipped_at.is_not(None), o.ship_by.is_not(None), ~shipped_before_placed)
    timed_delivery = and_(
        o.delivered_at.is_not(None), o.promised_by.is_not(None), ~delivered_before_shipped
    )
    late_day = local_date(db, o.delivered_at, zone, period) > local_date(
        db, o.promised_by, zone, period
    )
    facts: dict[str, ColumnElement[bool]] = {
        "cancelled": o.cancelled.is_(True),
        "partially_cancelled": o.partially_cancelled.is_(True),
        "cancelled_before_shipment": and_(o.cancelled.is_(True), ~shipped),
        "seller_cancelled": and_(o.cancelled.is_(True), ~by_customer),
        "shipped_with_ship_by": timed_ship,
        "shipped_late": and_(timed_ship, o.shipped_at > o.ship_by),
        "delivered_with_promise": timed_delivery,
        "delivered_late": and_(timed_delivery, late_day),
        "shipped_before_placed": shipped_before_placed,
        "delivered_before_shipped": delivered_before_shipped,
    }
    for name in MISSING:
        facts[f"missing_{name}"] = o[name].is_(None)
    return facts


def order_tallies(
    db: Connection, merchant_id: int, period: Period, zone: str, tallies: Tallies
) -> None:
    facts = order_conditions(db, merchant_id, zone, period)
    names = list(facts)
    rows = db.execute(
        select(
            orders.c.channel,
            orders.c.fulfillment_type,
            func.count(),
            *(_flag(facts[name]) for name in names),
        )
        .where(_placed_in(merchant_id, period))
        .group_by(orders.c.channel, orders.c.fulfillment_type)
    ).all()
    for channel, kind, total, *flags in rows:
        counts = tallies.at(channel, kind).counts
        counts["orders"] += int(total)
        for name, value in zip(names, flags, strict=True):
            counts[name] += int(value or 0)


def _placed_in(merchant_id: int, period: Period) -> ColumnElement[bool]:
    return and_(
        orders.c.merchant_id == merchant_id,
        orders.c.placed_at >= period.start,
        orders.c.placed_at < period.end,
    )


def data_quality(db: Connection, merchant_id: int, period: Period, counts: Any) -> dict[str, Any]:
    """How many orders of the period lacked each field, the contradictions found (with a few
    order refs as examples; they are left out of the time figures they would corrupt), and the
    merchant's orders that have no placed time, so belong to no period."""
    undated = db.execute(
        select(func.count()).where(
            orders.c.merchant_id == merchant_id, orders.c.placed_at.is_(None)
        )
    ).scalar_one()
    contradictions = {}
    for name, condition in (
        ("shipped_before_placed", orders.c.shipped_at < orders.c.placed_at),
        ("delivered_before_shipped", orders.c.delivered_at < orders.c.shipped_at),
    ):
        examples = []
        if counts[name]:
            examples = list(
                db.scalars(
                    select(orders.c.ref)
                    .where(_placed_in(merchant_id, period), condition)
                    .order_by(orders.c.ref)
                    .limit(EXAMPLES)
                )
            )
        contradictions[name] = {"count": counts[name], "examples": examples}
    return {
        "missing": {name: counts[f"missing_{name}"] for name in MISSING},
        "contradictions": contradictions,
        "orders_without_placed_at": int(undated),
    }
