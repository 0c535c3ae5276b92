"""Order lines grouped into orders (KPIS.md counts orders once, by id, never per line).

An order is *cancelled* when every line is cancelled, *partially cancelled* when some lines
are; it is *shipped* when any line has shipment evidence. Its category is the first exception
category among its lines that are not cancelled; an order with none gets a derived one: a
delivery after the promised calendar date is a ``delivery_exception``, an open order past its
ship-by time is ``late_shipment_risk``. An order is *open* when it is neither cancelled,
shipped nor delivered: an open order with a pre-fulfilment category is at risk.

Everything stays lazy: the per-line facts each aggregate needs are plain columns first, so the
one ``group_by`` runs only simple aggregations (sum, bitwise or/and, min, max, first), keyed by
a 64-bit hash of the order id rather than the id text. A second, independent hash of the id
rides along in the facts: ``__key_clash`` is true only when two ids share a key, and the job
then groups again by the id text (``exact=True``).
"""

from __future__ import annotations

import polars as pl

from recoverydesk.domain.cases import PRE_FULFILMENT
from recoverydesk.reports.assess.lines import CATEGORY_TYPE, one_of
from recoverydesk.reports.assess.profiles import DeskStatus

PRE_FULFILMENT_CODES = sorted(c.value for c in PRE_FULFILMENT)
CANCELLED = DeskStatus.CANCELLED.value
KEY_SEED, CHECK_SEED = 0x5EED, 0xC0FFEE


OPTIONAL = {
    "shipped_at": pl.col("shipped_at").min(),
    "delivered_at": pl.col("delivered_at").max(),
    "promised_by": pl.col("promised_by").max(),
    "ship_by": pl.col("ship_by").min(),
    "cancel_requester": pl.col("cancel_requester").max(),
    "cancel_reason": pl.col("cancel_reason").max(),
    "customer_id": pl.col("customer_id").max(),
}
TIMES = ("shipped_at", "delivered_at", "promised_by", "ship_by")
LATEST = ("placed_at", "shipped_at", "delivered_at")  # the export's 'now' is their maximum


# A line's yes/no facts are bits of one integer, so that two aggregations (bitwise or: "any
# line", bitwise and: "every line") give them all; the bits above the low 8 carry a second hash
# of the order id, equal on every line of a real order (a key clash shows as or != and).
CANCELLED_BIT, PARTIAL_BIT, SHIPPED_BIT, DELIVERED_BIT, VALUE_BIT = (1 << n for n in range(5))
FACT_SPAN = 1 << 8  # the low 8 bits hold the facts


