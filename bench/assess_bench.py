"""Benchmark: `assess` on a 1,000,000-row synthetic Amazon order report vs plain polars.

The export is written once into a temporary folder (about 1.08 lines per order, statuses and
fulfilment types in the real report's proportions, two date spellings). Then the assessment
job runs over it in-process, and a hand-written polars query computes the same headline
figures (orders, cancellation rate, pre-fulfilment cancel rate, by fulfilment type). Both
timings, the figures and the ratio are printed; the aim is within 3x of the baseline. Each is run
``--repeat`` times, interleaved, and the best time of each counts (the machine may be shared).

    .venv/bin/python bench/assess_bench.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from recoverydesk.reports.assess import run_assessment

STATUSES = ["Shipped", "Shipped - Delivered to Buyer", "Cancelled", "Pending", "Returned to Seller"]
# cumulative share out of 100: 60 shipped, 22 delivered, 15 cancelled, 2 pending, 1 returned
CUTS = (60, 82, 97, 99)


def _draw(seed: int, modulo: int) -> pl.Expr:
    """A reproducible pseudo-random integer in [0, modulo) per row (no numpy needed)."""
    return (pl.int_range(pl.len(), dtype=pl.UInt64).hash(seed) % modulo).cast(pl.Int64)


def write_export(path: Path, rows: int) -> None:
    draw = _draw(1, 100)
    status = (
        pl.when(draw < CUTS[0])
        .then(pl.lit(STATUSES[0]))
        .when(draw < CUTS[1])
        .then(pl.lit(STATUSES[1]))
        .when(draw < CUTS[2])
        .then(pl.lit(STATUSES[2]))
        .when(draw < CUTS[3])
        .then(pl.lit(STATUSES[3]))
        .otherwise(pl.lit(STATUSES[4]))
    )
    day = _draw(2, 28) + 1
    frame = (
        pl.select(index=pl.int_range(rows))
        .with_columns(
            order=(pl.col("index") * 100 // 108),
            status=status,
            day=day,
            fba=_draw(3, 10) < 7,
            amount=(_draw(4, 130_000) + 20_000).cast(pl.Decimal(38, 2)) / 100,
        )
        .select(
            "index",
            pl.format("405-{}-0000000", pl.col("order").cast(pl.String).str.zfill(7)).alias(
                "Order ID"
            ),
            pl.when(pl.col("day") % 2 == 1)
            .then(pl.format("04-{}-22", pl.col("day").cast(pl.String).str.zfill(2)))
            .otherwise(pl.format("04/{}/22", pl.col("day").cast(pl.String).str.zfill(2)))
            .alias("Date"),
            pl.col("status").alias("Status"),
            pl.when("fba").then(pl.lit("Amazon")).otherwise(pl.lit("Merchant")).alias("Fulfilment"),
            pl.lit("Amazon.in").alias("Sales Channel "),
            pl.when(pl.col("status") == "Cancelled")
            .then(pl.lit("Cancelled"))
            .otherwise(pl.lit("Shipped"))
            .alias("Courier Status"),
            pl.lit(1).alias("Qty"),
            pl.lit("INR").alias("currency"),
            pl.col("amount").cast(pl.String).alias("Amount"),
        )
    )
    frame.write_csv(path)


def baseline(path: Path) -> dict[str, object]:
    lines = pl.scan_csv(path, infer_schema=False).with_columns(
        cancelled=pl.col("Status") == "Cancelled",
        shipped=pl.col("Courier Status") == "Shipped",
    )
    orders = (
        lines.group_by("Order ID")
        .agg(
            pl.col("cancelled").all(),
            pl.col("shipped").any(),
            pl.col("Fulfilment").first(),
        )
        .collect()
    )
    total = orders.height
    cancelled = int(orders["cancelled"].sum())
    pre = int((orders["cancelled"] & ~orders["shipped"]).sum())
    by_type = (
        orders.group_by("Fulfilment").agg(pl.len(), pl.col("cancelled").sum()).sort("Fulfilment")
    )
    return {
        "orders": total,
        "cancellation_rate": round(cancelled / total, 6),
        "pre_fulfillment_cancel_rate": round(pre / total, 6),
        "by_fulfilment": {f: round(c / n, 6) for f, n, c in by_type.iter_rows()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    options = parser.parse_args()
    rows = options.rows
    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "amazon_report.csv"
        started = time.perf_counter()
        write_export(export, rows)
        print(
            f"wrote {rows:,} rows ({export.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        plain_runs, job_runs = [], []
        for _ in range(max(1, options.repeat)):  # interleaved: both see the same machine load
            started = time.perf_counter()
            plain = baseline(export)
            plain_runs.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = run_assessment([export], out=Path(folder) / "out")
            job_runs.append(time.perf_counter() - started)
    plain_s, job_s = min(plain_runs), min(job_runs)
    figures = result.summary["figures"]
    print(f"baseline polars : {plain_s:6.2f} s  {plain}")
    print(
        f"assess          : {job_s:6.2f} s  orders={figures['orders']} "
        f"cancellation_rate={figures['cancellation_rate']['value']} "
        f"pre_fulfillment_cancel_rate={figures['pre_fulfillment_cancel_rate']['value']} "
        f"cases={figures['cases']}"
    )
    runs = ", ".join(f"{j / p:.2f}" for p, j in zip(plain_runs, job_runs, strict=True))
    best = f"best of {len(job_runs)}; each run: {runs}"
    print(f"ratio assess / baseline: {job_s / plain_s:.2f}x ({best})")


if __name__ == "__main__":
    main()
