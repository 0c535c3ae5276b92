"""Server time of the web desk's queue board and case workspace at 100,000 open cases, and the
page weight (HTML + CSS + JS, raw and gzipped).

    .venv/bin/python bench/web_bench.py [--cases 100000] [--requests 50] [--db sqlite,postgresql]
        [--fresh] [--explain]

The open cases are written straight into the tables (set-based batches, spread over 6 queues, 3
priorities, 3 channels, 4 fulfilment types, each with a running first-touch clock); one order is
ingested through the desk so its workspace has a real order 360, timeline and playbook. A live
desk (uvicorn in a thread) serves a logged-in user over loopback HTTP; each page is requested
``--requests`` times after one warm-up, and p50/p95 of the time to the whole answer are printed.
After the load the tables are analyzed (and vacuumed on PostgreSQL), as a desk that has held
its cases for a while has been by autovacuum; ``--fresh`` measures right after the load instead
(no statistics yet). ``--explain`` prints the plans of the board's queries.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine, event, insert, text

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.entrypoints.web.board_query import (
    BoardFilter,
    page_groups,
    queue_counts,
    top_cases,
)
from recoverydesk.entrypoints.web.users_cli import add_web_user
from recoverydesk.persistence.tables import cases, orders
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent
from recoverydesk.telemetry import configure_logging

PG_ADMIN = os.environ.get("RECOVERYDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
QUEUES = ("pre_fulfilment", "payments", "warehouse", "delivery", "refunds", "disputes")
CATEGORIES = ("fraud_hold", "payment_failed", "wms_exception", "delivery_exception")
CHANNELS = ("shopify", "amazon", "woocommerce")
KINDS = ("in_house", "3pl", "drop_ship", "marketplace")
PASSWORD = "bench-password-long"


def _rows(merchant_id: int, count: int, now: datetime) -> Iterator[tuple[list[Any], list[Any]]]:
    batch_cases: list[dict[str, Any]] = []
    batch_orders: list[dict[str, Any]] = []
    for n in range(count):
        ref = f"B{n:07d}"
        opened = now - timedelta(minutes=n % 5000)
        due = opened + timedelta(hours=4)
        clock = {
            "name": "first_touch",
            "started_at": opened.isoformat(),
            "target_seconds": 14400,
            "business": False,
            "pausable": True,
            "consumed_seconds": 0,
            "running_since": opened.isoformat(),
            "stopped_at": None,
            "pauses": [],
            "fired": {},
            "due_at": due.isoformat(),
            "breached": False,
        }
        batch_cases.append(
            {
                "merchant_id": merchant_id,
                "order_ref": ref,
                "category": CATEGORIES[n % 4],
                "status": "triaged",
                "priority": f"P{1 + n % 3}",
                "queue": QUEUES[n % 6],
                "opened_at": opened,
                "opened_by": "bench",
                "event_ids": [],
                "created_at": opened,
                "updated_at": opened,
                "rule": "",
                "data": {},
                "deadline": due,
                "due_sort": due,
                "revenue_at_risk": Decimal("40.00"),
                "risk_cents": 4000 + n % 1000,
                "clocks": {"first_touch": clock},
                "escalations": [],
            }
        )
        batch_orders.append(
            {
                "merchant_id": merchant_id,
                "ref": ref,
                "channel": CHANNELS[n % 3],
                "fulfillment_type": KINDS[n % 4],
                "snapshot": {},
                "updated_at": opened,
            }
        )
        if len(batch_cases) == 5000:
            yield batch_cases, batch_orders
            batch_cases, batch_orders = [], []
    if batch_cases:
        yield batch_cases, batch_orders


def _real_case(desk: Desk, merchant_id: int, name: str) -> int:
    at = datetime.now(UTC) - timedelta(hours=1)
    placed = {
        "id": "placed-R1",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": at.isoformat(),
        "order": {
            "ref": "R1",
            "channel": "shopify",
            "fulfillment_type": "3pl",
            "value": "150.00",
            "currency": "USD",
            "placed_at": at.isoformat(),
            "customer": {"id": "c-9", "email": "kim@example.com"},
            "lines": [{"sku": "LAMP", "qty": 1, "price": "150.00"}],
        },
        "data": {},
    }
    hold = {
        "id": "hold-R1",
        "source": "shopify",
        "type": "hold.placed",
        "occurred_at": (at + timedelta(minutes=5)).isoformat(),
        "order": {"ref": "R1"},
        "data": {"hold_type": "fraud", "reason": "risk"},
    }
    with desk.reader() as uow:
        merchant = uow.merchants.by_name(name)
    assert merchant is not None
    desk.ingest(merchant, [IncomingEvent(parse_event(e), json.dumps(e)) for e in (placed, hold)])
    with desk.reader() as uow:
        found = uow.cases.for_orders(merchant_id, ["R1"], open_only=True)["R1"]
    return found[0].id or 0


def populate(desk: Desk, count: int) -> int:
    with desk.uow() as uow:
        merchant = admin.add_merchant(uow, clock=desk.clock, name="bench")
        uow.commit()
    started = time.perf_counter()
    now = datetime.now(UTC)
    with desk.engine.begin() as db:
        for batch_cases, batch_orders in _rows(merchant.id, count, now):
            db.execute(insert(orders), batch_orders)
            db.execute(insert(cases), batch_cases)
    print(f"  {count:,} open cases written in {time.perf_counter() - started:.1f}s")
    add_web_user(desk, "bench", "lead", ["bench"], password_stdin=False, password=PASSWORD)
    return _real_case(desk, merchant.id, "bench")


@contextmanager
def serving(desk: Desk) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(desk), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/desk/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    data = {"name": "bench", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/desk/login", data=data).status_code == 303
    return client


def timed(client: httpx.Client, path: str, times: int) -> tuple[float, float, int]:
    client.get(path)  # warm-up
    spent = []
    size = 0
    for _ in range(times):
        started = time.perf_counter()
        answer = client.get(path)
        spent.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.status_code
        size = len(answer.content)
    spent.sort()
    p95 = spent[max(0, round(0.95 * len(spent)) - 1)]
    return statistics.median(spent), p95, size


def settle(engine: Engine) -> None:
    """What autovacuum does to a table that has held its rows a while: statistics for the
    planner and, on PostgreSQL, the visibility map that index-only scans read."""
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(text("VACUUM ANALYZE cases"))
            db.execute(text("VACUUM ANALYZE orders"))
    else:
        with engine.begin() as db:
            db.execute(text("ANALYZE"))
    print(f"  tables analyzed in {time.perf_counter() - started:.1f}s")


def explain(engine: Engine, merchant_id: int, wanted: BoardFilter) -> None:
    """The plans (and, on PostgreSQL, the actual times) of the board's queries."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    now = datetime.now(UTC)
    with engine.connect() as db:
        event.listen(engine, "before_cursor_execute", keep)
        try:
            counts = queue_counts(db, merchant_id, wanted, now=now)
            top_cases(db, merchant_id, wanted, now=now, groups=page_groups(counts))
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        postgres = engine.dialect.name == "postgresql"
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        for statement, params in seen:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            cursor = db.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(prefix + statement, params)
            print("  " + " ".join(statement.split())[:160] + " ...")
            for row in cursor.fetchall():
                print("      " + str(row[0] if postgres else row[-1]))


