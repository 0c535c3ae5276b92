"""The weekly KPI figures over a large synthetic desk, on SQLite and PostgreSQL, against polars.

    .venv/bin/python bench/kpi_bench.py [--orders 5000000] [--weeks 52] [--db sqlite,postgresql]

Orders are generated straight into the tables with one set-based INSERT ... SELECT each (a
recursive CTE on SQLite, ``generate_series`` on PostgreSQL), spread evenly over ``--weeks``
weeks, in 3 channels x 4 fulfilment types; one order in ten has a case (carrying its order's
segment and value, as the desk's stores keep them), one in fifty a cancel request. The desk's
own ``reports.kpis.compute`` is timed for one week in the middle (best of three runs, after one
warm-up), and each figure group on its own; polars computes the same headline order figures over
the orders exported once to Parquet (the export is not timed). PostgreSQL is the server at
``RECOVERYDESK_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``); a scratch
database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from sqlalchemy import Connection, create_engine, text

from recoverydesk.persistence.migrate import upgrade
from recoverydesk.reports import kpi_cases
from recoverydesk.reports.kpi_orders import data_quality, order_tallies
from recoverydesk.reports.kpi_period import Period, week_period
from recoverydesk.reports.kpi_root_causes import root_causes
from recoverydesk.reports.kpi_stopship import chargeback_ratio, stopship_tallies
from recoverydesk.reports.kpi_tally import Tallies
from recoverydesk.reports.kpis import compute, planner_settings

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: ISO week 2026-W02
PG_ADMIN = os.environ.get("RECOVERYDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CHANNELS = ("shopify", "amazon", "woocommerce")
KINDS = ("in_house", "3pl", "drop_ship", "marketplace")
CATEGORIES = ("payment_failed", "fraud_hold", "address_invalid", "late_shipment_risk", "drift")
OUTCOMES = ("released", "shipped", "cancelled", "refunded")


def _pick(values: tuple[str, ...], expr: str) -> str:
    whens = " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(values))
    return f"CASE ({expr}) % {len(values)} {whens} END"


def _sql(dialect: str, n: int, step: float) -> list[str]:
    """The INSERT ... SELECT statements: orders, cases, cancellations."""
    if dialect == "sqlite":
        series = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})"  # noqa: S608
        base = int(START.timestamp())

        def at(offset: str) -> str:
            return f"strftime('%Y-%m-%dT%H:%M:%S.000000Z', {base} + {offset}, 'unixepoch')"

        source, true, false, zero = "n", "1", "0", "'0'"
    else:
        series = ""
        base_ts = f"timestamptz '{START.isoformat()}'"

        def at(offset: str) -> str:
            return f"({base_ts} + make_interval(secs => {offset}))"

        source, true, false, zero = f"generate_series(1, {n}) AS n(i)", "true", "false", "0"
    placed = f"CAST(i * {step} AS INTEGER)"
    hour = 3600
    shipped = f"CASE WHEN i % 5 <> 0 THEN {at(f'{placed} + (i % 30) * {hour}')} END"
    delivered = f"CASE WHEN i % 5 IN (1, 2, 3) THEN {at(f'{placed} + (72 + i % 40) * {hour}')} END"
    orders = f"""
        {series}
        INSERT INTO orders (merchant_id, ref, channel, fulfillment_type, value, currency,
            placed_at, ship_by, promised_by, fulfillment_status, payment_status, captured,
            refunded, cancelled, partially_cancelled, shipped_at, delivered_at, event_count,
            snapshot, updated_at)
        SELECT 1, 'o' || i, {_pick(CHANNELS, "i")}, {_pick(KINDS, "i / 3")}, '100.00', 'USD',
            {at(placed)}, {at(f"{placed} + 24 * {hour}")}, {at(f"{placed} + 96 * {hour}")},
            'released', 'captured', '100.00', {zero},
            CASE WHEN i % 25 = 0 THEN {true} ELSE {false} END,
            CASE WHEN i % 40 = 1 THEN {true} ELSE {false} END,
            {shipped}, {delivered}, 3, '{{}}', {at(placed)}
        FROM {source}"""  # noqa: S608
    cases = f"""
        {series}
        INSERT INTO cases (merchant_id, order_ref, category, status, outcome, opened_at,
            closed_at, opened_by, event_ids, created_at, updated_at, rule, data, clocks,
            escalations, due_sort, revenue_at_risk, risk_cents, order_channel,
            order_fulfillment_type, order_value, order_currency)
        SELECT 1, 'o' || i, {_pick(CATEGORIES, "i / 10")},
            CASE WHEN i % 50 = 0 THEN 'triaged' ELSE 'closed' END,
            CASE WHEN i % 50 = 0 THEN NULL ELSE {_pick(OUTCOMES, "i / 10")} END,
            {at(f"{placed} + {hour}")},
            CASE WHEN i % 50 = 0 THEN NULL ELSE {at(f"{placed} + (1 + i % 48) * {hour}")} END,
            'bench:' || i, '[]', {at(placed)}, {at(placed)}, 'r' || i, '{{}}', '{{}}', '[]',
            {at(placed)}, '0', 0, {_pick(CHANNELS, "i")}, {_pick(KINDS, "i / 3")}, '100.00', 'USD'
        FROM {source} WHERE i % 10 = 0"""  # noqa: S608
    cancellations = f"""
        {series}
        INSERT INTO cancellations (merchant_id, order_ref, stage, outcome, requested_by,
            requested_at, final_outcome_at, state, version, created_at, updated_at)
        SELECT 1, 'o' || i, 'done', CASE WHEN i % 3 = 0 THEN 'converted_to_return'
            ELSE 'stopped' END, CASE WHEN i % 4 = 0 THEN 'ops' ELSE 'customer' END,
            {at(f"{placed} + 2 * {hour}")}, {at(f"{placed} + 2 * {hour} + (i % 20000)")},
            '{{}}', 0, {at(placed)}, {at(placed)}
        FROM {source} WHERE i % 50 = 7"""  # noqa: S608
    return [orders, cases, cancellations]


@contextmanager
def scratch_database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'kpi-bench.db'}"
        return
    name = f"rd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(url: str, orders: int, weeks: int) -> float:
    upgrade(url)
    engine = create_engine(url)
    step = weeks * 7 * 86400 / orders
    started = time.perf_counter()
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO merchants (id, name, time_zone, config_version, created_at) "
                "VALUES (1, 'bench', 'UTC', 0, :at)"
            ),
            {
                "at": START.isoformat()
                if engine.dialect.name != "sqlite"
                else "2026-01-01T00:00:00.000000Z"
            },
        )
        for statement in _sql(engine.dialect.name, orders, step):
            db.execute(text(statement))
    with engine.begin() as db:
        db.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def _groups(db: Connection, period: Period) -> dict[str, Callable[[], object]]:
    """Each figure group of ``compute``, to time on its own."""
    tallies = Tallies()
    return {
        "orders": lambda: order_tallies(db, 1, period, "UTC", tallies),
        "cases opened": lambda: kpi_cases._opened(db, 1, period, tallies),
        "saves": lambda: kpi_cases._saves(db, 1, period, tallies),
        "backlog": lambda: kpi_cases._backlog(db, 1, period.end, tallies),
        "sla": lambda: kpi_cases._sla(db, 1, period, tallies),
        "leakage": lambda: kpi_cases._leakage(db, 1, period, tallies),
        "stop-ship": lambda: stopship_tallies(db, 1, period, tallies),
        "root causes": lambda: root_causes(db, 1, period),
        "chargebacks": lambda: chargeback_ratio(db, 1, period, "UTC"),
        "data quality": lambda: data_quality(db, 1, period, tallies.overall().counts),
    }


def time_groups(db: Connection, period: Period) -> dict[str, float]:
    """The best of three runs of each figure group, in seconds."""
    best: dict[str, float] = {}
    planner_settings(db)  # as ``compute`` does
    for _ in range(3):
        for name, run_group in _groups(db, period).items():
            started = time.perf_counter()
            run_group()
            elapsed = time.perf_counter() - started
            best[name] = min(best.get(name, elapsed), elapsed)
    return best


def time_kpis(url: str, week: str) -> tuple[float, dict[str, Any], dict[str, float]]:
    engine = create_engine(url)
    period = week_period(week, "UTC")
    best, figures = float("inf"), {}
    with engine.connect() as db:
        compute(db, 1, period)  # warm-up: the page cache, the statement cache
        for _ in range(3):
            started = time.perf_counter()
            figures = compute(db, 1, period)
            best = min(best, time.perf_counter() - started)
        db.rollback()
        groups = time_groups(db, period)
    engine.dispose()
    return best, figures, groups


def export(url: str, folder: Path) -> Path:
    """The orders table once to Parquet, times parsed to UTC (not timed)."""
    engine = create_engine(url)
    columns = ("channel", "fulfillment_type", "placed_at", "ship_by", "shipped_at")
    columns += ("delivered_at", "cancelled")
    parts = []
    with engine.connect() as db:
        result = db.exec_driver_sql(f"SELECT {', '.join(columns)} FROM orders")  # noqa: S608
        for rows in result.partitions(500_000):
            parts.append(pl.DataFrame(rows, schema=list(columns), orient="row"))
    engine.dispose()
    frame = pl.concat(parts)
    times = ("placed_at", "ship_by", "shipped_at", "delivered_at")
    if frame.schema["placed_at"] == pl.String:
        frame = frame.with_columns(
            pl.col(c).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC") for c in times
        )
    frame = frame.with_columns(
        *(pl.col(c).cast(pl.Datetime("us", "UTC")) for c in times),
        pl.col("cancelled").cast(pl.Boolean),
    )
    path = folder / "orders.parquet"
    frame.write_parquet(path)
    return path


def polars_figures(path: Path, week: str) -> tuple[float, dict[str, int]]:
    period = week_period(week, "UTC")
    best, answer = float("inf"), {}
    for _ in range(3):
        started = time.perf_counter()
        shipped = pl.col("shipped_at").is_not_null() | pl.col("delivered_at").is_not_null()
        timed = pl.col("shipped_at").is_not_null() & pl.col("ship_by").is_not_null()
        row = (
            pl.scan_parquet(path)
            .filter(pl.col("placed_at") >= period.start, pl.col("placed_at") < period.end)
            .select(
                pl.len().alias("orders"),
                pl.col("cancelled").sum().alias("cancelled"),
                (pl.col("cancelled") & ~shipped).sum().alias("cancelled_before_shipment"),
                timed.sum().alias("shipped_with_ship_by"),
                (timed & (pl.col("shipped_at") > pl.col("ship_by"))).sum().alias("shipped_late"),
            )
            .collect()
            .row(0, named=True)
        )
        best = min(best, time.perf_counter() - started)
        answer = {k: int(v) for k, v in row.items()}
    return best, answer


def run(kind: str, orders: int, weeks: int, week: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="kpi-bench-") as scratch,
        scratch_database(kind, Path(scratch)) as url,
    ):
        filled = fill(url, orders, weeks)
        print(f"[{kind}] generated {orders:,} orders in {filled:.1f} s")
        elapsed, figures, groups = time_kpis(url, week)
        path = export(url, Path(scratch))
        fast, frame = polars_figures(path, week)
    desk = {
        "orders": figures["orders"],
        "cancelled": figures["cancellation_rate"]["numerator"],
        "cancelled_before_shipment": figures["pre_fulfillment_cancel_rate"]["numerator"],
        "shipped_with_ship_by": figures["late_shipment_rate"]["denominator"],
        "shipped_late": figures["late_shipment_rate"]["numerator"],
    }
    print(
        f"[{kind}] week {week}: desk KPIs (every figure, {len(figures['by_segment'])} segments) "
        f"{elapsed * 1000:.0f} ms; polars headline figures {fast * 1000:.1f} ms; "
        f"ratio {elapsed / fast:.1f}x"
    )
    shown = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in groups.items())
    print(f"[{kind}] by figure group (ms): {shown}")
    print(f"[{kind}] desk   {desk}")
    print(f"[{kind}] polars {frame}  {'same' if desk == frame else 'DIFFERENT'}")
    ttc = figures["time_to_cancel"]
    print(
        f"[{kind}] cancellation rate {figures['cancellation_rate']['value']}, late shipments "
        f"{figures['late_shipment_rate']['value']}, save rate {figures['save_rate']['value']}, "
        f"time to cancel median {ttc['median_seconds']} s p90 {ttc['p90_seconds']} s, "
        f"backlog {figures['exception_backlog']['open']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    middle = START + timedelta(weeks=args.weeks // 2)
    iso = middle.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    for kind in args.db.split(","):
        run(kind, args.orders, args.weeks, week)


if __name__ == "__main__":
    main()
