"""Triage at scale: queue pages, timer sweeps and timer lateness, on SQLite and PostgreSQL.

    .venv/bin/python bench/triage_bench.py [--cases 1000000] [--open 100000] [--timers 100000]
                                           [--window 60] [--workers 2] [--postgres URL]
                                           [--no-postgres] [--no-sqlite] [--quick]

For each database, on a fresh database (``upgrade()`` first, so the indexes are the real ones),
``--cases`` cases are bulk-loaded (SQLite: executemany on the driver; PostgreSQL: COPY) over four
merchants, the six default queues and three priorities, ``--open`` of them open, with SLA clocks
made by ``SlaClock`` (``to_dict``), deadlines, ``due_sort`` and ``risk_cents``; plus one pending
future timer per open case, as a live desk has. Then:

(a) queue page: ``SqlCaseStore.search(merchant, CaseFilter(queue=..., open_only=True, limit=50,
    sort="priority", offset=...))`` in a read unit of work, with ``case_to_dict`` and
    ``json.dumps`` of the body, as ``GET /api/v1/cases`` does; the time of its ``count(*)`` is
    taken from the driver calls. Baseline: the same ``SELECT ... ORDER BY ... LIMIT 50`` as raw
    SQL on a bare driver connection (the open statuses as literals, matching the partial index);
(b) timer sweep: ``JobRunner.run_due(limit=--sweep-batch)`` claiming and running due
    ``sla.check`` jobs (each fires a real clock stage on a real case), and a sweep with nothing
    due. Baselines: the same sweep of no-op jobs (claim and complete only), and the bare SELECT
    of due jobs;
(c) timer lateness: ``--timers`` ``sla.check`` timers due over ``--window`` seconds, run by
    ``--workers`` ``recoverydesk worker`` processes with the default settings; lateness is the
    job's ``finished_at`` (and its attempt's ``started_at``) minus ``due_at``. Baseline: the same
    number of no-op timers by the same worker loop (``run_worker``) with a no-op handler.

The merchants get a configuration with three members per queue, so a first-touch breach really
reassigns the case; no contact has an email or a chat webhook, so no notification jobs follow
(they would be jobs of their own). Closed cases reuse 1,000 prebuilt (stopped) clock documents.
PostgreSQL gets VACUUM ANALYZE after the load (autovacuum would); SQLite no ANALYZE (the desk
never runs it). (c) stops ``--timer-timeout`` seconds after the window: timers not run by then
count with their lateness so far, so the percentiles are lower bounds (shown ``>=``), and the
note projects the full figures from the measured rate.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, Table, event, func, insert, select
from sqlalchemy.engine import make_url

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.calendar import BusinessCalendar
from recoverydesk.domain.sla import STAGE_SHARE, WALL, ClockName, SlaClock, Stage
from recoverydesk.domain.triage import Priority
from recoverydesk.persistence.case_store import CaseFilter
from recoverydesk.persistence.database import make_engine
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.persistence.tables import cases as cases_table
from recoverydesk.persistence.tables import job_attempts as attempts_table
from recoverydesk.persistence.tables import jobs as jobs_table
from recoverydesk.services.calendars import build_calendar
from recoverydesk.services.merchants import MerchantSettings
from recoverydesk.services.policy import DEFAULT_QUEUES
from recoverydesk.services.ports import Job, JobRequest, UnitOfWork
from recoverydesk.services.triage import SLA_CHECK
from recoverydesk.services.views import case_to_dict
from recoverydesk.telemetry import configure_logging

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/recoverydesk_triage_bench"
NOOP = "bench.noop"
PAGE = 50
PAGE_AIM_MS = 50.0
LATENESS_AIM_S = 1.0
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
CENT = Decimal("0.01")

FULL = {"cases": 1_000_000, "open": 100_000, "timers": 100_000, "window": 60.0}
FULL |= {"samples": 200, "sweeps": 200, "timer_timeout": 120.0}
QUICK = {"cases": 50_000, "open": 5_000, "timers": 5_000, "window": 3.0}
QUICK |= {"samples": 20, "sweeps": 10, "timer_timeout": 3.0}

MERCHANTS = (("acme", 50), ("globex", 25), ("initech", 15), ("umbrella", 10))
CATEGORIES = (
    ("payment_failed", 12),
    ("fraud_hold", 6),
    ("address_invalid", 8),
    ("inventory_mismatch", 10),
    ("split_shipment", 6),
    ("late_shipment_risk", 8),
    ("wms_exception", 5),
    ("change_request", 8),
    ("delivery_exception", 12),
    ("refund_request", 12),
    ("concession_request", 3),
    ("chargeback", 5),
    ("drift", 5),
)
PRIORITIES = (("P1", 10), ("P2", 30), ("P3", 60))
OPEN_STATUSES = (
    ("new", 30),
    ("triaged", 30),
    ("in_progress", 25),
    ("waiting_customer", 10),
    ("waiting_partner", 5),
)
CLASSIFICATIONS = ("fixable_now", "needs_customer_decision", "must_cancel")
OUTCOMES = ("released", "shipped", "refunded", "cancelled", "reshipped", "concession")
# The (c) timers fire this stage of the first-touch clock: most warnings, some breaches (which
# reassign the case), a few escalations.
TIMER_STAGES = ((Stage.WARNING, 60), (Stage.BREACH, 30), (Stage.ESCALATION, 10))
# (a): queues of the largest merchant, the first page and page 10, and a small merchant's queue.
PAGE_TARGETS = (
    ("acme", "pre_fulfilment", 0),
    ("acme", "pre_fulfilment", 9 * PAGE),
    ("acme", "refunds", 0),
    ("acme", "refunds", 9 * PAGE),
    ("umbrella", "chargebacks", 0),
)
RAW_PAGE = (
    "SELECT * FROM cases WHERE merchant_id = ? AND queue = ? AND status IN "
    "('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner') "
    "ORDER BY priority, due_sort, risk_cents DESC, opened_at, id LIMIT 50 OFFSET ?"
)
RAW_DUE = "SELECT id FROM jobs WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?"
JOB_COLUMNS = (
    "merchant_id",
    "kind",
    "key",
    "payload",
    "status",
    "due_at",
    "attempts",
    "max_attempts",
    "created_at",
    "updated_at",
)
Row = tuple[Any, ...]


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    database: str
    measure: str
    samples: int
    p50: float
    high: float  # p95 (pages, sweeps) or p99 (lateness)
    base_p50: float | None
    base_high: float | None
    unit: str  # "ms" or "s"
    high_label: str = "p95"
    aim: str = ""
    met: bool | None = None
    note: str = ""
    censored: bool = False  # some samples are lower bounds: the figures are too (shown with >=)
    base_censored: bool = False


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def _ms(values: Sequence[float]) -> list[float]:
    return [1000 * v for v in values]


def _show(value: float | None, unit: str, *, censored: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    shown = f"{value:,.1f} {unit}" if unit == "ms" else f"{value:,.2f} {unit}"
    return f">={shown}" if censored else shown


def print_table(figures: Sequence[Figure]) -> None:
    head = (
        f"{'database':<11}{'measure':<34}{'n':>8}{'p50':>13}{'p95/p99':>18}"
        f"{'base p50':>13}{'base p95/99':>18}{'÷ base':>8}  {'aim':<22}"
    )
    print(f"\n{head}note")
    print("-" * (len(head) + 60))
    for f in figures:
        ratio = f.p50 / f.base_p50 if f.base_p50 else math.nan
        if math.isnan(ratio) or f.base_censored:
            ratio_text = "-"
        else:
            ratio_text = f"{'>=' if f.censored else ''}{ratio:.1f}x"
        high = f"{f.high_label} {_show(f.high, f.unit, censored=f.censored)}"
        base_p50 = _show(f.base_p50, f.unit, censored=f.base_censored)
        base_high = "-"
        if f.base_high is not None:
            base_high = f"{f.high_label} {_show(f.base_high, f.unit, censored=f.base_censored)}"
        aim = f"{f.aim}: {'met' if f.met else 'MISSED'}" if f.aim else ""
        print(
            f"{f.database:<11}{f.measure:<34}{f.samples:>8,}"
            f"{_show(f.p50, f.unit, censored=f.censored):>13}{high:>18}{base_p50:>13}"
            f"{base_high:>18}{ratio_text:>8}  {aim:<22}{f.note}"
        )
    print(
        "÷ base = p50 ÷ baseline p50; >= marks lower bounds (timers not run when stopped); "
        "aims: queue page p95 < 50 ms, timer lateness p99 < 1 s"
    )


# --- databases ---------------------------------------------------------------------------------


def _kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _pg_connect(url: str, *, database: str | None = None) -> psycopg.Connection[Any]:
    parts = make_url(url)
    return psycopg.connect(
        host=parts.host or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname=database or parts.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def pg_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        with _pg_connect(url, database="postgres") as admin:
            admin.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return None


@contextmanager
def fresh_database(url: str | None, workdir: Path) -> Iterator[str]:
    """A new empty database with the desk's schema; SQLite when ``url`` is None."""
    if url is None:
        sqlite_url = f"sqlite:///{workdir / 'triage.db'}"
        upgrade(sqlite_url)
        yield sqlite_url
        return
    database = make_url(url).database or "recoverydesk_triage_bench"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
    with _pg_connect(url, database="postgres") as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        upgrade(url)
        yield url
    finally:
        with _pg_connect(url, database="postgres") as admin:
            admin.execute(drop)


