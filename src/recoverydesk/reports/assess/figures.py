"""The assessment's figures over desk orders, as KPIS.md defines them.

Every rate is ``{value, numerator, denominator}`` (value rounded to 6 places, null over zero
orders); money is a list of ``{amount, currency}`` with decimal strings. A figure the export
cannot support is left out and named in ``not_computed`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from recoverydesk.domain.triage import LOSS_LIKELIHOOD
from recoverydesk.reports.assess.profiles import Profile
from recoverydesk.reports.kpis import rate
from recoverydesk.services.policy import DEFAULT_QUEUES

PRE_FULFILMENT_THRESHOLD = 0.025
LATE_SHIPMENT_THRESHOLD = 0.04
CENT = Decimal("0.01")
PLAYBOOKS = {
    "payment_failed": "payment_recovery",
    "fraud_hold": "fraud_hold",
    "address_invalid": "address_fix",
    "inventory_mismatch": "inventory_mismatch",
    "split_shipment": "inventory_mismatch",
    "late_shipment_risk": "wms_exception",
    "change_request": "change_request",
    "wms_exception": "wms_exception",
    "delivery_exception": "delivery_exception",
    "refund_request": "refund_acceleration",
    "concession_request": "concessions",
    "chargeback": "chargeback",
}
_BY_PRIORITY = "by priority: P1 1 h, P2 4 h, P3 24 h"
SLA_BY_QUEUE = {
    "pre_fulfilment": (_BY_PRIORITY, "before the ship cutoff (business hours)"),
    "cancel_edit": (_BY_PRIORITY, "decision before the warehouse cutoff (operational clock)"),
    "delivery": ("4 h", "same-day customer update"),
    "refunds": ("24 h", "clear status and timeline sent"),
    "chargebacks": ("24 h", "evidence submitted 2 days before the processor's deadline"),
    "drift": ("24 h", "within 1 day"),
}


@dataclass
class Figures:
    values: dict[str, Any] = field(default_factory=dict)
    not_computed: list[dict[str, str]] = field(default_factory=list)

    def skip(self, figure: str, why: str) -> None:
        self.not_computed.append({"figure": figure, "why": why})


def money(frame: pl.DataFrame) -> list[dict[str, str]]:
    """Sum of ``value`` per currency, as decimal strings."""
    if frame.is_empty():
        return []
    sums = frame.group_by("currency").agg(pl.col("value").sum()).sort("currency")
    return [
        {"amount": str(Decimal(amount or 0).quantize(CENT)), "currency": str(currency)}
        for currency, amount in sums.iter_rows()
    ]


def _count(frame: pl.DataFrame, condition: pl.Expr) -> int:
    return int(frame.select(condition.fill_null(value=False).sum()).item())


def _flag(condition: pl.Expr) -> pl.Expr:
    return condition.fill_null(value=False).sum()


def totals_query(orders: pl.LazyFrame, profile: Profile) -> pl.LazyFrame:
    """Every order count the figures need, as one row from one pass over the orders."""
    seller = pl.col("cancelled") & pl.col("cancel_requester").is_in(["ops", "auto"])
    return orders.select(
        orders=pl.len(),
        cancelled=_flag(pl.col("cancelled")),
        partially_cancelled=_flag(pl.col("partially_cancelled")),
        pre_fulfillment_cancel=_flag(pl.col("pre_fulfillment_cancel")),
        seller_cancel=_flag(seller) if "cancel_requester" in profile.columns else pl.lit(0),
        late_shipment=_flag(pl.col("late_shipment")),
        late_shipment_judged=_flag(pl.col("late_shipment").is_not_null()),
        late_delivery=_flag(pl.col("late_delivery")),
        late_delivery_judged=_flag(pl.col("late_delivery").is_not_null()),
        open_at_risk_orders=_flag(pl.col("at_risk")),
        first_placed=pl.col("placed_at").min(),
        last_placed=pl.col("placed_at").max(),
        as_of=pl.col("__as_of").first(),
        key_clashes=_flag(pl.col("__key_clash")),
    )


def segments_query(orders: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    return (
        orders.group_by(keys)
        .agg(
            pl.len().alias("orders"),
            pl.col("cancelled").sum().alias("cancelled"),
            pl.col("pre_fulfillment_cancel").sum().alias("pre"),
        )
        .sort(keys)
    )


SEGMENT_KEYS = {
    "by_segment": ["channel", "fulfillment_type"],
    "by_fulfillment_type": ["fulfillment_type"],
}


def compute(totals: dict[str, Any], segments: dict[str, pl.DataFrame], profile: Profile) -> Figures:
    figures = Figures()
    total = int(totals["orders"])
    figures.values["orders"] = total
    figures.values["cancellation_rate"] = rate(int(totals["cancelled"]), total)
    _partial(figures, totals, profile)
    _pre_fulfilment(figures, totals, profile)
    _seller(figures, totals, profile)
    _late(figures, totals, profile)
    with_pre = "pre_fulfillment_cancel_rate" in figures.values
    figures.values["by_segment"] = _grouped(segments["by_segment"], with_pre=with_pre)
    if "fulfillment_type" in profile.columns:
        figures.values["by_fulfillment_type"] = _grouped(
            segments["by_fulfillment_type"], with_pre=with_pre
        )
    return figures


def _partial(figures: Figures, totals: dict[str, Any], profile: Profile) -> None:
    why = profile.not_computed.get("partial_cancellation_rate")
    if why:
        figures.skip("partial_cancellation_rate", why)
        return
    part = int(totals["partially_cancelled"])
    figures.values["partial_cancellation_rate"] = rate(part, int(totals["orders"]))


def _has_shipment_facts(profile: Profile) -> bool:
    return "status" in profile.columns or "shipped_at" in profile.columns


def _pre_fulfilment(figures: Figures, totals: dict[str, Any], profile: Profile) -> None:
    why = profile.not_computed.get("pre_fulfillment_cancel_rate")
    if why or not _has_shipment_facts(profile):
        figures.skip("pre_fulfillment_cancel_rate", why or "no status or ship time in the data")
        return
    part = int(totals["pre_fulfillment_cancel"])
    figures.values["pre_fulfillment_cancel_rate"] = {
        **rate(part, int(totals["orders"])),
        "threshold": PRE_FULFILMENT_THRESHOLD,
    }


def _seller(figures: Figures, totals: dict[str, Any], profile: Profile) -> None:
    if "cancel_requester" not in profile.columns:
        why = profile.not_computed.get("seller_cancel_rate", "no cancel requester in the data")
        figures.skip("seller_cancel_rate", why)
        return
    figures.values["seller_cancel_rate"] = rate(int(totals["seller_cancel"]), int(totals["orders"]))


def _late(figures: Figures, totals: dict[str, Any], profile: Profile) -> None:
    for name, column, threshold in (
        ("late_shipment_rate", "late_shipment", LATE_SHIPMENT_THRESHOLD),
        ("late_delivery_rate", "late_delivery", None),
    ):
        judged = int(totals[f"{column}_judged"])
        why = profile.not_computed.get(name)
        if why or not judged:
            figures.skip(name, why or f"no order in the data has the dates {name} needs")
            continue
        result: dict[str, Any] = rate(int(totals[column]), judged)
        if threshold is not None:
            result["threshold"] = threshold
        result["rule"] = _late_rule(name, profile)
        figures.values[name] = result


def _late_rule(name: str, profile: Profile) -> str:
    if name == "late_delivery_rate":
        return profile.late_delivery_rule or (
            "delivered orders whose delivery calendar date is after the promised calendar date"
            " / delivered orders with a promised date (deliveries dated before the purchase "
            "are left out)"
        )
    return (
        "shipped orders whose carrier hand-off is after their ship-by time / shipped orders "
        "with a ship-by time (hand-offs dated before the purchase are left out)"
    )


def _grouped(table: pl.DataFrame, *, with_pre: bool) -> list[dict[str, Any]]:
    keys = [name for name in table.columns if name not in ("orders", "cancelled", "pre")]
    rows = []
    for row in table.iter_rows(named=True):
        entry: dict[str, Any] = {key: row[key] for key in keys}
        entry["orders"] = row["orders"]
        entry["cancellation_rate"] = rate(int(row["cancelled"]), int(row["orders"]))
        if with_pre:
            entry["pre_fulfillment_cancel_rate"] = rate(int(row["pre"]), int(row["orders"]))
        rows.append(entry)
    return rows


def exceptions(cases: pl.DataFrame) -> list[dict[str, Any]]:
    """Cases by category: count, open count, value, recoverable value and what to do."""
    result = []
    for category in sorted(cases.get_column("category").unique().to_list()):
        part = cases.filter(pl.col("category") == category)
        likelihood = LOSS_LIKELIHOOD.get(category, Decimal("0.50"))
        value = money(part)
        result.append(
            {
                "category": category,
                "cases": part.height,
                "open": _count(part, pl.col("open")),
                "value": value,
                "loss_likelihood": str(likelihood),
                "recoverable": [
                    {
                        "amount": str((Decimal(v["amount"]) * likelihood).quantize(CENT)),
                        "currency": v["currency"],
                    }
                    for v in value
                ],
                **recommendation(category),
            }
        )
    return result


def recommendation(category: str) -> dict[str, str]:
    queue = next((q.name for q in DEFAULT_QUEUES if category in q.categories), "pre_fulfilment")
    first_touch, resolution = SLA_BY_QUEUE[queue]
    return {
        "queue": queue,
        "first_touch": first_touch,
        "resolution": resolution,
        "playbook": PLAYBOOKS.get(category, "none"),
    }
