"""An export's rows as the desk's order lines: one polars expression per field, no row loops.

The result has one row per source row with: ``order_id``, ``placed_at`` (naive UTC: a zone-less
timestamp is read as the merchant's, UTC by default), ``line_status`` (a desk status),
``category`` (a case category when the status is an exception), ``shipped`` (this line has
shipment evidence), ``channel``, ``fulfillment_type``, ``value`` (Decimal, 2 places),
``currency``, the other times, ``cancel_requester``, ``cancel_reason``, ``customer_id``,
``sku``, ``qty``, and the flags data quality counts (``bad_<time field>``,
``unknown_status``).
"""

from __future__ import annotations

import polars as pl

from recoverydesk.domain.cases import Category
from recoverydesk.reports.assess.profiles import (
    DATE_FIELDS,
    FIELDS,
    SHIPPED_STATUSES,
    DeskStatus,
    Profile,
)

MONEY = pl.Decimal(38, 2)
SYMBOLS = " $€£₹¥R"  # currency signs around an amount
TEXT_FIELDS = (
    "order_id",
    "channel",
    "fulfillment_type",
    "currency",
    "cancel_requester",
    "cancel_reason",
    "customer_id",
    "sku",
)


def desk_lines(frame: pl.LazyFrame, profile: Profile) -> pl.LazyFrame:
    """The profile's view of ``frame`` (already scanned, empty rows dropped). Only the fields
    the profile maps are parsed; the others are typed nulls."""
    shaped = profile.shaping(frame) if profile.shaping else frame
    names = set(shaped.collect_schema().names())
    raw = shaped.select(
        *(_source(profile, name) for name in FIELDS),
        *([pl.col("__shipped").fill_null(value=False)] if "__shipped" in names else []),
        *([pl.col("__late_delivery")] if "__late_delivery" in names else []),
    )
    mapped = set(profile.columns)
    times = [field for field in DATE_FIELDS if field in mapped]
    parsed = raw.with_columns(
        *(_time(field, profile).alias(f"__t_{field}") for field in times),
        *(_text(pl.col(field)).alias(field) for field in TEXT_FIELDS if field in mapped),
        *(
            pl.lit(None, dtype=pl.Datetime("us")).alias(f"__t_{f}")
            for f in DATE_FIELDS
            if f not in mapped
        ),
        *(pl.lit(None, dtype=pl.String).alias(f) for f in TEXT_FIELDS if f not in mapped),
        value=_money(pl.col("value"), raw.collect_schema()["value"], profile)
        if "value" in mapped
        else pl.lit(None, dtype=MONEY),
        qty=_qty() if "qty" in mapped else pl.lit(None, dtype=pl.Int64),
    )
    parsed = _with_statuses(parsed, profile)
    return (
        parsed.with_columns(
            *(
                (_text(pl.col(field)).is_not_null() & pl.col(f"__t_{field}").is_null()).alias(
                    f"bad_{field}"
                )
                for field in times
            ),
            *(pl.col(f"__t_{field}").alias(field) for field in DATE_FIELDS),
        )
        .drop([f"__t_{field}" for field in DATE_FIELDS])
        .with_columns(**_dimensions(profile))
        .with_columns(shipped=_shipped(names))
    )


def _source(profile: Profile, name: str) -> pl.Expr:
    column = profile.columns.get(name)
    if column is None:
        return pl.lit(None, dtype=pl.String).alias(name)
    return pl.col(column).alias(name)


def _qty() -> pl.Expr:
    return _text(pl.col("qty")).cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


def _text(expr: pl.Expr) -> pl.Expr:
    stripped = expr.cast(pl.String).str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def _time(field: str, profile: Profile) -> pl.Expr:
    text = _text(pl.col(field))
    attempts = [
        text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False).dt.replace_time_zone(None)
        if "%z" in fmt
        else text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        for fmt in profile.date_formats
    ]
    return pl.coalesce(attempts)


def _money(expr: pl.Expr, dtype: pl.DataType, profile: Profile) -> pl.Expr:
    if isinstance(dtype, pl.Decimal):
        value = expr.cast(MONEY)
    else:
        cleaned = _text(expr).str.replace_all(",", "", literal=True).str.strip_chars(SYMBOLS)
        value = cleaned.cast(MONEY, strict=False)
    if profile.value_is_unit_price:
        value = (value * _qty()).cast(MONEY)
    return value


STATUS_TYPE = pl.Enum([status.value for status in DeskStatus])
CATEGORY_TYPE = pl.Enum(sorted(category.value for category in Category))  # max() = by name


def _with_statuses(frame: pl.LazyFrame, profile: Profile) -> pl.LazyFrame:
    """``line_status``, ``category`` and ``unknown_status`` (the raw value when the profile
    does not know it) by looking the cleaned status up in the profile's small status table
    (a hash lookup per line: no join, which would move every column of millions of lines)."""
    key = pl.col("status").cast(pl.String).str.strip_chars().str.to_lowercase().fill_null("")
    rules = profile.statuses
    statuses = {name: rule.status.value for name, rule in rules.items()}
    categories = {name: rule.category for name, rule in rules.items() if rule.category}
    unknown = pl.col("line_status").is_null() & pl.lit("status" in profile.columns)
    return (
        frame.with_columns(__key=key)
        .with_columns(
            line_status=pl.col("__key").replace_strict(
                statuses, default=None, return_dtype=STATUS_TYPE
            ),
            category=pl.col("__key").replace_strict(
                categories, default=None, return_dtype=CATEGORY_TYPE
            ),
        )
        .with_columns(
            pl.col("line_status").fill_null(DeskStatus.PLACED.value),
            unknown_status=pl.when(unknown).then(pl.col("status")).otherwise(None),
        )
        .drop("__key")
    )


def _dimensions(profile: Profile) -> dict[str, pl.Expr]:
    defaults = profile.defaults
    channel = pl.col("channel").str.to_lowercase()  # already clean text (TEXT_FIELDS)
    fulfilment = pl.col("fulfillment_type")
    if profile.fulfillment_types:
        fulfilment = fulfilment.str.to_lowercase().replace_strict(
            dict(profile.fulfillment_types), default=fulfilment, return_dtype=pl.String
        )
    requester = pl.col("cancel_requester")
    if profile.requesters:
        requester = requester.str.to_lowercase().replace_strict(
            dict(profile.requesters), default=requester, return_dtype=pl.String
        )
    return {
        "channel": channel.fill_null(pl.lit(defaults.get("channel", "unknown"))),
        "fulfillment_type": fulfilment.fill_null(
            pl.lit(defaults.get("fulfillment_type", "unknown"))
        ),
        "currency": pl.col("currency")
        .str.to_uppercase()
        .fill_null(pl.lit(defaults.get("currency", "USD"))),
        "cancel_requester": requester,
    }


def one_of(expr: pl.Expr, values: list[str]) -> pl.Expr:
    """``expr.is_in(values)`` as equalities (polars' streaming engine mis-plans ``is_in`` on an
    Enum column that comes out of a join)."""
    return pl.any_horizontal(expr == value for value in values)


def _shipped(names: set[str]) -> pl.Expr:
    evidence = (
        one_of(pl.col("line_status"), [s.value for s in SHIPPED_STATUSES])
        | pl.col("shipped_at").is_not_null()
    )
    if "__shipped" in names:
        evidence = evidence | pl.col("__shipped")
    return evidence
