"""The built-in profiles of marketplace and dataset exports: Amazon order report, DataCo supply
chain, Olist (orders + items + payments) and UCI Online Retail; ``BUILTIN`` names every built-in
profile, with the store and ERP ones from ``profiles_platforms`` (Shopify, NetSuite).

Each is detected by a set of its header's columns. What a status value means, and why, is in
the tables below; figures a source cannot support are named in ``not_computed``.
"""

from __future__ import annotations

import polars as pl

from recoverydesk.reports.assess.profiles import (
    NO_PROMISE,
    NO_REQUESTER,
    NO_SHIP_BY,
    NO_SHIPMENT,
    Profile,
    status_table,
)
from recoverydesk.reports.assess.profiles import DeskStatus as S
from recoverydesk.reports.assess.profiles import lowered as _lower
from recoverydesk.reports.assess.profiles import optional_column as _optional
from recoverydesk.reports.assess.profiles_platforms import NETSUITE, SHOPIFY

# Amazon order report ("Sale Report"): one row per order line, each line with its own status.


def _amazon(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(
        __shipped=_lower(_optional(frame, "Courier Status")) == "shipped",
        __channel=_optional(frame, "Sales Channel"),
        __currency=_optional(frame, "currency"),
        __sku=_optional(frame, "SKU"),
    )


_SHIPPED_THEN = ("Returned to Seller", "Returning to Seller", "Rejected by Buyer")
AMAZON = Profile(
    name="amazon",
    title="Amazon order report",
    signature=frozenset({"Order ID", "Date", "Status", "Fulfilment", "Courier Status", "Amount"}),
    columns={
        "order_id": "Order ID",
        "placed_at": "Date",
        "status": "Status",
        "fulfillment_type": "Fulfilment",
        "value": "Amount",
        "qty": "Qty",
        "channel": "__channel",
        "currency": "__currency",
        "sku": "__sku",
    },
    statuses=status_table(
        {
            "Cancelled": (S.CANCELLED, None),
            "Pending": (S.PAYMENT_FAILED, "payment_failed"),
            "Pending - Waiting for Pick Up": (S.PENDING, "wms_exception"),
            "Waiting for Pick Up": (S.PENDING, "wms_exception"),
            "Shipping": (S.PENDING, None),
            **{
                name: (S.SHIPPED, None)
                for base in ("Shipped", "Picked Up", "Out for Delivery")
                for name in (base, f"Shipped - {base}")
            },
            "Delivered to Buyer": (S.DELIVERED, None),
            "Shipped - Delivered to Buyer": (S.DELIVERED, None),
            **{
                name: (S.SHIPPED, "delivery_exception")
                for base in (*_SHIPPED_THEN, "Lost in Transit", "Damaged")
                for name in (base, f"Shipped - {base}")
            },
        }
    ),
    fulfillment_types={"amazon": "marketplace", "merchant": "in_house"},
    date_formats=("%m-%d-%y", "%m/%d/%y", "%Y-%m-%d"),
    defaults={"channel": "amazon", "currency": "INR"},
    shaping=_amazon,
    not_computed={
        "seller_cancel_rate": NO_REQUESTER,
        "late_shipment_rate": NO_SHIP_BY,
        "late_delivery_rate": "the report has no delivery or promised dates",
    },
    notes=(
        "A line is shipped when its Status says so or its Courier Status is 'Shipped' "
        "('On the Way' is not taken as a shipment: cleaned copies fill missing values with it).",
        "Fulfilment 'Amazon' is marketplace-fulfilled (FBA), 'Merchant' is in_house.",
        "Pending is Amazon's payment-not-yet-authorised state (payment_failed, at risk); "
        "Waiting for Pick Up is a carrier hand-off gap (wms_exception).",
        "Returned/returning to seller, rejected by buyer, lost in transit: delivery_exception.",
    ),
)


# DataCo Smart Supply Chain: one row per order item; order-level fields constant per Order Id.


def _dataco(frame: pl.LazyFrame) -> pl.LazyFrame:
    delivery = pl.col("Delivery Status").str.strip_chars()
    return frame.with_columns(
        __late_delivery=pl.when(delivery == "Shipping canceled")
        .then(None)
        .otherwise(delivery == "Late delivery")
    )


DATACO = Profile(
    name="dataco",
    title="DataCo supply chain export",
    signature=frozenset({"Order Id", "Order Status", "order date (DateOrders)", "Delivery Status"}),
    columns={
        "order_id": "Order Id",
        "placed_at": "order date (DateOrders)",
        "status": "Order Status",
        "value": "Order Item Total",
        "customer_id": "Order Customer Id",
        "sku": "Product Card Id",
        "qty": "Order Item Quantity",
    },
    statuses=status_table(
        {
            "COMPLETE": (S.SHIPPED, None),
            "CLOSED": (S.SHIPPED, None),
            "PENDING": (S.PENDING, None),
            "PROCESSING": (S.PENDING, None),
            "PENDING_PAYMENT": (S.PAYMENT_FAILED, "payment_failed"),
            "PAYMENT_REVIEW": (S.PAYMENT_FAILED, "payment_failed"),
            "ON_HOLD": (S.ON_HOLD, "fraud_hold"),
            "SUSPECTED_FRAUD": (S.FRAUD_HOLD, "fraud_hold"),
            "CANCELED": (S.CANCELLED, None),
        }
    ),
    date_formats=("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S"),
    defaults={"channel": "web", "currency": "USD"},
    shaping=_dataco,
    late_delivery_rule=(
        "DataCo: an order is late when its Delivery Status is 'Late delivery' (the dataset's "
        "Late_delivery_risk = 1: real shipping days above the scheduled days); orders with "
        "'Shipping canceled' are left out of the denominator"
    ),
    not_computed={
        "seller_cancel_rate": NO_REQUESTER,
        "late_shipment_rate": "DataCo has one lateness fact (Delivery Status), reported as "
        "late_delivery_rate; there is no separate ship-by time",
    },
    notes=(
        "Shipped: COMPLETE and CLOSED orders (DataCo's shipping dates are present on every "
        "row, even unpaid ones, so they are not taken as shipment evidence).",
        "ON_HOLD has no hold reason in the data: counted as fraud_hold (screening hold).",
        "Value: Order Item Total (after discount), summed over the order's items.",
    ),
)


# Olist: orders (one row per order) joined with items (lines) and payments when given.

OLIST = Profile(
    name="olist",
    title="Olist orders (+ items, payments)",
    signature=frozenset({"order_id", "order_status", "order_purchase_timestamp"}),
    columns={
        "order_id": "order_id",
        "placed_at": "order_purchase_timestamp",
        "status": "order_status",
        "shipped_at": "order_delivered_carrier_date",
        "delivered_at": "order_delivered_customer_date",
        "promised_by": "order_estimated_delivery_date",
        "customer_id": "customer_id",
        "value": "__value",
        "ship_by": "__ship_by",
        "sku": "__sku",
    },
    statuses=status_table(
        {
            "delivered": (S.DELIVERED, None),
            "shipped": (S.SHIPPED, None),
            "canceled": (S.CANCELLED, None),
            "unavailable": (S.PENDING, "inventory_mismatch"),
            "processing": (S.PENDING, None),
            "invoiced": (S.PENDING, None),
            "created": (S.PENDING, None),
            "approved": (S.PENDING, None),
        }
    ),
    date_formats=("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "%Y-%m-%d"),
    defaults={"channel": "olist", "currency": "BRL"},
    not_computed={
        "seller_cancel_rate": "Olist has no cancel requester, reason or timestamp",
        "partial_cancellation_rate": "Olist's status is per order; items carry no status",
    },
    notes=(
        "A pre-fulfilment cancel is a 'canceled' order with no carrier hand-off date.",
        "'unavailable' orders are inventory_mismatch (sold but not available).",
        "Lines are the items file's rows (value = price + freight; ship-by = the item's "
        "shipping_limit_date); an order without items takes the sum of its payments.",
        "Late delivery compares calendar dates: delivered on the estimated day is on time.",
    ),
)


def olist_frame(
    orders: pl.LazyFrame, items: pl.LazyFrame | None, payments: pl.LazyFrame | None
) -> pl.LazyFrame:
    """Orders left-joined with their items (one row per item) and their payments' total."""
    frame = orders
    if items is not None:
        lines = items.select(
            "order_id",
            __ship_by=pl.col("shipping_limit_date"),
            __sku=pl.col("product_id"),
            __item_value=_decimal(pl.col("price")) + _decimal(pl.col("freight_value")).fill_null(0),
        )
        frame = frame.join(lines, on="order_id", how="left")
    else:
        frame = frame.with_columns(
            __ship_by=pl.lit(None, dtype=pl.String),
            __sku=pl.lit(None, dtype=pl.String),
            __item_value=pl.lit(None, dtype=pl.Decimal(38, 2)),
        )
    if payments is not None:
        paid = payments.group_by("order_id").agg(__paid=_decimal(pl.col("payment_value")).sum())
        frame = frame.join(paid, on="order_id", how="left")
    else:
        frame = frame.with_columns(__paid=pl.lit(None, dtype=pl.Decimal(38, 2)))
    return frame.with_columns(__value=pl.coalesce("__item_value", "__paid"))


def _decimal(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().cast(pl.Decimal(38, 2), strict=False)


OLIST_ITEMS = frozenset({"order_id", "order_item_id", "price", "shipping_limit_date"})
OLIST_PAYMENTS = frozenset({"order_id", "payment_sequential", "payment_value"})
OLIST_OTHERS = (
    frozenset({"customer_id", "customer_unique_id"}),
    frozenset({"review_id", "order_id", "review_score"}),
    frozenset({"product_id", "product_category_name"}),
    frozenset({"seller_id", "seller_zip_code_prefix"}),
    frozenset({"product_category_name", "product_category_name_english"}),
)


# UCI Online Retail: one row per invoice line; a cancellation is its own invoice "C" + number.


def _online_retail(frame: pl.LazyFrame) -> pl.LazyFrame:
    qty = pl.col("Quantity").str.strip_chars().cast(pl.Int64, strict=False)
    price = pl.col("UnitPrice").str.strip_chars().cast(pl.Decimal(38, 4), strict=False)
    invoice = pl.col("InvoiceNo").str.strip_chars()
    return frame.with_columns(
        __status=pl.when(invoice.str.starts_with("C")).then(pl.lit("C")).otherwise(pl.lit("")),
        __value=(price * qty.abs()).cast(pl.Decimal(38, 2)),
        __qty=qty.abs().cast(pl.String),
    )


ONLINE_RETAIL = Profile(
    name="online_retail",
    title="UCI Online Retail invoices",
    signature=frozenset({"InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice"}),
    columns={
        "order_id": "InvoiceNo",
        "placed_at": "InvoiceDate",
        "status": "__status",
        "value": "__value",
        "qty": "__qty",
        "customer_id": "CustomerID",
        "sku": "StockCode",
    },
    statuses=status_table({"C": (S.CANCELLED, None), "": (S.PLACED, None)}),
    date_formats=("%d-%m-%y %H:%M", "%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S"),
    defaults={"channel": "online", "currency": "GBP"},
    shaping=_online_retail,
    not_computed={
        "pre_fulfillment_cancel_rate": NO_SHIPMENT,
        "partial_cancellation_rate": "cancellations are separate credit invoices ('C' + number) "
        "that do not name the invoice they cancel",
        "seller_cancel_rate": NO_REQUESTER,
        "late_shipment_rate": NO_SHIP_BY,
        "late_delivery_rate": NO_PROMISE,
    },
    notes=(
        "Each invoice is an order; an invoice whose number starts with 'C' is a cancellation.",
        "Value: |Quantity| x UnitPrice per line.",
    ),
)


BUILTIN: dict[str, Profile] = {
    p.name: p for p in (AMAZON, SHOPIFY, NETSUITE, DATACO, OLIST, ONLINE_RETAIL)
}
