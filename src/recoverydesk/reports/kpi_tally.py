"""The counts behind the KPI figures (KPIS.md), kept per channel x fulfilment type.

Every query of ``reports.kpi_orders``, ``kpi_cases`` and ``kpi_stopship`` groups by the order's
channel and fulfilment type and adds its counts to that segment's ``Tally``; the overall figures
are the segments' tallies added together, so a segment's figures always add up to the whole.
``figures_of`` turns one tally into the figures: rates as ``{value, numerator, denominator}``
(fractions rounded to 6 decimals), money as decimal strings with their currency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Segment = tuple[str, str]
UNKNOWN = "unknown"
PRE_FULFILLMENT_THRESHOLD = 0.025  # the marketplaces' pre-fulfilment cancel rate limit
LATE_SHIPMENT_THRESHOLD = 0.04
AGE_BUCKETS = ((4 * 3600, "<4h"), (24 * 3600, "4-24h"), (72 * 3600, "24-72h"))
AGE_LABELS = ("<4h", "4-24h", "24-72h", ">72h")
# The time-to-cancel histogram: (upper bound in seconds, label); the last bucket is open.
CANCEL_BUCKETS = ((3600, "<=1h"), (4 * 3600, "1-4h"), (24 * 3600, "4-24h"))


def segment_of(channel: str | None, fulfillment_type: str | None) -> Segment:
    return (channel or UNKNOWN, fulfillment_type or UNKNOWN)


def rate(part: int, whole: int) -> dict[str, Any]:
    value = round(part / whole, 6) if whole else None
    return {"value": value, "numerator": part, "denominator": whole}


@dataclass(slots=True)
class Tally:
    """Additive counts: plain counters, money by figure and currency, the time-to-cancel
    durations, and the open backlog by age bucket and by category."""

    counts: Counter[str] = field(default_factory=Counter)
    money: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    cancel_seconds: list[float] = field(default_factory=list)
    backlog_age: Counter[str] = field(default_factory=Counter)
    backlog_category: Counter[str] = field(default_factory=Counter)

    def add_money(self, figure: str, amount: Decimal | None, currency: str | None) -> None:
        if amount is None:
            return
        totals = self.money.setdefault(figure, {})
        key = currency or "XXX"
        totals[key] = totals.get(key, Decimal(0)) + amount

    def merge(self, other: Tally) -> None:
        self.counts.update(other.counts)
        for figure, totals in other.money.items():
            for currency, amount in totals.items():
                self.add_money(figure, amount, currency)
        self.cancel_seconds.extend(other.cancel_seconds)
        self.backlog_age.update(other.backlog_age)
        self.backlog_category.update(other.backlog_category)


class Tallies(dict[Segment, Tally]):
    """The tallies of one merchant and period, by segment."""

    def at(self, channel: str | None, fulfillment_type: str | None) -> Tally:
        key = segment_of(channel, fulfillment_type)
        if key not in self:
            self[key] = Tally()
        return self[key]

    def overall(self) -> Tally:
        total = Tally()
        for tally in self.values():
            total.merge(tally)
        return total


def figures_of(tally: Tally) -> dict[str, Any]:
    c = tally.counts
    orders = c["orders"]
    return {
        "orders": orders,
        "cancellation_rate": rate(c["cancelled"], orders),
        "partial_cancellation_rate": rate(c["partially_cancelled"], orders),
        "pre_fulfillment_cancel_rate": _against(
            rate(c["cancelled_before_shipment"], orders), PRE_FULFILLMENT_THRESHOLD
        ),
        "seller_cancel_rate": rate(c["seller_cancelled"], orders),
        "late_shipment_rate": _against(
            rate(c["shipped_late"], c["shipped_with_ship_by"]), LATE_SHIPMENT_THRESHOLD
        ),
        "late_delivery_rate": rate(c["delivered_late"], c["delivered_with_promise"]),
        "time_to_cancel": durations(sorted(tally.cancel_seconds)),
        "stop_ship_success_rate": rate(c["stopped_before_shipment"], c["requests_before_shipment"]),
        "late_cancel_requests": c["late_cancel_requests"],
        "stop_ship_exceptions_open": c["stop_ship_exceptions_open"],
        "cases_opened": c["cases_opened"],
        "save_rate": rate(c["saved"], c["closed_at_risk"]),
        "revenue_saved": money_list(tally.money.get("revenue_saved")),
        "revenue_at_risk": money_list(tally.money.get("revenue_at_risk")),
        "refund_leakage": _leakage(tally),
        "exception_backlog": _backlog(tally),
        "first_touch_sla_attainment": rate(c["first_touch_met"], c["first_touch_ended"]),
        "resolution_sla_attainment": rate(c["resolution_met"], c["resolution_ended"]),
    }


def _against(figure: dict[str, Any], threshold: float) -> dict[str, Any]:
    value = figure["value"]
    return {
        **figure,
        "threshold": threshold,
        "above_threshold": value is not None and value > threshold,
    }


def money_list(totals: dict[str, Decimal] | None) -> list[dict[str, str]]:
    return [
        {"amount": str(amount), "currency": cur} for cur, amount in sorted((totals or {}).items())
    ]


def _leakage(tally: Tally) -> dict[str, Any]:
    leaked = tally.money.get("leaked", {})
    refunded = tally.money.get("refunded", {})
    amount, total = sum(leaked.values(), Decimal(0)), sum(refunded.values(), Decimal(0))
    return {
        "count": tally.counts["leaked_refunds"],
        "amount": money_list(leaked),
        "refunded": money_list(refunded),
        "share_of_refunded": round(float(amount / total), 6) if total else None,
    }


def _backlog(tally: Tally) -> dict[str, Any]:
    by_age = {label: tally.backlog_age[label] for label in AGE_LABELS}
    return {
        "open": sum(by_age.values()),
        "by_age": by_age,
        "by_category": dict(sorted((k, v) for k, v in tally.backlog_category.items() if v)),
        "older_than_24h": by_age["24-72h"] + by_age[">72h"],
    }


def age_label(seconds: float) -> str:
    return next((name for limit, name in AGE_BUCKETS if seconds < limit), ">72h")


def durations(seconds: list[float]) -> dict[str, Any]:
    """Median, p90 (nearest rank), the shares within 1 h, 4 h and 24 h, and a histogram, of
    sorted durations in seconds."""

    def share(limit: float) -> dict[str, Any]:
        return rate(sum(1 for s in seconds if s <= limit), len(seconds))

    histogram = Counter(
        next((name for limit, name in CANCEL_BUCKETS if s <= limit), ">24h") for s in seconds
    )
    labels = [name for _, name in CANCEL_BUCKETS] + [">24h"]
    return {
        "count": len(seconds),
        "median_seconds": percentile(seconds, 0.5),
        "p90_seconds": percentile(seconds, 0.9),
        "within_1h": share(3600),
        "within_4h": share(4 * 3600),
        "within_24h": share(24 * 3600),
        "histogram": [{"bucket": name, "count": histogram[name]} for name in labels],
    }


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]
