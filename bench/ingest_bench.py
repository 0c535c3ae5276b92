"""Ingest throughput: the desk against a raw insert baseline, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest_bench.py [--orders 20000] [--postgres URL] [--batch 1000]
                                           [--no-postgres] [--no-http] [--profile FILE]

For each database, on a fresh database every time, with the same generated stream (about five
events per order, see ``recoverydesk.sandbox.traffic``):

(a) desk: ``Desk.ingest`` in batches of ``--batch``, timing validation (``parse_event``) too,
    as ``recoverydesk ingest`` does;
(b) baseline: a plain batched INSERT of the same column values into ``events`` only (SQLAlchemy
    Core executemany, one transaction per batch, rows built before the clock starts);
(c) HTTP: ``POST /api/v1/events`` in batches of 100 to a uvicorn server on localhost, one
    client in sequence (skipped when the API is not there yet).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.persistence.database import make_engine
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.persistence.tables import events as events_table
from recoverydesk.sandbox.traffic import generate_orders
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import IncomingEvent, Merchant
from recoverydesk.telemetry import configure_logging

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/recoverydesk_bench"
START = datetime(2026, 11, 2, tzinfo=UTC)
HTTP_BATCH = 100
Event = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    database: str
    measure: str
    events: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _batches(items: Sequence[Event], size: int) -> Iterator[Sequence[Event]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


# --- databases ---------------------------------------------------------------------------------


def _pg_admin(url: str) -> psycopg.Connection[Any]:
    parts = make_url(url)
    return psycopg.connect(
        host=parts.host or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=3,
    )


def pg_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        with _pg_admin(url) as admin:
            admin.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return None


@contextmanager
def fresh_database(url: str | None, workdir: Path, name: str) -> Iterator[str]:
    """A new empty database with the desk's schema; SQLite when ``url`` is None."""
    if url is None:
        sqlite_url = f"sqlite:///{workdir / f'{name}.db'}"
        upgrade(sqlite_url)
        yield sqlite_url
        return
    database = make_url(url).database or "recoverydesk_bench"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
    with _pg_admin(url) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        upgrade(url)
        yield url
    finally:
        with _pg_admin(url) as admin:
            admin.execute(drop)


def open_desk(url: str) -> tuple[Desk, Merchant]:
    desk = bootstrap(Settings(database_url=url))
    with desk.uow() as uow:
        merchant = uow.merchants.ensure("bench", time_zone="UTC", now=desk.clock.now())
        uow.commit()
    return desk, merchant


# --- the measures ------------------------------------------------------------------------------


def measure_desk(url: str, stream: Sequence[Event], batch: int) -> tuple[Figure, IngestReport]:
    """(a) Desk.ingest in batches, validation included."""
    desk, merchant = open_desk(url)
    total, parsing = IngestReport(), 0.0
    try:
        started = time.perf_counter()
        for chunk in _batches(stream, batch):
            before = time.perf_counter()
            items = [IncomingEvent(parse_event(raw), json.dumps(raw)) for raw in chunk]
            parsing += time.perf_counter() - before
            total.add(desk.ingest(merchant, items))
        elapsed = time.perf_counter() - started
    finally:
        desk.close()
    if total.stored != len(stream):
        raise SystemExit(f"desk stored {total.stored} of {len(stream)} events")
    note = f"validation {parsing / elapsed:.0%} of the time; {total.cases_opened} cases opened"
    return Figure(_kind(url), "(a) desk ingest", len(stream), elapsed, note), total


def _baseline_rows(stream: Sequence[Event], merchant_id: int) -> list[dict[str, Any]]:
    received_at = datetime.now(UTC)
    return [
        {
            "merchant_id": merchant_id,
            "event_id": raw["id"],
            "source": raw["source"],
            "type": raw["type"],
            "order_ref": raw["order"]["ref"],
            "occurred_at": datetime.fromisoformat(raw["occurred_at"]),
            "received_at": received_at,
            "payload": raw,
            "raw": json.dumps(raw),
        }
        for raw in stream
    ]


def measure_baseline(url: str, stream: Sequence[Event], batch: int) -> Figure:
    """(b) A plain batched INSERT of the same rows into ``events`` only."""
    desk, merchant = open_desk(url)
    desk.close()
    rows = _baseline_rows(stream, merchant.id)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        for first in range(0, len(rows), batch):
            with engine.begin() as connection:
                connection.execute(insert(events_table), rows[first : first + batch])
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    return Figure(_kind(url), "(b) baseline insert", len(stream), elapsed, "events table only")


def _kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def http_benchmark_unavailable(reason: str = "") -> None:
    """Stand-in for (c) while ``recoverydesk.entrypoints.api.app.create_app`` is missing."""
    print("HTTP benchmark: API not available yet" + (f" ({reason})" if reason else ""))


