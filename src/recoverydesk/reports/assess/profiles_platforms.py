"""The built-in profiles of store and ERP exports: the Shopify orders export and a NetSuite
sales-order saved search (``profiles_builtin.BUILTIN`` lists them with the others)."""

from __future__ import annotations

import polars as pl

from recoverydesk.reports.assess.profiles import (
    NO_PROMISE,
    NO_REQUESTER,
    NO_SHIP_BY,
    Profile,
    status_table,
)
from recoverydesk.reports.assess.profiles import DeskStatus as S
from recoverydesk.reports.assess.profiles import lowered as _lower
from recoverydesk.reports.assess.profiles import optional_column as _optional

# Shopify orders export: one row per line item; order-level fields only on an order's first row.

_SHOPIFY_ORDER_LEVEL = (
    "Financial Status",
    "Fulfillment Status",
    "Created at",
    "Cancelled at",
    "Fulfilled at",
    "Currency",
    "Risk Level",
    "Email",
)


def _shopify(frame: pl.LazyFrame) -> pl.LazyFrame:
    filled = frame.with_columns(
        _optional(frame, name).drop_nulls().first().over("Name").alias(f"__{name}")
        for name in _SHOPIFY_ORDER_LEVEL
    )
    financial = _lower(pl.col("__Financial Status"))
    line_done = _lower(_optional(frame, "Lineitem fulfillment status")) == "fulfilled"
    order_done = _lower(pl.col("__Fulfillment Status")).is_in(["fulfilled", "partial"])
    state = (
        pl.when(pl.col("__Cancelled at").is_not_null())
        .then(pl.lit("cancelled"))
        .when(line_done | order_done)
        .then(pl.lit("fulfilled"))
        .when(financial.is_in(["pending", "expired"]))
        .then(pl.lit("payment_pending"))
        .when(_lower(pl.col("__Risk Level")) == "high")
        .then(pl.lit("high_risk"))
        .otherwise(pl.lit("unfulfilled"))
    )
    return filled.with_columns(__state=state)


SHOPIFY = Profile(
    name="shopify",
    title="Shopify orders export",
    signature=frozenset(
        {"Name", "Financial Status", "Fulfillment Status", "Created at", "Lineitem quantity"}
    ),
    columns={
        "order_id": "Name",
        "placed_at": "__Created at",
        "status": "__state",
        "value": "Total",
        "currency": "__Currency",
        "shipped_at": "__Fulfilled at",
        "customer_id": "__Email",
        "sku": "Lineitem sku",
        "qty": "Lineitem quantity",
    },
    statuses=status_table(
        {
            "cancelled": (S.CANCELLED, None),
            "fulfilled": (S.SHIPPED, None),
            "payment_pending": (S.PAYMENT_FAILED, "payment_failed"),
            "high_risk": (S.FRAUD_HOLD, "fraud_hold"),
            "unfulfilled": (S.PENDING, None),
        }
    ),
    date_formats=("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"),
    defaults={"channel": "shopify", "currency": "USD"},
    shaping=_shopify,
    not_computed={
        "seller_cancel_rate": NO_REQUESTER,
        "late_shipment_rate": NO_SHIP_BY,
        "late_delivery_rate": NO_PROMISE,
    },
    notes=(
        "Order-level columns (statuses, dates, currency) are read from the order's first row; "
        "Total is the order's value.",
        "A cancelled order has 'Cancelled at'; a fulfilled line or order is shipped; a pending "
        "or expired payment on an unfulfilled order is payment_failed; Risk Level 'High' is a "
        "fraud_hold.",
    ),
)


# NetSuite sales-order saved search (CSV export): one row per line or per order (main line).


def _netsuite(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(
        __status=pl.col("Status").str.replace(r"^[^:]*:\s*", ""),
        __ship_by=_optional(frame, "Ship Date"),
        __currency=_optional(frame, "Currency"),
        __customer=_optional(frame, "Name"),
        __sku=_optional(frame, "Item"),
        __qty=_optional(frame, "Quantity"),
    )


NETSUITE = Profile(
    name="netsuite",
    title="NetSuite sales-order saved search",
    signature=frozenset({"Document Number", "Date", "Status", "Amount"}),
    columns={
        "order_id": "Document Number",
        "placed_at": "Date",
        "status": "__status",
        "value": "Amount",
        "ship_by": "__ship_by",
        "currency": "__currency",
        "customer_id": "__customer",
        "sku": "__sku",
        "qty": "__qty",
    },
    statuses=status_table(
        {
            "Pending Approval": (S.ON_HOLD, None),
            "Pending Fulfillment": (S.PENDING, None),
            "Partially Fulfilled": (S.SHIPPED, None),
            "Pending Billing/Partially Fulfilled": (S.SHIPPED, None),
            "Pending Billing": (S.SHIPPED, None),
            "Billed": (S.SHIPPED, None),
            "Closed": (S.CANCELLED, None),
            "Cancelled": (S.CANCELLED, None),
        }
    ),
    date_formats=("%m/%d/%Y", "%m/%d/%Y %I:%M %p", "%Y-%m-%d", "%d/%m/%Y"),
    defaults={"channel": "netsuite", "currency": "USD"},
    shaping=_netsuite,
    not_computed={
        "seller_cancel_rate": NO_REQUESTER,
        "late_delivery_rate": NO_PROMISE,
        "late_shipment_rate": "a saved search shows the planned Ship Date, not when it shipped",
    },
    notes=(
        "Columns: Document Number, Date, Status, Amount (required); Ship Date, Currency, Name "
        "(customer), Item, Quantity when present. A 'Sales Order:' prefix on Status is dropped.",
        "Closed (unfulfilled lines closed) and Cancelled count as cancelled.",
    ),
)