def _line_facts(lines: pl.LazyFrame, *, exact: bool) -> pl.LazyFrame:
    """Per line, the plain columns the order aggregates read (no expression inside the
    group_by but a column reference)."""
    cancelled_line = pl.col("line_status") == CANCELLED

    def bit(condition: pl.Expr, value: int) -> pl.Expr:
        return pl.when(condition).then(pl.lit(value, dtype=pl.UInt64)).otherwise(0)

    facts = (
        (pl.col("order_id").hash(CHECK_SEED) // FACT_SPAN * FACT_SPAN)
        | bit(cancelled_line, CANCELLED_BIT)
        | bit(pl.col("line_status") == DeskStatus.PARTIALLY_CANCELLED.value, PARTIAL_BIT)
        | bit(pl.col("shipped"), SHIPPED_BIT)
        | bit(pl.col("line_status") == DeskStatus.DELIVERED.value, DELIVERED_BIT)
        | bit(pl.col("value").is_not_null(), VALUE_BIT)
    )
    return lines.filter(pl.col("order_id").is_not_null()).with_columns(
        __key=pl.col("order_id") if exact else pl.col("order_id").hash(KEY_SEED),
        __facts=facts,
        __kept_value=pl.when(~cancelled_line).then(pl.col("value")),
        __kept_category=pl.when(~cancelled_line).then(pl.col("category")),
    )


def desk_orders(
    lines: pl.LazyFrame, *, mapped: set[str], late_flag: bool, exact: bool = False
) -> pl.LazyFrame:
    """One row per order id, with the facts the figures need, its category, whether it is
    open or at risk, and its age. Only the fields the export has are aggregated (the others
    are null for every order)."""
    grouped = (
        _line_facts(lines, exact=exact)
        .group_by("__key")
        .agg(
            pl.col("order_id").first(),
            pl.col("placed_at").min(),
            pl.col("placed_at").max().alias("__latest_placed_at"),
            pl.col("__facts").bitwise_or().alias("__any"),
            pl.col("__facts").bitwise_and().alias("__all"),
            pl.col("value").sum().alias("all_value"),
            pl.col("__kept_value").sum().alias("kept_value"),
            pl.col("currency").first(),
            pl.col("channel").first(),
            pl.col("fulfillment_type").first(),
            pl.col("__kept_category").max().alias("status_category"),
            *(expr.alias(name) for name, expr in OPTIONAL.items() if name in mapped),
            *(
                [pl.col("shipped_at").max().alias("__latest_shipped_at")]
                if "shipped_at" in mapped
                else []
            ),
            *([pl.col("__late_delivery").max().alias("late_flag")] if late_flag else []),
        )
    )
    return _with_categories(_order_facts(grouped, mapped=mapped, late_flag=late_flag))


def _any(bit: int) -> pl.Expr:
    return (pl.col("__any") & bit) != 0


def _every(bit: int) -> pl.Expr:
    return (pl.col("__all") & bit) != 0


def _order_facts(grouped: pl.LazyFrame, *, mapped: set[str], late_flag: bool) -> pl.LazyFrame:
    absent = [
        pl.lit(None, dtype=pl.Datetime("us") if name in TIMES else pl.String).alias(name)
        for name in OPTIONAL
        if name not in mapped
    ]
    latest = [
        pl.col(f"__latest_{name}").max() for name in ("placed_at", "shipped_at") if name in mapped
    ]
    latest += [pl.col("delivered_at").max()] if "delivered_at" in mapped else []
    return (
        grouped.with_columns(*absent)
        .with_columns(
            cancelled=_every(CANCELLED_BIT),
            partially_cancelled=_any(CANCELLED_BIT) & ~_every(CANCELLED_BIT) | _any(PARTIAL_BIT),
            shipped=_any(SHIPPED_BIT),
            delivered_status=_any(DELIVERED_BIT),
            value_known=_any(VALUE_BIT),
            __key_clash=pl.col("__any") // FACT_SPAN != pl.col("__all") // FACT_SPAN,
            __as_of=pl.max_horizontal(latest).cast(pl.Datetime("us")),
        )
        .with_columns(
            value=pl.when(pl.col("cancelled")).then("all_value").otherwise("kept_value"),
            pre_fulfillment_cancel=pl.col("cancelled") & ~pl.col("shipped"),
            delivered=pl.col("delivered_status") | pl.col("delivered_at").is_not_null(),
            late_delivery=_late_delivery(late_flag),
            late_shipment=_late_shipment(),
        )
    )


def _late_delivery(late_flag: bool) -> pl.Expr:
    """Null when the order cannot be judged; else whether the delivery date passed the promise."""
    if late_flag:
        return pl.col("late_flag")
    judged = (
        pl.col("delivered_at").is_not_null()
        & pl.col("promised_by").is_not_null()
        & (pl.col("delivered_at") >= pl.col("placed_at"))
    )
    late = pl.col("delivered_at").dt.date() > pl.col("promised_by").dt.date()
    return pl.when(judged).then(late).otherwise(None)


def _late_shipment() -> pl.Expr:
    judged = (
        pl.col("shipped_at").is_not_null()
        & pl.col("ship_by").is_not_null()
        & (pl.col("shipped_at") >= pl.col("placed_at"))
    )
    return pl.when(judged).then(pl.col("shipped_at") > pl.col("ship_by")).otherwise(None)


def _with_categories(orders: pl.LazyFrame) -> pl.LazyFrame:
    """Each order's exception category (or null), whether it is open, and its age in hours."""
    as_of = pl.col("__as_of")
    open_order = ~pl.col("cancelled") & ~pl.col("shipped") & ~pl.col("delivered")
    past_ship_by = open_order & pl.col("ship_by").is_not_null() & (pl.col("ship_by") < as_of)
    category = (
        pl.when(pl.col("cancelled"))
        .then(None)
        .when(pl.col("status_category").is_not_null())
        .then(pl.col("status_category"))
        .when(pl.col("late_delivery").fill_null(value=False) & ~open_order)
        .then(pl.lit("delivery_exception", dtype=CATEGORY_TYPE))
        .when(past_ship_by)
        .then(pl.lit("late_shipment_risk", dtype=CATEGORY_TYPE))
        .otherwise(None)
    )
    return orders.with_columns(
        open=open_order,
        category=category,
        age_hours=((as_of - pl.col("placed_at")).dt.total_seconds() / 3600).round(1),
    ).with_columns(
        at_risk=pl.col("open") & one_of(pl.col("category"), PRE_FULFILMENT_CODES),
        reason=_reason(),
    )


def _reason() -> pl.Expr:
    return (
        pl.when(pl.col("status_category").is_not_null() & pl.col("open"))
        .then(pl.lit("open order whose status is an exception"))
        .when(pl.col("status_category").is_not_null())
        .then(pl.lit("exception status after shipment"))
        .when(pl.col("category") == "delivery_exception")
        .then(pl.lit("delivered after the promised date"))
        .when(pl.col("category") == "late_shipment_risk")
        .then(pl.lit("not shipped by its ship-by time"))
        .otherwise(None)
    )
