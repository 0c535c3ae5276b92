"""KPI figures of ../shared/spec/KPIS.md computed with set-based SQL (a first subset).

Rates are fractions rounded to 6 decimals and always come with the counts behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from recoverydesk.domain.cases import PRE_FULFILMENT, SAVED_OUTCOMES, CaseStatus
from recoverydesk.persistence.merchant_store import SqlMerchantStore
from recoverydesk.persistence.tables import cancellations, cases, is_open, orders
from recoverydesk.services.merchants import settings_from_stored
from recoverydesk.services.policy import RootCauseSpec

AT_RISK = sorted(c.value for c in PRE_FULFILMENT)
SAVED = sorted(o.value for o in SAVED_OUTCOMES)
AGE_BUCKETS = ((4 * 3600, "<4h"), (24 * 3600, "4-24h"), (72 * 3600, "24-72h"))


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def rate(part: int, whole: int) -> dict[str, Any]:
    value = round(part / whole, 6) if whole else None
    return {"value": value, "numerator": part, "denominator": whole}


def compute(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    figures: dict[str, Any] = {"period": period.as_dict()}
    figures.update(_order_rates(db, merchant_id, period))
    figures.update(_case_figures(db, merchant_id, period))
    figures.update(_stopship_figures(db, merchant_id, period))
    figures["refund_leakage"] = _refund_leakage(db, merchant_id, period)
    figures["exception_backlog"] = _backlog(db, merchant_id, period.end)
    figures["revenue_at_risk"] = _revenue_at_risk(db, merchant_id, period.end)
    figures["root_causes"] = _root_causes(db, merchant_id, period)
    return figures


def _order_rates(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    placed = and_(
        orders.c.merchant_id == merchant_id,
        orders.c.placed_at >= period.start,
        orders.c.placed_at < period.end,
    )
    shipped = orders.c.shipped_at.is_not(None)
    row = db.execute(
        select(
            func.count(),
            func.sum(case((orders.c.cancelled, 1), else_=0)),
            func.sum(case((orders.c.partially_cancelled, 1), else_=0)),
            func.sum(case((and_(orders.c.cancelled, ~shipped), 1), else_=0)),
            func.sum(case((shipped, 1), else_=0)),
            func.sum(case((and_(shipped, orders.c.shipped_at > orders.c.ship_by), 1), else_=0)),
        ).where(placed)
    ).one()
    total, cancelled, partial, pre_ship, n_shipped, late = (int(v or 0) for v in row)
    return {
        "orders": total,
        "cancellation_rate": rate(cancelled, total),
        "partial_cancellation_rate": rate(partial, total),
        "pre_fulfillment_cancel_rate": {**rate(pre_ship, total), "threshold": 0.025},
        "late_shipment_rate": {**rate(late, n_shipped), "threshold": 0.04},
    }


def _case_figures(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    closed_at_risk = and_(
        cases.c.merchant_id == merchant_id,
        cases.c.category.in_(AT_RISK),
        cases.c.closed_at >= period.start,
        cases.c.closed_at < period.end,
        cases.c.outcome.is_not(None),
    )
    saved = cases.c.outcome.in_(SAVED)
    row = db.execute(
        select(func.count(), func.sum(case((saved, 1), else_=0))).where(closed_at_risk)
    ).one()
    closed, n_saved = int(row[0] or 0), int(row[1] or 0)
    values = db.execute(
        select(orders.c.ref, orders.c.value, orders.c.currency)
        .join(
            cases,
            and_(cases.c.merchant_id == orders.c.merchant_id, cases.c.order_ref == orders.c.ref),
        )
        .where(closed_at_risk, saved)
        .distinct()
    ).all()
    opened = db.execute(
        select(func.count()).where(
            cases.c.merchant_id == merchant_id,
            cases.c.opened_at >= period.start,
            cases.c.opened_at < period.end,
        )
    ).scalar_one()
    return {
        "cases_opened": int(opened),
        "save_rate": rate(n_saved, closed),
        "revenue_saved": _money_by_currency([(v, c) for _, v, c in values]),
    }


def _backlog(db: Connection, merchant_id: int, at: datetime) -> dict[str, Any]:
    rows = db.execute(
        select(cases.c.category, cases.c.opened_at).where(
            cases.c.merchant_id == merchant_id,
            cases.c.opened_at <= at,
            is_open(cases.c.status),
        )
    ).all()
    by_age: dict[str, int] = {label: 0 for _, label in AGE_BUCKETS} | {">72h": 0}
    by_category: dict[str, int] = {}
    for category, opened_at in rows:
        age = (at - opened_at).total_seconds()
        label = next((name for limit, name in AGE_BUCKETS if age < limit), ">72h")
        by_age[label] += 1
        by_category[category] = by_category.get(category, 0) + 1
    older = by_age["24-72h"] + by_age[">72h"]
    return {
        "open": len(rows),
        "by_age": by_age,
        "by_category": dict(sorted(by_category.items())),
        "older_than_24h": older,
    }


def _revenue_at_risk(db: Connection, merchant_id: int, at: datetime) -> list[dict[str, str]]:
    values = db.execute(
        select(orders.c.ref, orders.c.value, orders.c.currency)
        .join(
            cases,
            and_(cases.c.merchant_id == orders.c.merchant_id, cases.c.order_ref == orders.c.ref),
        )
        .where(
            cases.c.merchant_id == merchant_id,
            cases.c.category.in_(AT_RISK),
            is_open(cases.c.status),
            cases.c.opened_at <= at,
        )
        .distinct()
    ).all()
    return _money_by_currency([(value, currency) for _, value, currency in values])


def _money_by_currency(rows: Any) -> list[dict[str, str]]:
    totals: dict[str, Decimal] = {}
    for value, currency in rows:
        if value is not None:
            key = currency or "XXX"
            totals[key] = totals.get(key, Decimal(0)) + value
    return [{"amount": str(amount), "currency": cur} for cur, amount in sorted(totals.items())]


STOPPED = ("stopped", "cancelled_fraud")
LEAKAGE_RULES = ("refund_while_shipped", "double_refund")


def _stopship_figures(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    """``time_to_cancel`` over cancel requests whose final outcome fell in the period, and
    ``stop_ship_success_rate`` over those that arrived before the order shipped; the others
    are ``late_cancel_requests``."""
    rows = db.execute(
        select(
            cancellations.c.requested_at,
            cancellations.c.final_outcome_at,
            cancellations.c.outcome,
            orders.c.shipped_at,
        )
        .join(
            orders,
            and_(
                orders.c.merchant_id == cancellations.c.merchant_id,
                orders.c.ref == cancellations.c.order_ref,
            ),
        )
        .where(
            cancellations.c.merchant_id == merchant_id,
            cancellations.c.final_outcome_at >= period.start,
            cancellations.c.final_outcome_at < period.end,
        )
    ).all()
    seconds = sorted((done - asked).total_seconds() for asked, done, _, _ in rows)
    early = [row for row in rows if row.shipped_at is None or row.shipped_at > row.requested_at]
    stopped = sum(1 for row in early if row.outcome in STOPPED)
    open_exceptions = db.execute(
        select(func.count()).where(
            cancellations.c.merchant_id == merchant_id,
            cancellations.c.outcome == "exception",
            cancellations.c.requested_at < period.end,
        )
    ).scalar_one()
    return {
        "time_to_cancel": _durations(seconds),
        "stop_ship_success_rate": rate(stopped, len(early)),
        "late_cancel_requests": len(rows) - len(early),
        "stop_ship_exceptions_open": int(open_exceptions),
    }


def _durations(seconds: list[float]) -> dict[str, Any]:
    def share(limit: float) -> dict[str, Any]:
        return rate(sum(1 for s in seconds if s <= limit), len(seconds))

    return {
        "count": len(seconds),
        "median_seconds": _percentile(seconds, 0.5),
        "p90_seconds": _percentile(seconds, 0.9),
        "within_1h": share(3600),
        "within_4h": share(4 * 3600),
        "within_24h": share(24 * 3600),
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def _refund_leakage(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    """Refunds the drift rules call leakage (refund while shipped, double refund): the cases
    opened in the period, the refunded amount of their orders, and its share of all refunds."""
    leaked = db.execute(
        select(orders.c.ref, orders.c.refunded, orders.c.currency)
        .join(
            cases,
            and_(cases.c.merchant_id == orders.c.merchant_id, cases.c.order_ref == orders.c.ref),
        )
        .where(
            cases.c.merchant_id == merchant_id,
            cases.c.category == "drift",
            cases.c.rule.in_(LEAKAGE_RULES),
            cases.c.opened_at >= period.start,
            cases.c.opened_at < period.end,
        )
        .distinct()
    ).all()
    refunded = db.execute(
        select(orders.c.refunded, orders.c.currency).where(
            orders.c.merchant_id == merchant_id,
            orders.c.placed_at >= period.start,
            orders.c.placed_at < period.end,
        )
    ).all()
    amount = sum((value or Decimal(0) for _, value, _ in leaked), Decimal(0))
    total = sum((value or Decimal(0) for value, _ in refunded), Decimal(0))
    return {
        "count": len(leaked),
        "amount": _money_by_currency([(value, cur) for _, value, cur in leaked]),
        "share_of_refunded": round(float(amount / total), 6) if total else None,
    }


def _root_causes(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    """``root_causes``: the cases closed in the period by root cause, in Pareto order (most
    first, then by code), each with its share, the cumulative share and the owner of the
    upstream fix from the merchant's current list; the same per channel and fulfilment type.
    Also how many closed cases carry no root cause, and how many resolved cases wait for a
    person to name theirs (``root_cause_needed``)."""
    joined = cases.outerjoin(
        orders, and_(orders.c.merchant_id == cases.c.merchant_id, orders.c.ref == cases.c.order_ref)
    )
    rows = db.execute(
        select(cases.c.root_cause, orders.c.channel, orders.c.fulfillment_type, func.count())
        .select_from(joined)
        .where(
            cases.c.merchant_id == merchant_id,
            cases.c.status == CaseStatus.CLOSED.value,
            cases.c.closed_at >= period.start,
            cases.c.closed_at < period.end,
        )
        .group_by(cases.c.root_cause, orders.c.channel, orders.c.fulfillment_type)
    ).all()
    needed = db.execute(
        select(func.count()).where(
            cases.c.merchant_id == merchant_id,
            cases.c.status == CaseStatus.RESOLVED.value,
            cases.c.root_cause.is_(None),
            cases.c.closed_at < period.end,
        )
    ).scalar_one()
    listed = _root_cause_list(db, merchant_id)
    overall: dict[str, int] = {}
    by_dimension: dict[tuple[str, str], dict[str, int]] = {}
    for code, channel, fulfillment_type, count in rows:
        if code is None:
            continue
        overall[code] = overall.get(code, 0) + int(count)
        group = by_dimension.setdefault((channel or "unknown", fulfillment_type or "unknown"), {})
        group[code] = group.get(code, 0) + int(count)
    return {
        **_pareto(overall, listed),
        "without_root_cause": sum(int(count) for code, _, _, count in rows if code is None),
        "root_cause_needed": int(needed),
        "by_channel_fulfillment": [
            {"channel": channel, "fulfillment_type": kind, **_pareto(counts, listed)}
            for (channel, kind), counts in sorted(by_dimension.items())
        ],
    }


def _pareto(counts: dict[str, int], listed: dict[str, RootCauseSpec]) -> dict[str, Any]:
    total = sum(counts.values())
    rows, running = [], 0
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        running += count
        cause = listed.get(code)
        rows.append(
            {
                "root_cause": code,
                "label": cause.label if cause else None,
                "owner": cause.owner if cause else None,
                "count": count,
                "share": round(count / total, 6),
                "cumulative_share": round(running / total, 6),
            }
        )
    return {"closed": total, "rows": rows}


def _root_cause_list(db: Connection, merchant_id: int) -> dict[str, RootCauseSpec]:
    """The merchant's root-cause list at its current configuration (the defaults without one)."""
    store = SqlMerchantStore(db)
    merchant = store.by_id(merchant_id)
    version = merchant.config_version if merchant is not None else None
    stored = store.config(merchant_id, version) if version else None
    return {cause.code: cause for cause in settings_from_stored(stored).root_causes}
