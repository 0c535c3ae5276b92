"""The case figures of KPIS.md, grouped by the channel x fulfilment type of each case's order
(a case whose order the desk never saw counts under ``unknown``). Each case row carries its
order's segment and value (``cases.order_channel`` ..., kept equal to the order's by the stores),
so these queries read cases alone: no lookup of each case's order.

- ``save_rate`` / ``revenue_saved``: at-risk cases (the pre-fulfilment categories, change
  requests included) closed in the period, and the value of the orders they saved.
- ``exception_backlog`` / ``revenue_at_risk``: cases open at the end of the period (opened
  before it, and still open or closed only after it), by age bucket and category.
- SLA attainment: the first-touch and resolution clocks that stopped in the period, met or not.
- ``refund_leakage``: the leakage drift cases (a refund on a shipped order with no return,
  a double refund) opened in the period, with the refunded amount of their orders, against
  everything refunded on the orders placed in the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    Subquery,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql.elements import ColumnElement

from recoverydesk.domain.cases import PRE_FULFILMENT, SAVED_OUTCOMES
from recoverydesk.persistence.tables import cases, is_open, orders
from recoverydesk.persistence.types import UTCDateTime
from recoverydesk.reports.kpi_period import Period
from recoverydesk.reports.kpi_tally import AGE_BUCKETS, Tallies

AT_RISK = sorted(c.value for c in PRE_FULFILMENT)
SAVED = sorted(o.value for o in SAVED_OUTCOMES)
LEAKAGE_RULES = ("refund_while_shipped", "double_refund")
REFUNDED = ("refunded", "partially_refunded")

_with_order = cases.outerjoin(
    orders, and_(orders.c.merchant_id == cases.c.merchant_id, orders.c.ref == cases.c.order_ref)
)
CHANNEL, KIND = cases.c.order_channel, cases.c.order_fulfillment_type


def _in(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def case_tallies(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    _opened(db, merchant_id, period, tallies)
    _saves(db, merchant_id, period, tallies)
    _backlog(db, merchant_id, period.end, tallies)
    _sla(db, merchant_id, period, tallies)
    _leakage(db, merchant_id, period, tallies)


def _opened(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    rows = db.execute(
        select(CHANNEL, KIND, func.count())
        .where(cases.c.merchant_id == merchant_id, _in(cases.c.opened_at, period))
        .group_by(CHANNEL, KIND)
    ).all()
    for channel, kind, count in rows:
        tallies.at(channel, kind).counts["cases_opened"] += int(count)


def _saves(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    closed_at_risk = and_(
        cases.c.merchant_id == merchant_id,
        cases.c.category.in_(AT_RISK),
        _in(cases.c.closed_at, period),
        cases.c.outcome.is_not(None),
    )
    saved = cases.c.outcome.in_(SAVED)
    rows = db.execute(
        select(CHANNEL, KIND, func.count(), func.sum(case((saved, 1), else_=0)))
        .where(closed_at_risk)
        .group_by(CHANNEL, KIND)
    ).all()
    for channel, kind, closed, n_saved in rows:
        counts = tallies.at(channel, kind).counts
        counts["closed_at_risk"] += int(closed)
        counts["saved"] += int(n_saved or 0)
    _order_values(db, tallies, "revenue_saved", and_(closed_at_risk, saved))


def _order_values(db: Connection, tallies: Tallies, figure: str, where: Any) -> None:
    """Adds the value of each order (once) that has a case matching ``where``."""
    c = cases.c
    matching = select(c.order_ref, CHANNEL, KIND, c.order_value, c.order_currency).where(where)
    _add_values(db, tallies, figure, matching.subquery("matching"))


def _add_values(db: Connection, tallies: Tallies, figure: str, found: Subquery) -> None:
    """Adds the value of each order of ``found`` once: counted by segment and value in SQL (as
    text: the exact amount, scale included) and multiplied here, in Decimal."""
    keys = (
        found.c.order_channel,
        found.c.order_fulfillment_type,
        sql_cast(found.c.order_value, String),
        found.c.order_currency,
    )
    counted = select(*keys, func.count(func.distinct(found.c.order_ref))).group_by(*keys)
    for channel, kind, value, currency, orders_of_value in db.execute(counted).all():
        amount = None if value is None else Decimal(value) * int(orders_of_value)
        tallies.at(channel, kind).add_money(figure, amount, currency)


def _open_at(merchant_id: int, at: datetime) -> Subquery:
    """The cases open at ``at``: opened by then, and open now or closed only after; two
    branches, so each reads its own index (open cases, then cases by close time)."""
    c = cases.c
    columns = (c.order_ref, c.category, c.opened_at, CHANNEL, KIND, c.order_value)
    still_open = select(*columns, c.order_currency).where(
        c.merchant_id == merchant_id, is_open(c.status), c.opened_at <= at
    )
    closed_later = select(*columns, c.order_currency).where(
        c.merchant_id == merchant_id, c.closed_at > at, c.opened_at <= at
    )
    return union_all(still_open, closed_later).subquery("open_cases")


def _backlog(db: Connection, merchant_id: int, at: datetime, tallies: Tallies) -> None:
    found = _open_at(merchant_id, at)
    bucket = case(
        *(
            (found.c.opened_at > literal(at - timedelta(seconds=limit), UTCDateTime), label)
            for limit, label in AGE_BUCKETS
        ),
        else_=">72h",
    ).label("bucket")
    segment = (found.c.order_channel, found.c.order_fulfillment_type)
    rows = select(*segment, found.c.category, bucket).subquery("backlog")
    keys = (rows.c.order_channel, rows.c.order_fulfillment_type, rows.c.category, rows.c.bucket)
    grouped = select(*keys, func.count()).group_by(*keys)
    for channel, kind, category, label, count in db.execute(grouped).all():
        tally = tallies.at(channel, kind)
        tally.backlog_age[label] += int(count)
        tally.backlog_category[category] += int(count)
    at_risk = select(found).where(found.c.category.in_(AT_RISK)).subquery("at_risk")
    _add_values(db, tallies, "revenue_at_risk", at_risk)


CLOCKS = ("first_touch", "resolution")


def _sla(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    """A clock ends when it stops: at the first touch (first touch) or when the case is
    resolved; so the candidates are the cases touched or closed in the period, and the
    clock's own stop time decides."""
    parts = [cases.c.clocks[(name, "stopped_at")].as_string() for name in CLOCKS]
    breached = [cases.c.clocks[(name, "breached")].as_boolean() for name in CLOCKS]
    rows = db.execute(
        select(CHANNEL, KIND, *parts, *breached).where(
            cases.c.merchant_id == merchant_id,
            or_(_in(cases.c.first_touched_at, period), _in(cases.c.closed_at, period)),
        )
    ).all()
    for channel, kind, *rest in rows:
        counts = tallies.at(channel, kind).counts
        for name, stopped, missed in zip(CLOCKS, rest[:2], rest[2:], strict=True):
            if stopped and period.start <= datetime.fromisoformat(stopped) < period.end:
                counts[f"{name}_ended"] += 1
                counts[f"{name}_met"] += 0 if missed else 1


def _leakage(db: Connection, merchant_id: int, period: Period, tallies: Tallies) -> None:
    leaked = db.execute(
        select(
            orders.c.ref,
            orders.c.channel,
            orders.c.fulfillment_type,
            orders.c.refunded,
            orders.c.currency,
        )
        .select_from(_with_order)
        .where(
            cases.c.merchant_id == merchant_id,
            cases.c.category == "drift",
            cases.c.rule.in_(LEAKAGE_RULES),
            _in(cases.c.opened_at, period),
        )
        .distinct()
    ).all()
    for _, channel, kind, refunded, currency in leaked:
        tally = tallies.at(channel, kind)
        tally.counts["leaked_refunds"] += 1
        tally.add_money("leaked", refunded, currency)
    refunds = db.execute(
        select(
            orders.c.channel, orders.c.fulfillment_type, orders.c.refunded, orders.c.currency
        ).where(
            orders.c.merchant_id == merchant_id,
            _in(orders.c.placed_at, period),
            orders.c.payment_status.in_(REFUNDED),
        )
    ).all()
    for channel, kind, refunded, currency in refunds:
        tallies.at(channel, kind).add_money("refunded", refunded, currency)