class RawDb:
    """A bare driver connection (autocommit): the baselines, EXPLAIN and progress polls."""

    def __init__(self, url: str) -> None:
        self.kind = _kind(url)
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        if self.kind == "sqlite":
            path = make_url(url).database or ""
            self._sqlite = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._sqlite.execute("PRAGMA busy_timeout=30000")
        else:
            self._pg = _pg_connect(url)

    def rows(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        if self._sqlite is not None:
            return [tuple(r) for r in self._sqlite.execute(query, params).fetchall()]
        assert self._pg is not None
        with self._pg.cursor() as cursor:
            if isinstance(params, list | tuple):
                query = query.replace("?", "%s")
            cursor.execute(query, params or None)  # type: ignore[arg-type]
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def stamp(self, moment: datetime) -> Any:
        return _sqlite_time(moment) if self.kind == "sqlite" else moment

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()


def _sqlite_time(moment: datetime | None) -> str | None:
    """The text ``UTCDateTime`` stores on SQLite."""
    if moment is None:
        return None
    assert moment.utcoffset() == timedelta(0), moment
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def _same(value: Any) -> Any:
    return value


def _sqlite_money(value: Decimal) -> str:
    return str(value)


def bulk_load(url: str, table: Table, columns: Sequence[str], chunks: Iterable[list[Row]]) -> int:
    """Rows in ``columns`` order into ``table``: executemany on SQLite, COPY on PostgreSQL."""
    loaded = 0
    if _kind(url) == "sqlite":
        engine = make_engine(url)
        compiled = insert(table).compile(dialect=engine.dialect, column_keys=list(columns))
        assert list(compiled.positiontup or []) == list(columns), compiled.positiontup
        statement = str(compiled)
        try:
            with engine.connect() as connection:
                for chunk in chunks:
                    if not chunk:
                        continue
                    with connection.begin():
                        connection.exec_driver_sql("PRAGMA cache_size=-400000")
                        connection.exec_driver_sql(statement, chunk)  # type: ignore[arg-type]
                    loaded += len(chunk)
        finally:
            engine.dispose()
        return loaded
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with (
        _pg_connect(url) as pg,
        pg.transaction(),
        pg.cursor() as cursor,
        cursor.copy(copy_sql) as copy,
    ):
        for chunk in chunks:
            for row in chunk:
                copy.write_row(row)
            loaded += len(chunk)
    return loaded


def after_load(url: str) -> None:
    """PostgreSQL: statistics and the visibility map, as autovacuum gives a settled desk.

    SQLite: nothing. The desk never runs ANALYZE, and statistics taken now (every job still
    pending) would mislead the planner later: the claim's OR query becomes a full scan.
    """
    if _kind(url) == "sqlite":
        return
    raw = RawDb(url)
    try:
        raw.rows("VACUUM ANALYZE cases")
        raw.rows("VACUUM ANALYZE jobs")
        raw.rows("SELECT setval(pg_get_serial_sequence('cases', 'id'), max(id)) FROM cases")
    finally:
        raw.close()


# --- the data ----------------------------------------------------------------------------------


def bench_settings() -> MerchantSettings:
    """The default policy, with three members in every queue (so breaches reassign)."""
    queues, members = [], []
    for index, queue in enumerate(DEFAULT_QUEUES):
        names = [f"agent_{3 * index + k + 1}" for k in range(3)]
        members += [{"name": name} for name in names]
        queues.append({**queue.model_dump(mode="json"), "members": names})
    return MerchantSettings.model_validate({"members": members, "queues": queues})


def setup_merchants(url: str) -> dict[str, int]:
    settings = bench_settings()
    desk = bootstrap(Settings(database_url=url))
    ids = {}
    try:
        with desk.uow() as uow:
            for name, _ in MERCHANTS:
                merchant = uow.merchants.ensure(name, time_zone="UTC", now=desk.clock.now())
                uow.merchants.apply_config(
                    merchant,
                    source="bench",
                    content=settings.model_dump_json(),
                    settings=settings.model_dump(mode="json", by_alias=True),
                    time_zone="UTC",
                    now=desk.clock.now(),
                )
                ids[name] = merchant.id
            uow.commit()
    finally:
        desk.close()
    return ids


class Weighted:
    def __init__(self, rng: random.Random, pairs: Sequence[tuple[Any, int]]) -> None:
        self._rng, self._values = rng, [value for value, _ in pairs]
        total, running = sum(w for _, w in pairs), 0
        self._edges = []
        for _, weight in pairs:
            running += weight
            self._edges.append(running / total)

    def pick(self) -> Any:
        return self._values[
            min(bisect.bisect(self._edges, self._rng.random()), len(self._edges) - 1)
        ]


@dataclass(frozen=True, slots=True)
class OpenCase:
    id: int
    merchant_id: int
    second_clock: str  # operational (deadline queues) or resolution
    stage: Stage  # the first-touch stage that is due for the (c) timers
    paused: bool  # waiting on the customer: its pausable clocks do not run


@dataclass
class CaseFactory:
    """Cases as rows in table column order; open ones get clocks whose stages are due at ``base``:
    the first-touch clock at its (c) stage, the second clock at its warning (for (b))."""

    count: int
    open_count: int
    merchant_ids: dict[str, int]
    base: datetime
    seed: int
    stamp: Callable[[datetime | None], Any] = _same
    money: Callable[[Decimal], Any] = _same
    opens: list[OpenCase] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311
        self.settings = bench_settings()
        self.calendar: BusinessCalendar = build_calendar(self.settings.calendar)
        self._merchant = Weighted(self.rng, [(self.merchant_ids[n], w) for n, w in MERCHANTS])
        self._category = Weighted(self.rng, CATEGORIES)
        self._priority = Weighted(self.rng, PRIORITIES)
        self._status = Weighted(self.rng, OPEN_STATUSES)
        self._timer_stage = Weighted(self.rng, TIMER_STAGES)
        self._queue_of = {code: self.settings.queue_for(code) for code, _ in CATEGORIES}
        self._members = {q.name: q.members for q in self.settings.queues}
        self._open_ids = self._choose_open()
        self._closed_clocks = [self._closed_clock_doc() for _ in range(1000)]

    def _choose_open(self) -> set[int]:
        """Mostly recent cases are open; a fifth are older stragglers."""
        recent = range(max(1, self.count - 3 * self.open_count + 1), self.count + 1)
        chosen = set(self.rng.sample(recent, min(len(recent), self.open_count * 4 // 5)))
        older = range(1, recent.start)
        chosen |= set(self.rng.sample(older, min(len(older), self.open_count - len(chosen))))
        spare = [i for i in recent if i not in chosen]
        chosen |= set(self.rng.sample(spare, self.open_count - len(chosen)))
        return chosen

    def _closed_clock_doc(self) -> str:
        opened = self.base - timedelta(days=self.rng.uniform(1, 365))
        touched = opened + timedelta(minutes=self.rng.uniform(5, 600))
        closed = touched + timedelta(hours=self.rng.uniform(1, 96))
        first = self._start(ClockName.FIRST_TOUCH, opened, timedelta(hours=4), business=True)
        first.stop(touched, self.calendar)
        second = self._start(ClockName.RESOLUTION, opened, timedelta(days=2), business=True)
        second.stop(closed, self.calendar)
        return json.dumps({c.name.value: c.to_dict() for c in (first, second)})

    def _start(
        self, name: ClockName, at: datetime, target: timedelta, *, business: bool
    ) -> SlaClock:
        return SlaClock.start(
            name,
            at=at,
            target=target,
            business=business,
            pausable=business,
            calendar=self.calendar if business else WALL,
        )

    def chunks(self, size: int) -> Iterator[list[Row]]:
        for first in range(1, self.count + 1, size):
            yield [self._row(i) for i in range(first, min(first + size, self.count + 1))]

    def _row(self, case_id: int) -> Row:
        rng, stamp = self.rng, self.stamp
        merchant_id, category = self._merchant.pick(), self._category.pick()
        queue, priority = self._queue_of[category], self._priority.pick()
        age = timedelta(days=365 * (1 - case_id / self.count), hours=6 + rng.random())
        opened = self.base - age
        owner: str | None = rng.choice(self._members[queue])
        sla = self.settings.sla_for(queue)
        risk_cents = rng.randrange(0, 250_000)
        escalations = "[]"
        if case_id in self._open_ids:
            status, closed, touched, outcome = self._status.pick(), None, None, None
            owner = owner if rng.random() < 0.7 else None
            clocks, deadline, escalations = self._open_clocks(
                case_id,
                merchant_id=merchant_id,
                queue=queue,
                priority=priority,
                opened=opened,
                status=status,
            )
        else:
            status = "closed" if rng.random() < 0.85 else "resolved"
            touched = opened + timedelta(minutes=rng.uniform(5, 600))
            closed = touched + timedelta(hours=rng.uniform(1, 96))
            outcome = rng.choice(OUTCOMES)
            clocks = self._closed_clocks[rng.randrange(len(self._closed_clocks))]
            deadline = opened + timedelta(hours=rng.uniform(12, 120)) if sla.deadline else None
        return (
            case_id,
            merchant_id,
            f"ORD-{case_id:08d}",
            category,
            status,
            None,
            rng.choice(CLASSIFICATIONS),
            priority,
            queue,
            outcome,
            None,
            None,
            stamp(opened),
            stamp(closed),
            f"evt-{case_id}",
            f'["evt-{case_id}"]',
            stamp(opened),
            stamp(closed or opened),
            "",
            "{}",
            owner,
            1,
            stamp(deadline),
            stamp(deadline or FAR_FUTURE),
            self.money((Decimal(risk_cents) / 100).quantize(CENT)),
            risk_cents,
            stamp(touched),
            clocks,
            escalations,
        )

    def _open_clocks(
        self,
        case_id: int,
        *,
        merchant_id: int,
        queue: str,
        priority: str,
        opened: datetime,
        status: str,
    ) -> tuple[str, datetime | None, str]:
        sla, base, calendar = self.settings.sla_for(queue), self.base, self.calendar
        stage = self._timer_stage.pick()
        target = sla.first_touch.target(Priority(priority))
        first = SlaClock(
            ClockName.FIRST_TOUCH,
            opened,
            target,
            business=True,
            pausable=True,
            consumed=target * STAGE_SHARE[stage],
            running_since=base,
        )
        earlier = [s for s in Stage if STAGE_SHARE[s] < STAGE_SHARE[stage]]
        first.fired = {s.value: base - timedelta(hours=1) for s in earlier}
        first.due_at = first.moment(Stage.BREACH, calendar)
        escalations = [
            {
                "key": f"esc:bench:{case_id}:first_touch:{s.value}",
                "clock": "first_touch",
                "stage": s.value,
                "due_at": (base - timedelta(hours=1)).isoformat(),
                "fired_at": (base - timedelta(hours=1)).isoformat(),
                "to": "ops_lead",
            }
            for s in earlier
        ]
        deadline = None
        if sla.deadline is not None:  # a wall clock to the deadline, its warning due at base
            budget = timedelta(seconds=math.ceil((base - opened).total_seconds() / 0.75))
            second = self._start(ClockName.OPERATIONAL, opened, budget, business=False)
            deadline = opened + budget
        else:  # business time, three quarters used, running again since base
            budget = sla.resolution_within or timedelta(days=1)
            second = SlaClock(
                ClockName.RESOLUTION,
                opened,
                budget,
                business=True,
                pausable=True,
                consumed=budget * STAGE_SHARE[Stage.WARNING],
                running_since=base,
            )
            second.due_at = second.moment(Stage.BREACH, calendar)
        paused = status == "waiting_customer"
        if paused:
            for clock in (first, second):
                clock.pause(base, calendar)
        self.opens.append(OpenCase(case_id, merchant_id, second.name.value, stage, paused))
        clocks = json.dumps({c.name.value: c.to_dict() for c in (first, second)})
        return clocks, deadline, json.dumps(escalations)


def job_row(request: JobRequest, now: datetime, stamp: Callable[[datetime | None], Any]) -> Row:
    return (
        request.merchant_id,
        request.kind,
        request.key,
        json.dumps(request.payload),
        "pending",
        stamp(request.due_at),
        0,
        request.max_attempts,
        stamp(now),
        stamp(now),
    )


def sla_timer(case: OpenCase, clock: str, stage: Stage, due: datetime) -> JobRequest:
    return JobRequest(
        merchant_id=case.merchant_id,
        kind=SLA_CHECK,
        key=f"sla:{case.id}:{clock}:{stage.value}:{due.isoformat()}",
        due_at=due,
        payload={"case_id": case.id, "clock": clock, "stage": stage.value},
    )


def load_data(url: str, args: argparse.Namespace) -> tuple[CaseFactory, str]:
    merchant_ids = setup_merchants(url)
    sqlite = _kind(url) == "sqlite"
    factory = CaseFactory(
        count=args.cases,
        open_count=args.open,
        merchant_ids=merchant_ids,
        base=datetime.now(UTC),
        seed=args.seed,
        stamp=_sqlite_time if sqlite else _same,
        money=_sqlite_money if sqlite else _same,
    )
    started = time.perf_counter()
    columns = [c.name for c in cases_table.columns]
    loaded = bulk_load(url, cases_table, columns, factory.chunks(20_000))
    case_seconds = time.perf_counter() - started
    # One pending future timer per open case (the next stage), as a live desk has.
    now = datetime.now(UTC)
    future = [
        job_row(
            sla_timer(case, case.second_clock, Stage.BREACH, now + timedelta(days=1, seconds=i)),
            now,
            factory.stamp,
        )
        for i, case in enumerate(factory.opens)
    ]
    bulk_load(url, jobs_table, JOB_COLUMNS, [future])
    after_load(url)
    elapsed = time.perf_counter() - started
    note = (
        f"loaded {loaded:,} cases ({len(factory.opens):,} open) in {case_seconds:.1f} s "
        f"({loaded / case_seconds:,.0f}/s), {len(future):,} future timers; "
        f"ready in {elapsed:.1f} s"
    )
    return factory, note


# --- (a) queue pages ---------------------------------------------------------------------------


class StatementTimer:
    """Times the driver calls of an engine; keeps the last count and page statements."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self.count_seconds, self._started = engine, 0.0, 0.0
        self.captured: dict[str, tuple[str, Any]] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        elapsed = time.perf_counter() - self._started
        if "count(*)" in statement:
            self.count_seconds += elapsed
            self.captured["count"] = (statement, parameters)
        elif "FROM cases" in statement and "ORDER BY" in statement:
            self.captured["page"] = (statement, parameters)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)
        event.remove(self._engine, "after_cursor_execute", self._after)


@dataclass(frozen=True)
class PageTarget:
    merchant: str
    merchant_id: int
    queue: str
    offset: int


def api_page(desk: Desk, target: PageTarget) -> tuple[int, int]:
    """What ``GET /api/v1/cases?queue=..&state=open&sort=priority&limit=50`` does."""
    filters = CaseFilter(
        queue=target.queue, open_only=True, limit=PAGE, sort="priority", offset=target.offset
    )
    with desk.reader() as uow:
        found, total = uow.cases.search(target.merchant_id, filters)
    body = {"cases": [case_to_dict(c) for c in found], "total": total, "limit": PAGE}
    json.dumps(body, default=str)
    return len(found), total


def measure_pages(
    desk: Desk, url: str, merchant_ids: dict[str, int], samples: int, cap: float
) -> tuple[list[Figure], dict[str, tuple[str, Any]]]:
    targets = [PageTarget(m, merchant_ids[m], q, o) for m, q, o in PAGE_TARGETS]
    timer, raw = StatementTimer(desk.engine), RawDb(url)
    times: dict[PageTarget, list[float]] = {t: [] for t in targets}
    counts: dict[PageTarget, list[float]] = {t: [] for t in targets}
    bases: dict[PageTarget, list[float]] = {t: [] for t in targets}
    spent: dict[PageTarget, float] = dict.fromkeys(targets, 0.0)
    totals: dict[PageTarget, int] = {}
    try:
        for target in targets:  # warm the caches
            for _ in range(3):
                api_page(desk, target)
                raw.rows(RAW_PAGE, (target.merchant_id, target.queue, target.offset))
        for _ in range(samples):
            for target in targets:
                if spent[target] > cap:
                    continue
                timer.count_seconds = 0.0
                started = time.perf_counter()
                rows, totals[target] = api_page(desk, target)
                elapsed = time.perf_counter() - started
                times[target].append(elapsed)
                counts[target].append(timer.count_seconds)
                started = time.perf_counter()
                found = raw.rows(RAW_PAGE, (target.merchant_id, target.queue, target.offset))
                bases[target].append(time.perf_counter() - started)
                spent[target] += elapsed + bases[target][-1]
                assert len(found) == rows, (len(found), rows)
        api_page(desk, targets[1])  # the statements shown by EXPLAIN: page 10 of the big queue
        captured = dict(timer.captured)
    finally:
        timer.close()
        raw.close()
    figures = []
    for target in targets:
        ms, count_ms = _ms(times[target]), _ms(counts[target])
        share = sum(count_ms) / sum(ms) if ms else 0.0
        p95 = percentile(ms, 0.95)
        figures.append(
            Figure(
                _kind(url),
                f"(a) page {target.merchant}/{target.queue} @{target.offset}",
                len(ms),
                percentile(ms, 0.5),
                p95,
                percentile(_ms(bases[target]), 0.5),
                percentile(_ms(bases[target]), 0.95),
                "ms",
                aim="p95 < 50 ms",
                met=p95 < PAGE_AIM_MS,
                note=(
                    f"count(*) p50 {percentile(count_ms, 0.5):.1f} / p95 "
                    f"{percentile(count_ms, 0.95):.1f} ms = {share:.0%} of the page; "
                    f"{totals[target]:,} open in queue"
                ),
            )
        )
    return figures, captured


def explain(url: str, captured: dict[str, tuple[str, Any]]) -> list[str]:
    """The plans of the page and count statements the desk sent, and of the raw baseline."""
    raw, lines = RawDb(url), []
    big = PAGE_TARGETS[1]
    try:
        for name, (statement, params) in sorted(captured.items(), key=lambda kv: kv[0] != "page"):
            lines.append(
                f"--- {_kind(url)}: {name} statement of search() ({big[0]}/{big[1]} @{big[2]})"
            )
            lines.append(statement.strip())
            lines += _plan(raw, statement, params)
        if raw.kind == "sqlite":
            merchant = captured["page"][1][0] if "page" in captured else 1
            lines.append("--- sqlite: the raw baseline (open statuses as literals)")
            lines += _plan(raw, RAW_PAGE, (merchant, big[1], big[2]))
    finally:
        raw.close()
    return lines


def _plan(raw: RawDb, statement: str, params: Any) -> list[str]:
    if raw.kind == "sqlite":
        rows = raw.rows("EXPLAIN QUERY PLAN " + statement, params)
        depth: dict[int, int] = {0: 0}
        out = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, 0) + 1
            out.append("  " * depth[node] + str(detail))
        return out
    rows = raw.rows("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
    return [f"  {r[0]}" for r in rows]


# --- (b) timer sweeps --------------------------------------------------------------------------


def _noop(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """A job that does nothing: the queue's own cost."""


def _enqueue(desk: Desk, requests: Sequence[JobRequest]) -> None:
    for first in range(0, len(requests), 1000):
        with desk.uow() as uow:
            uow.jobs.enqueue(requests[first : first + 1000], now=desk.clock.now())
            uow.commit()


def _sweeps(desk: Desk, count: int, batch: int, expect: int) -> list[float]:
    runner = desk.job_runner("bench-sweep")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        stats = runner.run_due(limit=batch)
        times.append(time.perf_counter() - started)
        ran = stats.done + stats.failed + stats.lost
        if ran != expect or stats.failed:
            raise SystemExit(f"a sweep ran {ran} jobs ({stats}), expected {expect}")
    return times


def measure_sweeps(
    desk: Desk, url: str, factory: CaseFactory, sweeps: int, batch: int
) -> list[Figure]:
    rng = random.Random(factory.seed + 1)  # noqa: S311
    chosen = rng.sample(factory.opens, min(len(factory.opens), sweeps * batch))
    due = desk.clock.now() - timedelta(seconds=1)
    _enqueue(desk, [sla_timer(c, c.second_clock, Stage.WARNING, due) for c in chosen])
    sweeps = len(chosen) // batch
    real = _ms(_sweeps(desk, sweeps, batch, batch))
    desk.handlers[NOOP] = _noop
    due = desk.clock.now() - timedelta(seconds=1)
    noops = [
        JobRequest(merchant_id=c.merchant_id, kind=NOOP, key=f"noop:b:{i}", due_at=due)
        for i, c in enumerate(chosen)
    ]
    _enqueue(desk, noops)
    noop = _ms(_sweeps(desk, sweeps, batch, batch))
    empty, bare, raw = [], [], RawDb(url)
    try:
        for _ in range(sweeps):
            empty += _ms(_sweeps(desk, 1, batch, 0))
            started = time.perf_counter()
            raw.rows(RAW_DUE, (raw.stamp(datetime.now(UTC)), batch))
            bare.append(1000 * (time.perf_counter() - started))
    finally:
        raw.close()
    paused = sum(c.paused for c in chosen)
    db = _kind(url)
    return [
        Figure(
            db,
            f"(b) sweep of {batch} due sla.check",
            len(real),
            percentile(real, 0.5),
            percentile(real, 0.95),
            percentile(noop, 0.5),
            percentile(noop, 0.95),
            "ms",
            note=(
                f"{percentile(real, 0.5) / batch:.2f} ms/job; baseline: {batch} no-op jobs "
                f"({percentile(noop, 0.5) / batch:.2f} ms/job); {paused} of "
                f"{len(chosen)} on paused clocks"
            ),
        ),
        Figure(
            db,
            "(b) sweep, nothing due",
            len(empty),
            percentile(empty, 0.5),
            percentile(empty, 0.95),
            percentile(bare, 0.5),
            percentile(bare, 0.95),
            "ms",
            note="baseline: the bare SELECT of due jobs",
        ),
    ]


# --- (c) timer lateness ------------------------------------------------------------------------


@dataclass(frozen=True)
class Lateness:
    finished: list[float]  # finished_at - due_at of the jobs done
    claimed: list[float]  # started_at (the claim) - due_at of the jobs done
    waiting: list[float]  # stop time - due_at of the jobs not done when the run was stopped
    failed_attempts: int
    seconds: float  # from the first due time to the last finish
    late_start: float  # how long after the first due time the jobs were committed (0 if before)

    @property
    def unfinished(self) -> int:
        return len(self.waiting)

    @property
    def all(self) -> list[float]:
        """Every timer's lateness; for the unfinished ones a lower bound."""
        return self.finished + self.waiting

    @property
    def rate(self) -> float:
        return len(self.finished) / self.seconds if self.seconds else math.nan


def _workers(url: str, count: int, workdir: Path, label: str, *, real: bool) -> list[Any]:
    env = {**os.environ, "RECOVERYDESK_DATABASE_URL": url}
    processes = []
    for index in range(count):
        name = f"bench-{label}-{index + 1}"
        if real:
            command = [
                str(Path(sys.executable).with_name("recoverydesk")),
                "worker",
                "--name",
                name,
            ]
        else:
            command = [sys.executable, __file__, "--as-worker", url, "--worker-name", name]
        log = (workdir / f"{name}.log").open("w")
        processes.append(
            (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        )
    deadline = time.monotonic() + 60
    for index, (process, _) in enumerate(processes):
        path = workdir / f"bench-{label}-{index + 1}.log"
        while "worker started" not in path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker {path.stem} did not start:\n{path.read_text()[-2000:]}")
            time.sleep(0.05)
    return processes


def _stop(processes: list[Any]) -> None:
    for process, _ in processes:
        process.send_signal(signal.SIGTERM)
    for process, log in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_timers(
    url: str,
    requests_for: Callable[[datetime], list[JobRequest]],
    args: argparse.Namespace,
    workdir: Path,
    label: str,
    *,
    real: bool,
) -> Lateness:
    raw = RawDb(url)
    processes = _workers(url, args.workers, workdir, label, real=real)
    try:
        before = raw.rows("SELECT coalesce(max(id), 0) FROM jobs")[0][0]
        first_due = datetime.now(UTC) + timedelta(seconds=0.5 + args.timers / 20_000)
        requests = requests_for(first_due)
        now = datetime.now(UTC)
        bulk_load(url, jobs_table, JOB_COLUMNS, [[job_row(r, now, raw.stamp) for r in requests]])
        committed = datetime.now(UTC)
        last = raw.rows("SELECT max(id) FROM jobs")[0][0]
        waiting = (
            "SELECT count(*) FROM jobs WHERE id > ? AND id <= ? "
            "AND status IN ('pending', 'running')"
        )
        give_up = time.monotonic() + args.window + args.timer_timeout
        while raw.rows(waiting, (before, last))[0][0] and time.monotonic() < give_up:
            time.sleep(0.5)
    finally:
        _stop(processes)
        raw.close()
    found = _lateness(url, (before, last), first_due, committed, datetime.now(UTC))
    if found.unfinished:  # out of the way of (b)
        raw = RawDb(url)
        try:
            raw.rows(
                "UPDATE jobs SET status = 'dead' WHERE id > ? AND id <= ? AND status <> 'done'",
                (before, last),
            )
        finally:
            raw.close()
    return found


def _lateness(
    url: str, ids: tuple[int, int], first_due: datetime, committed: datetime, stopped: datetime
) -> Lateness:
    before, last = ids
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            query = (
                select(
                    jobs_table.c.due_at,
                    jobs_table.c.finished_at,
                    jobs_table.c.status,
                    attempts_table.c.started_at,
                )
                .outerjoin(
                    attempts_table,
                    (attempts_table.c.job_id == jobs_table.c.id)
                    & (attempts_table.c.attempt == jobs_table.c.attempts),
                )
                .where(jobs_table.c.id > before, jobs_table.c.id <= last)
            )
            rows = connection.execute(query).all()
            failed = connection.execute(
                select(func.count())
                .select_from(attempts_table)
                .where(attempts_table.c.job_id > before, attempts_table.c.job_id <= last)
                .where(attempts_table.c.result != "done")
            ).scalar_one()
    finally:
        engine.dispose()
    done = [r for r in rows if r.status == "done"]
    finishes = [r.finished_at for r in done]
    return Lateness(
        finished=[(r.finished_at - r.due_at).total_seconds() for r in done],
        claimed=[(r.started_at - r.due_at).total_seconds() for r in done if r.started_at],
        waiting=[(stopped - r.due_at).total_seconds() for r in rows if r.status != "done"],
        failed_attempts=int(failed),
        seconds=(max(finishes) - first_due).total_seconds() if finishes else math.nan,
        late_start=max((committed - first_due).total_seconds(), 0.0),
    )


def measure_lateness(
    url: str, factory: CaseFactory, args: argparse.Namespace, workdir: Path
) -> Figure:
    count, window = args.timers, args.window
    opens = list(factory.opens)
    random.Random(factory.seed + 2).shuffle(opens)  # noqa: S311

    def real_timers(first_due: datetime) -> list[JobRequest]:
        return [
            sla_timer(
                opens[i % len(opens)],
                "first_touch",
                opens[i % len(opens)].stage,
                first_due + timedelta(seconds=window * i / count),
            )
            for i in range(count)
        ]

    def noop_timers(first_due: datetime) -> list[JobRequest]:
        return [
            JobRequest(
                merchant_id=opens[i % len(opens)].merchant_id,
                kind=NOOP,
                key=f"noop:c:{i}",
                due_at=first_due + timedelta(seconds=window * i / count),
            )
            for i in range(count)
        ]

    print(
        f"  (c) {count:,} sla.check timers over {window:g} s, {args.workers} workers ...",
        flush=True,
    )
    real = run_timers(url, real_timers, args, workdir, "real", real=True)
    base: Lateness | None = None
    if not args.no_timer_baseline:
        print(f"  (c) baseline: {count:,} no-op timers ...", flush=True)
        base = run_timers(url, noop_timers, args, workdir, "noop", real=False)
    return Figure(
        _kind(url),
        f"(c) lateness, {count:,} timers/{window:g} s",
        count,
        percentile(real.all, 0.5),
        percentile(real.all, 0.99),
        percentile(base.all, 0.5) if base else None,
        percentile(base.all, 0.99) if base else None,
        "s",
        high_label="p99",
        aim="p99 < 1 s",
        met=percentile(real.all, 0.99) < LATENESS_AIM_S and not real.unfinished,
        note=_lateness_note(real, base, count, window, len(opens)),
        censored=bool(real.unfinished),
        base_censored=bool(base and base.unfinished),
    )


def _lateness_note(
    real: Lateness, base: Lateness | None, count: int, window: float, cases: int
) -> str:
    note = (
        f"{real.rate:,.0f} jobs/s done; claim lateness p50 {percentile(real.claimed, 0.5):.2f} "
        f"/ p99 {percentile(real.claimed, 0.99):.2f} s (of jobs done); "
        f"failed attempts {real.failed_attempts:,}"
    )
    if real.unfinished:
        note += (
            f"; stopped with {real.unfinished:,} not run (their lateness so far counted: the "
            f"percentiles are lower bounds); {_projection(real.rate, count, window)}"
        )
    if base is not None:
        note += f"; no-op baseline {base.rate:,.0f} jobs/s"
        if base.unfinished:
            note += f" ({base.unfinished:,} not run; {_projection(base.rate, count, window)})"
    late = max(real.late_start, base.late_start if base else 0.0)
    if late:
        note += f"; WARNING jobs committed {late:.1f} s after the first due time"
    if count > cases:
        note += f"; {count - cases:,} timers repeat a case (nothing left to fire)"
    return note


def _projection(rate: float, count: int, window: float) -> str:
    """FIFO at a steady ``rate`` behind arrivals at ``count / window``: timer i is done at about
    i / rate, so it is late by about i * (1 / rate - window / count)."""
    behind = 1 / rate - window / count if rate else math.inf
    if behind <= 0:
        return "the rate keeps up"
    return (
        f"at that rate p50 ~{0.5 * count * behind:,.0f} s, p99 ~{0.99 * count * behind:,.0f} s, "
        f"all done ~{count / rate:,.0f} s after the first due time"
    )


# --- the run -----------------------------------------------------------------------------------


def run_backend(
    url: str | None, args: argparse.Namespace, workdir: Path
) -> tuple[list[Figure], list[str]]:
    figures: list[Figure] = []
    with fresh_database(url, workdir) as target:
        kind = _kind(target)
        print(f"{kind}: loading {args.cases:,} cases ...", flush=True)
        factory, note = load_data(target, args)
        print(f"  {note}", flush=True)
        desk = bootstrap(Settings(database_url=target))
        try:
            print(f"  (a) queue pages, {args.samples} samples each ...", flush=True)
            pages, captured = measure_pages(
                desk, target, factory.merchant_ids, args.samples, args.page_cap
            )
            figures += pages
            plans = explain(target, captured)
            if args.timers:
                figures.append(measure_lateness(target, factory, args, workdir))
            print(f"  (b) timer sweeps, {args.sweeps} of {args.sweep_batch} ...", flush=True)
            figures += measure_sweeps(desk, target, factory, args.sweeps, args.sweep_batch)
        finally:
            desk.close()
    return figures, plans


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50k cases, 5k timers: a smoke run")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--open", type=int)
    parser.add_argument("--timers", type=int, help="(c) timers; 0 skips (c)")
    parser.add_argument("--window", type=float, help="(c) seconds over which timers fall due")
    parser.add_argument("--workers", type=int, default=2, help="(c) worker processes")
    parser.add_argument("--timer-timeout", type=float, help="(c) seconds to wait after the window")
    parser.add_argument("--no-timer-baseline", action="store_true", help="skip (c)'s no-op run")
    parser.add_argument("--samples", type=int, help="(a) samples per queue page")
    parser.add_argument("--page-cap", type=float, default=30.0, help="(a) seconds per page at most")
    parser.add_argument("--sweeps", type=int, help="(b) samples of each sweep")
    parser.add_argument("--sweep-batch", type=int, default=Settings().worker_batch)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="a postgresql+psycopg:// URL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--as-worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--worker-name", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 0 < args.open <= args.cases:
        parser.error("--open must be between 1 and --cases")
    return args


def worker_main(url: str, name: str | None) -> int:
    """A ``recoverydesk worker`` that also knows the no-op job (the (c) baseline)."""
    from recoverydesk.entrypoints.worker import run_worker, stop_on_signals

    settings = Settings(database_url=url)
    configure_logging(settings.log_level, settings.log_format)
    desk = bootstrap(settings)
    desk.handlers[NOOP] = _noop
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        run_worker(desk, stop=stop, name=name)
    finally:
        desk.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.as_worker:
        return worker_main(args.as_worker, args.worker_name)
    configure_logging("warning")
    backends: list[str | None] = [] if args.no_sqlite else [None]
    if not args.no_postgres:
        problem = pg_reachable(args.postgres)
        if problem:
            print(f"PostgreSQL skipped: {args.postgres} is unreachable ({problem})")
        else:
            backends.append(args.postgres)
    started = time.perf_counter()
    figures: list[Figure] = []
    plans: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rd-triage-bench-") as workdir:
        for url in backends:
            found, shown = run_backend(url, args, Path(workdir))
            figures += found
            plans += shown
    print_table(figures)
    print("\nplans (EXPLAIN; PostgreSQL with ANALYZE, BUFFERS):\n" + "\n".join(plans))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