def measure(url: str, count: int, times: int, label: str, *, fresh: bool, plans: bool) -> None:
    print(f"{label}:")
    desk = bootstrap(Settings(database_url=url, decision_secret=SecretStr("b" * 32)))
    desk.upgrade()
    try:
        case_id = populate(desk, count)
        if not fresh:
            settle(desk.engine)
        if plans:
            with desk.reader() as uow:
                merchant = uow.merchants.by_name("bench")
            assert merchant is not None
            for wanted in (BoardFilter(), BoardFilter(queue="payments", channel="amazon")):
                explain(desk.engine, merchant.id, wanted)
        with serving(desk) as base:
            client = _login(base)
            pages = {
                "queue board": "/desk/board",
                "board (live part)": "/desk/board/live",
                "board, one queue + channel": "/desk/board?queue=payments&channel=amazon",
                "case workspace": f"/desk/cases/{case_id}",
                "workspace (live part)": f"/desk/cases/{case_id}/live",
            }
            for name, path in pages.items():
                p50, p95, size = timed(client, path, times)
                print(f"  {name:28s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({size:,} B HTML)")
            weight(client, case_id)
            client.close()
    finally:
        desk.close()


def weight(client: httpx.Client, case_id: int) -> None:
    parts = {
        "board HTML": client.get("/desk/board").content,
        "workspace HTML": client.get(f"/desk/cases/{case_id}").content,
        "desk.css": client.get("/desk/static/desk.css").content,
        "htmx.min.js": client.get("/desk/static/htmx.min.js").content,
    }
    for name, body in parts.items():
        print(f"  weight {name:16s} {len(body):8,} B  ({len(gzip.compress(body)):,} B gzipped)")
    total = sum(len(parts[n]) for n in ("board HTML", "desk.css", "htmx.min.js"))
    print(f"  board page total (HTML + CSS + JS): {total:,} B")


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"rd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--fresh", action="store_true", help="no ANALYZE/VACUUM after the load")
    parser.add_argument("--explain", action="store_true", help="print the board queries' plans")
    args = parser.parse_args()
    configure_logging("warning", "console")
    options = {"fresh": args.fresh, "plans": args.explain}
    chosen = args.db.split(",")
    if "sqlite" in chosen:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            measure(url, args.cases, args.requests, f"SQLite, {args.cases:,} open cases", **options)
    if "postgresql" in chosen:
        with pg_database() as url:
            label = f"PostgreSQL, {args.cases:,} open cases"
            measure(url, args.cases, args.requests, label, **options)


if __name__ == "__main__":
    main()
