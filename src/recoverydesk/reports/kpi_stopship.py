"""Cancel-request figures (KPIS.md, STOPSHIP.md) and the chargeback ratio.

- ``time_to_cancel``: cancel requests made in the period that have a final outcome:
  ``final_outcome_at - requested_at`` (a negative span is a data-quality problem, left out).
- ``stop_ship_success_rate``: of those requests, the ones that arrived before the order shipped
  (no shipment, or the first shipment time after the request), ``stopped`` or
  ``cancelled_fraud``; the others are ``late_cancel_requests``.
- ``chargeback_ratio``: disputes opened in the calendar month of the period's start (up to the
  period's end) / orders with a captured payment (settled card transactions) in the month
  before, Mastercard's rule with its 1.5% threshold. Without any captured payment in the month
  before, the ratio cannot be computed and the figure says why.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from recoverydesk.persistence.tables import cancellations, events, orders
from recoverydesk.reports.kpi_period import Period, month_of
from recoverydesk.reports.kpi_tally import Tallies, rate

STOPPED = ("stopped", "cancelled_fraud")
CHARGEBACK_THRESHOLD = 0.015

_with_order = cancellations.outerjoin(
    orders,
    and_(
        orders.c.merchant_id == cancellations.c.merchant_id,
        orders.c.ref == cancellations.c.order_ref,
    ),
)


def stopship_tallies(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> int:
    """Adds the request figures; answers how many requests ended before they started."""
    rows = db.execute(
        select(
            orders.c.channel,
            orders.c.fulfillment_type,
            cancellations.c.requested_at,
            cancellations.c.final_outcome_at,
            cancellations.c.outcome,
            orders.c.shipped_at,
            orders.c.delivered_at,
        )
        .select_from(_with_order)
        .where(
            cancellations.c.merchant_id == merchant_id,
            cancellations.c.requested_at >= period.start,
            cancellations.c.requested_at < period.end,
            cancellations.c.final_outcome_at.is_not(None),
        )
    ).all()
    backwards = 0
    for channel, kind, asked, done, outcome, shipped_at, delivered_at in rows:
        tally = tallies.at(channel, kind)
        seconds = (done - asked).total_seconds()
        if seconds < 0:
            backwards += 1
        else:
            tally.cancel_seconds.append(seconds)
        shipment = shipped_at or delivered_at
        if shipment is None or shipment > asked:
            tally.counts["requests_before_shipment"] += 1
            tally.counts["stopped_before_shipment"] += int(outcome in STOPPED)
        else:
            tally.counts["late_cancel_requests"] += 1
    _exceptions_open(db, merchant_id, period, tallies)
    return backwards


def _exceptions_open(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    rows = db.execute(
        select(orders.c.channel, orders.c.fulfillment_type, func.count())
        .select_from(_with_order)
        .where(
            cancellations.c.merchant_id == merchant_id,
            cancellations.c.outcome == "exception",
            cancellations.c.requested_at < period.end,
        )
        .group_by(orders.c.channel, orders.c.fulfillment_type)
    ).all()
    for channel, kind, count in rows:
        tallies.at(channel, kind).counts["stop_ship_exceptions_open"] += int(count)


def _orders_with(db: Connection, merchant_id: int, kind: str, start: Any, end: Any) -> int:
    return int(
        db.execute(
            select(func.count(func.distinct(events.c.order_ref))).where(
                events.c.merchant_id == merchant_id,
                events.c.type == kind,
                events.c.occurred_at >= start,
                events.c.occurred_at < end,
            )
        ).scalar_one()
    )


def chargeback_ratio(db: Connection, merchant_id: int, period: Period, zone: str) -> dict[str, Any]:
    month, before = month_of(period.start, zone)
    until = min(month.end, period.end)
    disputes = _orders_with(db, merchant_id, "dispute.opened", month.start, until)
    settled = _orders_with(db, merchant_id, "payment.captured", before.start, before.end)
    figure: dict[str, Any] = {
        **rate(disputes, settled),
        "threshold": CHARGEBACK_THRESHOLD,
        "month": month.label,
        "settled_month": before.label,
        "computable": bool(settled),
    }
    if not settled:
        figure["reason"] = (
            f"no settled card transactions (payment.captured) in {before.label}: "
            "connect the payment provider to compute the chargeback ratio"
        )
    else:
        figure["above_threshold"] = figure["value"] > CHARGEBACK_THRESHOLD
    return figure
