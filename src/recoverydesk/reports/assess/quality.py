"""Data quality: what the export lacks or contradicts (KPIS.md's edge cases), counted, never
fatal. Contradictory orders are listed with examples and left out only of the time figures they
would corrupt (a hand-off before the purchase: late shipment; a delivery before the purchase:
late delivery).

Each check is a lazy query over the job's one plan (lines or orders); ``line_quality`` and
``order_quality`` turn their collected results into the summary's ``data_quality`` entries.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from recoverydesk.reports.assess.profiles import DATE_FIELDS, FIELDS, Profile

EXAMPLES = 5
UNKNOWN_SHOWN = 20
CONTRADICTIONS = {
    "carrier_handoff_before_purchase": pl.col("shipped_at") < pl.col("placed_at"),
    "delivered_before_shipped": pl.col("delivered_at") < pl.col("shipped_at"),
    "delivered_before_purchase": pl.col("delivered_at") < pl.col("placed_at"),
}


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _mapped(profile: Profile) -> list[str]:
    return [name for name in FIELDS if name in profile.columns]


def line_queries(lines: pl.LazyFrame, profile: Profile) -> dict[str, pl.LazyFrame]:
    """Rows without an order id, rows lacking each mapped field, unparseable dates (among rows
    with an id), and the most frequent status values the profile does not know."""
    has_id = pl.col("order_id").is_not_null()
    bad = [f"bad_{name}" for name in DATE_FIELDS if name in profile.columns]
    counts = lines.select(
        (~has_id).sum().alias("rows_without_order_id"),
        *((pl.col(name).is_null() & has_id).sum().alias(name) for name in _mapped(profile)),
        *((pl.col(name) & has_id).sum().alias(name) for name in bad),
    )
    unknown = (
        lines.filter(has_id & pl.col("unknown_status").is_not_null())
        .group_by("unknown_status")
        .len()
        .sort(["len", "unknown_status"], descending=[True, False])
        .head(UNKNOWN_SHOWN)
    )
    return {"line_counts": counts, "unknown_statuses": unknown}


def line_quality(found: dict[str, pl.DataFrame], profile: Profile) -> dict[str, Any]:
    counts = found["line_counts"].row(0, named=True)
    return {
        "rows_lacking": {name: int(counts[name]) for name in _mapped(profile)},
        "unparseable_dates": {
            name.removeprefix("bad_"): int(count)
            for name, count in counts.items()
            if name.startswith("bad_")
        },
        "unknown_status_values": {
            str(value): int(n) for value, n in found["unknown_statuses"].iter_rows()
        },
    }


def order_queries(orders: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """Contradictory orders (a count and the first examples by order id, per check) and orders
    lacking a value or a purchase time."""
    queries = {
        "order_counts": orders.select(
            *(
                cond.fill_null(value=False).sum().alias(name)
                for name, cond in CONTRADICTIONS.items()
            ),
            (~pl.col("value_known")).sum().alias("orders_without_value"),
            pl.col("placed_at").is_null().sum().alias("orders_without_placed_at"),
        )
    }
    for name, condition in CONTRADICTIONS.items():
        queries[f"examples_{name}"] = (
            orders.filter(condition.fill_null(value=False))
            .select("order_id", "placed_at", "shipped_at", "delivered_at")
            .sort("order_id")
            .head(EXAMPLES)
        )
    return queries


def order_quality(found: dict[str, pl.DataFrame]) -> dict[str, Any]:
    counts = found["order_counts"].row(0, named=True)
    contradictions = {
        name: {
            "orders": int(counts[name]),
            "examples": [
                {key: _iso(value) for key, value in row.items()}
                for row in found[f"examples_{name}"].iter_rows(named=True)
            ],
        }
        for name in CONTRADICTIONS
    }
    return {
        "contradictions": contradictions,
        "orders_without_value": int(counts["orders_without_value"]),
        "orders_without_placed_at": int(counts["orders_without_placed_at"]),
    }


def file_counts(frame: pl.LazyFrame, columns: tuple[str, ...]) -> pl.LazyFrame:
    """Rows in the file, rows kept (not fully empty) and duplicated lines among those kept
    (a line equal to an earlier one in every column; compared by a hash of the whole row)."""
    blank = pl.all_horizontal(pl.col(name).is_null() | (pl.col(name) == "") for name in columns)
    row_hash = pl.struct(pl.all()).hash(seed=0).filter(~blank)
    return frame.select(
        pl.len().alias("rows"),
        (~blank).sum().alias("kept"),
        (row_hash.len() - row_hash.n_unique()).alias("duplicate_lines"),
    )