def _api_factory() -> Callable[[Desk], Any] | None:
    if importlib.util.find_spec("recoverydesk.entrypoints.api.app") is None:
        return None
    try:
        from recoverydesk.entrypoints.api import app as api
    except ImportError as error:
        http_benchmark_unavailable(str(error))
        return None
    factory: Callable[[Desk], Any] | None = getattr(api, "create_app", None)
    return factory


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free localhost port in a thread; yields its base URL."""
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _api_token(desk: Desk) -> str:
    from recoverydesk.services.merchants import create_token

    with desk.uow() as uow:
        token = create_token(uow, clock=desk.clock, merchant_name="bench", role="agent")
        uow.commit()
    return token


def measure_http(url: str, stream: Sequence[Event]) -> Figure | None:
    """(c) POST /api/v1/events in batches of 100, one client in sequence."""
    import httpx

    factory = _api_factory()
    if factory is None:
        http_benchmark_unavailable()
        return None
    desk, _ = open_desk(url)
    headers = {"authorization": f"Bearer {_api_token(desk)}", "content-type": "application/json"}
    bodies = [json.dumps(list(chunk)) for chunk in _batches(stream, HTTP_BATCH)]
    try:
        with _serve(factory(desk)) as base, httpx.Client(base_url=base, timeout=120) as client:
            started = time.perf_counter()
            for body in bodies:
                client.post("/api/v1/events", content=body, headers=headers).raise_for_status()
            elapsed = time.perf_counter() - started
    finally:
        desk.close()
    note = f"{len(bodies)} requests, {1000 * elapsed / len(bodies):.1f} ms each"
    return Figure(_kind(url), f"(c) HTTP POST x{HTTP_BATCH}", len(stream), elapsed, note)


# --- the run -----------------------------------------------------------------------------------


def run_backend(
    url: str | None, stream: Sequence[Event], args: argparse.Namespace, workdir: Path
) -> list[Figure]:
    """The three measures on one database server, each on a fresh database."""
    figures = []
    with fresh_database(url, workdir, "desk") as target:
        figures.append(measure_desk(target, stream, args.batch)[0])
    with fresh_database(url, workdir, "baseline") as target:
        figures.append(measure_baseline(target, stream, args.batch))
    if not args.no_http:
        with fresh_database(url, workdir, "http") as target:
            http = measure_http(target, stream)
            figures += [http] if http else []
    return figures


def print_table(figures: Sequence[Figure]) -> None:
    baselines = {f.database: f.rate for f in figures if f.measure.startswith("(b)")}
    desks = {f.database: f.rate for f in figures if f.measure.startswith("(a)")}
    head = f"{'database':<11}{'measure':<22}{'events':>9}{'seconds':>9}{'events/s':>10}"
    print(f"\n{head}{'÷ baseline':>12}{'÷ desk':>9}  note")
    print("-" * (len(head) + 40))
    for f in figures:
        vs_base = f.rate / baselines[f.database] if baselines.get(f.database) else 0.0
        vs_desk = f.rate / desks[f.database] if desks.get(f.database) else 0.0
        print(
            f"{f.database:<11}{f.measure:<22}{f.events:>9,}{f.seconds:>9.2f}{f.rate:>10,.0f}"
            f"{vs_base:>11.3f}x{vs_desk:>8.2f}x  {f.note}"
        )


def profile_desk(stream: Sequence[Event], batch: int, workdir: Path, out: Path) -> None:
    """(a) on SQLite again, under cProfile; prints the top functions by cumulative time."""
    with fresh_database(None, workdir, "profile") as url:
        profiler = cProfile.Profile()
        profiler.enable()
        figure, _ = measure_desk(url, stream, batch)
        profiler.disable()
    profiler.dump_stats(out)
    print(f"\nprofile of (a) on SQLite ({figure.rate:,.0f} events/s under cProfile) -> {out}")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="a postgresql+psycopg:// URL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-http", action="store_true", help="skip (c)")
    parser.add_argument("--profile", type=Path, help="also profile (a) on SQLite into FILE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("warning")
    started = time.perf_counter()
    stream = generate_orders(orders=args.orders, seed=args.seed, start=START)
    print(
        f"generated {len(stream):,} events for {args.orders:,} orders "
        f"({len(stream) / max(args.orders, 1):.2f} per order) "
        f"in {time.perf_counter() - started:.1f} s; batches of {args.batch}"
    )
    backends: list[str | None] = [None]
    if not args.no_postgres:
        problem = pg_reachable(args.postgres)
        if problem:
            print(f"PostgreSQL skipped: {args.postgres} is unreachable ({problem})")
        else:
            backends.append(args.postgres)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="rd-bench-") as workdir:
        for url in backends:
            print(f"measuring {_kind(url or 'sqlite')} ...", flush=True)
            figures += run_backend(url, stream, args, Path(workdir))
        print_table(figures)
        if args.profile:
            profile_desk(stream, args.batch, Path(workdir), args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
