"""Job workers as real processes, concurrent intake, retries and migrations on real databases.

The worker tests start ``recoverydesk worker`` processes against a fresh PostgreSQL database and
watch the ``jobs`` table; nothing in them is mocked. The runner and migration tests run on both
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.persistence.database import make_engine
from recoverydesk.persistence.migrate import downgrade, upgrade
from recoverydesk.persistence.tables import cases, metadata
from recoverydesk.services import merchants as merchant_admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.jobs import JobRunner, RunStats
from recoverydesk.services.ports import IncomingEvent, Job, JobRequest, Merchant, UnitOfWork
from recoverydesk.services.views import order_to_dict

T = TypeVar("T")

CLI = str(Path(sys.executable).with_name("recoverydesk"))
if not Path(CLI).exists():  # pragma: no cover - a venv always has it next to its python
    CLI = shutil.which("recoverydesk") or "recoverydesk"

MERCHANT = "acme"


# ----------------------------------------------------------------------------- helpers


def libpq(url: str) -> str:
    """The psycopg (libpq) form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def desk_env(url: str, **settings: str) -> dict[str, str]:
    env = {**os.environ, "RECOVERYDESK_DATABASE_URL": url, "RECOVERYDESK_LOG_FORMAT": "json"}
    env.update({f"RECOVERYDESK_{name.upper()}": value for name, value in settings.items()})
    return env


def cli(url: str, *args: str) -> str:
    """Run one ``recoverydesk`` command to completion; it must succeed."""
    done = subprocess.run(
        [CLI, *args], env=desk_env(url), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"recoverydesk {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def write_jsonl(path: Path, events: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def set_up_desk(url: str, tmp_path: Path, events: Sequence[dict[str, Any]] = ()) -> None:
    """Schema, merchant and events, the way an operator does it: through the CLI."""
    cli(url, "db", "upgrade")
    cli(url, "merchant", "add", MERCHANT)
    if events:
        ingest_file(url, tmp_path, events)


def ingest_file(url: str, tmp_path: Path, events: Sequence[dict[str, Any]]) -> None:
    path = write_jsonl(tmp_path / f"events-{uuid.uuid4().hex[:6]}.jsonl", events)
    out = cli(url, "ingest", str(path), "--merchant", MERCHANT)
    assert f"{len(events)} stored" in out, out


def placed(ref: str, *, now: datetime, ship_by: timedelta = timedelta(hours=-1)) -> dict[str, Any]:
    """An order.placed event whose ship-by time is ``ship_by`` from ``now`` (past by default)."""
    placed_at = now - timedelta(hours=3)
    return {
        "id": f"shopify:placed:{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": iso(placed_at),
        "order": {
            "ref": ref,
            "channel": "web",
            "fulfillment_type": "in_house",
            "value": "80.00",
            "currency": "USD",
            "placed_at": iso(placed_at),
            "ship_by": iso(now + ship_by),
            "lines": [{"sku": "SKU-1", "qty": 1, "price": "80.00"}],
        },
    }


def start_worker(url: str, name: str, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """``recoverydesk worker --name NAME`` in its own process, logging to ``log``."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [CLI, "worker", "--name", name],
            env=desk_env(url, **settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """Leave nothing running (used in ``finally``)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def terminate(process: subprocess.Popen[bytes]) -> int:
    """Stop a worker the way a supervisor does (SIGTERM) and return its exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=15)


def wait_for(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    logs: Sequence[Path] = (),
) -> T:
    """Poll ``check`` until it returns something truthy; fail (with the worker logs) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        problem = None
        if any(process.poll() is not None for process in alive):
            problem = f"a worker exited while waiting for {what}"
        elif time.monotonic() > deadline:
            problem = f"timed out after {timeout:.0f}s waiting for {what}"
        if problem:
            shown = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
            pytest.fail(f"{problem}\n{shown}")
        time.sleep(0.1)


def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def job_state(url: str, job_id: int) -> tuple[str, str | None, int]:
    ((status, locked_by, attempts),) = query(
        url, "SELECT status, locked_by, attempts FROM jobs WHERE id = %s", [job_id]
    )
    return status, locked_by, attempts


def other_backends(url: str, *, besides: int) -> int:
    """Server processes connected to this database, other than ``besides`` and this query's."""
    ((count,),) = query(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> %s",
        [besides],
    )
    return int(count)


# ----------------------------------------------------------------------------- 1. crash mid-job


@pytest.mark.postgres
def test_a_job_whose_worker_is_killed_mid_job_is_rerun_once_by_another_worker(
    pg_url: str, tmp_path: Path
) -> None:
    # given: an unshipped order whose ship-by time has passed, so one ship-by check is due
    now = datetime.now(UTC).replace(microsecond=0)
    ref = "R-1001"
    ship_by = now - timedelta(hours=1)
    set_up_desk(pg_url, tmp_path, [placed(ref, now=now)])
    ((job_id, kind, status),) = query(pg_url, "SELECT id, kind, status FROM jobs")
    assert (kind, status) == ("order.ship_by_check", "pending")
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    # and: the test holds the order's row lock, so the job's ingest will hang on it
    blocker = psycopg.connect(libpq(pg_url))
    worker_a = worker_b = None
    try:
        locked = blocker.execute(
            "SELECT ref FROM orders WHERE ref = %s FOR UPDATE", [ref]
        ).fetchall()
        assert locked == [(ref,)]
        fast = {"worker_lease_seconds": "2", "worker_poll_seconds": "0.2"}
        worker_a = start_worker(pg_url, "A", logs[0], **fast)

        # when: worker A has claimed the job and is stuck inside it, waiting for the order lock
        wait_for(
            lambda: job_state(pg_url, job_id) == ("running", "A", 1),
            what="worker A to claim the job",
            timeout=30,
            alive=[worker_a],
            logs=logs,
        )
        wait_for(
            lambda: query(
                pg_url,
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                [blocker.info.backend_pid],
            ),
            what="worker A to block on the order's row lock",
            timeout=30,
            alive=[worker_a],
            logs=logs,
        )
        # and: worker A is killed without warning, then the order lock is released
        worker_a.send_signal(signal.SIGKILL)
        assert worker_a.wait(timeout=10) == -signal.SIGKILL
        blocker.rollback()

        # then: everything worker A did inside the job is rolled back once its session ends
        wait_for(
            lambda: other_backends(pg_url, besides=blocker.info.backend_pid) == 0,
            what="worker A's database sessions to end",
            timeout=30,
            logs=logs,
        )
        assert query(pg_url, "SELECT count(*) FROM events WHERE source = 'desk'") == [(0,)]
        assert query(pg_url, "SELECT count(*) FROM cases") == [(0,)]
        assert job_state(pg_url, job_id) == ("running", "A", 1)

        # when: worker B starts; it takes the job over once A's lease has run out
        worker_b = start_worker(pg_url, "B", logs[1], **fast)
        wait_for(
            lambda: job_state(pg_url, job_id)[0] == "done",
            what="worker B to finish the job",
            timeout=30,
            alive=[worker_b],
            logs=logs,
        )

        # then: the job ran to completion exactly once, on its second attempt
        assert job_state(pg_url, job_id) == ("done", "B", 2)
        assert query(
            pg_url,
            "SELECT attempt, worker, result FROM job_attempts WHERE job_id = %s ORDER BY attempt",
            [job_id],
        ) == [(1, "A", "lease_expired"), (2, "B", "done")]
        # and: the desk event was stored once and opened exactly one late-shipment case
        missed = f"desk:ship-by-missed:{ref}:{ship_by.isoformat()}"
        assert query(
            pg_url, "SELECT event_id FROM events WHERE event_id LIKE 'desk:ship-by-missed:%%'"
        ) == [(missed,)]
        late = query(
            pg_url,
            "SELECT id, status, opened_by FROM cases "
            "WHERE order_ref = %s AND category = 'late_shipment_risk'",
            [ref],
        )
        assert [(status, opened_by) for _, status, opened_by in late] == [("triaged", missed)]
        assert query(pg_url, "SELECT count(*) FROM cases") == [(1,)]
        assert query(
            pg_url,
            "SELECT count(*) FROM case_timeline WHERE case_id = %s AND kind = 'opened'",
            [late[0][0]],
        ) == [(1,)]

        # when: worker B is asked to stop; then: it exits cleanly
        assert terminate(worker_b) == 0
    finally:
        kill(worker_a)
        kill(worker_b)
        blocker.close()


# ----------------------------------------------------------------------------- 2. two workers


@pytest.mark.postgres
def test_two_worker_processes_share_the_jobs_and_run_each_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    # given: a desk with two worker processes already polling an empty queue
    set_up_desk(pg_url, tmp_path)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    settings = {
        "worker_lease_seconds": "30",
        "worker_poll_seconds": "0.1",
        "worker_batch": "2",
    }
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for name, log in zip(("W1", "W2"), logs, strict=True):
            workers.append(start_worker(pg_url, name, log, **settings))
        wait_for(
            lambda: all("worker started" in log.read_text() for log in logs),
            what="both workers to start",
            timeout=30,
            alive=workers,
            logs=logs,
        )

        # when: 60 unshipped orders past their ship-by time arrive at once
        now = datetime.now(UTC).replace(microsecond=0)
        refs = [f"R-{n:04d}" for n in range(60)]
        ingest_file(pg_url, tmp_path, [placed(ref, now=now) for ref in refs])
        ship_by = "kind = 'order.ship_by_check'"
        assert query(pg_url, f"SELECT count(*) FROM jobs WHERE {ship_by}") == [(60,)]
        wait_for(
            lambda: (
                query(
                    pg_url,
                    "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
                    " AND due_at <= now()",
                )
                == [(0,)]
            ),
            what="the workers to drain the queue",
            timeout=45,
            alive=workers,
            logs=logs,
        )

        # then: every ship-by check is done, after a single attempt (the late-shipment cases
        # it opened have SLA timers of their own, some due later)
        assert query(
            pg_url, f"SELECT status, attempts, count(*) FROM jobs WHERE {ship_by} GROUP BY 1, 2"
        ) == [("done", 1, 60)]
        attempts = query(
            pg_url,
            "SELECT job_id, attempt, worker, result FROM job_attempts"
            f" WHERE job_id IN (SELECT id FROM jobs WHERE {ship_by})",
        )
        assert len(attempts) == 60
        assert {job_id for job_id, *_ in attempts} == {
            job_id for (job_id,) in query(pg_url, f"SELECT id FROM jobs WHERE {ship_by}")
        }
        assert {(attempt, result) for _, attempt, _, result in attempts} == {(1, "done")}
        # and: each order got exactly one late-shipment case
        per_order = query(
            pg_url,
            "SELECT order_ref, count(*) FROM cases WHERE category = 'late_shipment_risk' "
            "GROUP BY order_ref ORDER BY order_ref",
        )
        assert per_order == [(ref, 1) for ref in refs]
        assert query(pg_url, "SELECT count(*) FROM events WHERE source = 'desk'") == [(60,)]
        # and: both workers did part of the work
        split = query(pg_url, "SELECT worker, count(*) FROM job_attempts GROUP BY worker")
        assert {worker for worker, _ in split} == {"W1", "W2"}, split

        # when: both are asked to stop; then: both exit cleanly
        assert [terminate(worker) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            kill(worker)


# ----------------------------------------------------------------------------- 3. concurrent ingest


@pytest.fixture
def second_pg_url(pg_server: str) -> Iterator[str]:
    """Another fresh PostgreSQL database, for a reference run."""
    name = f"rd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def story(ref: str, *, cancelled: bool) -> list[dict[str, Any]]:
    """One order's events: a payment failure, a fraud hold, a stock problem, then its end."""

    def event(kind: str, minute: int, data: dict[str, Any] | None = None, **order: Any) -> Any:
        return {
            "id": f"{ref}:{kind}:{minute}",
            "source": "shopify",
            "type": kind,
            "occurred_at": iso(T0 + timedelta(minutes=minute)),
            "order": {"ref": ref, **order},
            "data": data or {},
        }

    placed_at = iso(T0)
    events = [
        event(
            "order.placed",
            0,
            channel="web",
            value="120.00",
            currency="EUR",
            placed_at=placed_at,
            ship_by=iso(T0 + timedelta(days=1)),
            lines=[{"sku": "A", "qty": 1, "price": "70.00"}, {"sku": "B", "qty": 1, "price": "50"}],
        ),
        event("payment.failed", 5, {"reason": "card declined"}),
        event("payment.captured", 20, {"amount": "120.00"}),
        event("hold.placed", 30, {"hold_type": "fraud"}),
        event("hold.released", 90, {"hold_type": "fraud"}),
        event("inventory.short", 100, {"sku": "B", "available": 0}),
    ]
    if cancelled:
        events += [
            event("cancel.requested", 110, {"requested_by": "customer"}),
            event("order.cancelled", 130, {"reason": "customer request"}),
        ]
    else:
        events += [
            event("fulfillment.shipped", 300, {"tracking": f"TRK-{ref}"}),
            event("delivery.exception", 900, {"kind": "delay"}),
            event("fulfillment.delivered", 1500),
        ]
    return events


def arrives_out_of_order(batches: Sequence[Sequence[dict[str, Any]]]) -> bool:
    """True when some event comes after a later event of the same order."""
    latest: dict[str, str] = {}
    for doc in (doc for batch in batches for doc in batch):
        ref, moment = doc["order"]["ref"], doc["occurred_at"]  # same-offset ISO texts sort by time
        if moment < latest.get(ref, moment):
            return True
        latest[ref] = max(moment, latest.get(ref, moment))
    return False


def incoming(events: Sequence[dict[str, Any]]) -> list[IncomingEvent]:
    return [IncomingEvent(parse_event(doc), json.dumps(doc)) for doc in events]


def open_desk(url: str) -> tuple[Desk, Merchant]:
    desk = bootstrap(Settings(database_url=url))
    desk.upgrade()
    with desk.uow() as uow:
        merchant = merchant_admin.add_merchant(uow, clock=desk.clock, name=MERCHANT)
        uow.commit()
    return desk, merchant


def outcome(desk: Desk, merchant: Merchant, refs: Sequence[str]) -> tuple[Any, Any]:
    """The order 360 of each order, and every case as a comparable tuple."""
    with desk.reader() as uow:
        views = {}
        for ref in refs:
            view = uow.orders.get(merchant.id, ref)
            assert view is not None, ref
            views[ref] = order_to_dict(view)
    columns = [
        cases.c.order_ref,
        cases.c.category,
        cases.c.status,
        cases.c.outcome,
        cases.c.opened_at,
        cases.c.closed_at,
        cases.c.opened_by,
    ]
    with desk.engine.connect() as connection:
        found = sorted(tuple(row) for row in connection.execute(select(*columns)))
    return views, found


@pytest.mark.postgres
def test_concurrent_ingest_of_overlapping_events_gives_the_same_result_as_sequential_ingest(
    pg_url: str, second_pg_url: str
) -> None:
    # given: the events of three orders, which four senders each deliver, shuffled and in
    # small batches (so each event arrives four times or more, often out of order)
    refs = ["C-1", "C-2", "C-3"]
    docs = [doc for n, ref in enumerate(refs) for doc in story(ref, cancelled=n == 2)]
    unique_ids = {doc["id"] for doc in docs}
    senders: list[list[list[dict[str, Any]]]] = []
    for seed in range(4):
        rng = random.Random(seed)
        stream = docs + rng.sample(docs, 5)  # some events twice from the same sender
        rng.shuffle(stream)
        batches, start = [], 0
        while start < len(stream):
            size = rng.randint(1, 4)
            batches.append(stream[start : start + size])
            start += size
        senders.append(batches)
    assert all(arrives_out_of_order(batches) for batches in senders)
    desk, merchant = open_desk(pg_url)
    reference, reference_merchant = open_desk(second_pg_url)
    errors: list[BaseException] = []
    start_line = threading.Barrier(len(senders))

    def send(batches: list[list[dict[str, Any]]]) -> None:
        try:
            start_line.wait(timeout=30)
            for batch in batches:
                desk.ingest(merchant, incoming(batch))
        except BaseException as error:
            errors.append(error)

    try:
        # when: the four senders ingest at the same time into one database
        threads = [threading.Thread(target=send, args=(batches,)) for batches in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        # and: the same events are ingested one by one, in time order, into another database
        for doc in sorted(docs, key=lambda d: (d["occurred_at"], d["id"])):
            reference.ingest(reference_merchant, incoming([doc]))

        # then: no sender saw an error
        assert errors == []
        # and: each event is stored once
        with desk.engine.connect() as connection:
            stored = list(connection.execute(text("SELECT event_id FROM events")).scalars())
        assert sorted(stored) == sorted(unique_ids)
        # and: the orders and cases are exactly those of the sequential run
        concurrent_views, concurrent_cases = outcome(desk, merchant, refs)
        sequential_views, sequential_cases = outcome(reference, reference_merchant, refs)
        assert len(sequential_cases) >= 3 * len(refs)  # the stories do open cases
        assert concurrent_views == sequential_views
        assert concurrent_cases == sequential_cases
    finally:
        desk.close()
        reference.close()


# ----------------------------------------------------------------------------- 4. retries


def job_row(desk: Desk) -> dict[str, Any]:
    with desk.reader() as uow:
        (row,) = uow.jobs.listing(status=None, limit=10)
    return row


def desk_with_job(url: str, kind: str, *, max_attempts: int) -> tuple[Desk, int]:
    desk, merchant = open_desk(url)
    with desk.uow() as uow:
        uow.jobs.enqueue(
            [
                JobRequest(
                    merchant_id=merchant.id,
                    kind=kind,
                    key=f"{kind}:1",
                    due_at=T0,
                    payload={"n": 1},
                    max_attempts=max_attempts,
                )
            ],
            now=T0,
        )
        uow.commit()
    return desk, int(job_row(desk)["id"])


def test_a_failing_job_is_retried_with_growing_backoff_then_dead_lettered(db_url: str) -> None:
    # given: a job allowed three attempts whose handler always fails
    desk, job_id = desk_with_job(db_url, "test.fail", max_attempts=3)
    clock = SimulatedClock(T0)
    calls: list[int] = []

    def always_fails(_uow: UnitOfWork, job: Job, _now: datetime) -> None:
        calls.append(job.attempts)
        raise RuntimeError(f"warehouse API down (call {len(calls)})")

    runner = JobRunner(
        uow_factory=desk.uow, clock=clock, handlers={"test.fail": always_fails}, worker="w"
    )
    try:
        due_times, delays = [job_row(desk)["due_at"]], []
        for attempt in (1, 2, 3):
            # when: the job is due and the runner runs
            stats = runner.run_due()

            # then: the attempt failed and was counted
            assert (stats.done, stats.failed, stats.dead) == (0, 1, int(attempt == 3))
            row = job_row(desk)
            assert row["attempts"] == attempt
            if attempt == 3:
                break
            # and: it waits for a later, growing backoff before it is due again
            assert row["status"] == "pending"
            assert row["due_at"] > due_times[-1]
            due_times.append(row["due_at"])
            delays.append(row["due_at"] - clock.now())
            clock.advance_to(row["due_at"] - timedelta(seconds=1))
            assert runner.run_due() == RunStats()
            clock.advance_to(row["due_at"])

        assert calls == [1, 2, 3]
        assert timedelta(seconds=24) <= delays[0] <= timedelta(seconds=36)
        assert timedelta(seconds=48) <= delays[1] <= timedelta(seconds=72)
        assert delays[1] > delays[0]
        # and: after the third failure it is dead-lettered with the error kept
        assert row["status"] == "dead"
        assert "RuntimeError: warehouse API down (call 3)" in row["last_error"]
        clock.advance(timedelta(days=1))
        assert runner.run_due() == RunStats()
        with desk.reader() as uow:
            history = uow.jobs.attempts(job_id)
        assert [(a["attempt"], a["worker"], a["result"]) for a in history] == [
            (1, "w", "failed"),
            (2, "w", "failed"),
            (3, "w", "failed"),
        ]
        assert all(f"(call {a['attempt']})" in a["error"] for a in history)
        assert all(a["finished_at"] is not None for a in history)

        # when: an operator retries the dead job
        with desk.uow() as uow:
            assert uow.jobs.retry(job_id, now=clock.now()) is True
            uow.commit()

        # then: it is pending again, due now, with one more attempt allowed
        row = job_row(desk)
        assert (row["status"], row["due_at"], row["max_attempts"]) == ("pending", clock.now(), 4)
        with desk.uow() as uow:
            assert uow.jobs.retry(job_id, now=clock.now()) is False  # only dead jobs
        # and: when it fails once more it goes back to the dead letters
        assert runner.run_due().dead == 1
        assert (job_row(desk)["status"], job_row(desk)["attempts"]) == ("dead", 4)
    finally:
        desk.close()


def test_a_job_that_succeeds_on_its_second_attempt_is_done(db_url: str) -> None:
    # given: a job whose handler fails the first time only
    desk, job_id = desk_with_job(db_url, "test.flaky", max_attempts=3)
    clock = SimulatedClock(T0)
    calls: list[int] = []

    def flaky(_uow: UnitOfWork, job: Job, _now: datetime) -> None:
        calls.append(job.attempts)
        if job.attempts == 1:
            raise ConnectionError("carrier API timed out")

    runner = JobRunner(
        uow_factory=desk.uow, clock=clock, handlers={"test.flaky": flaky}, worker="w"
    )
    try:
        # when: it runs, fails, and runs again once its retry is due
        first = runner.run_due()
        clock.advance_to(job_row(desk)["due_at"])
        second = runner.run_due()

        # then: it is done after two attempts
        assert (first.failed, second.done) == (1, 1)
        assert calls == [1, 2]
        row = job_row(desk)
        assert (row["status"], row["attempts"]) == ("done", 2)
        with desk.reader() as uow:
            history = uow.jobs.attempts(job_id)
        assert [(a["attempt"], a["result"]) for a in history] == [(1, "failed"), (2, "done")]
        assert "carrier API timed out" in history[0]["error"]
        assert history[1]["error"] is None
        # and: a done job is not run again
        clock.advance(timedelta(days=1))
        assert runner.run_due() == RunStats()
        assert calls == [1, 2]
    finally:
        desk.close()


# ----------------------------------------------------------------------------- 5. migrations


QUEUE_PAGE_INDEX = "ix_cases_queue_page"


def schema_differences(url: str) -> list[Any]:
    """What Alembic finds different between the database and the table definitions.

    Alembic cannot compare an index with an expression (``risk_cents DESC``) and reports it as
    removed and added again; that index is checked by name and columns instead."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            found = list(compare_metadata(context, metadata))
            indexes = {ix["name"]: ix for ix in inspect(connection).get_indexes("cases")}
    finally:
        engine.dispose()
    page = indexes[QUEUE_PAGE_INDEX]
    names = [
        c or e
        for c, e in zip(
            page["column_names"], page.get("expressions") or page["column_names"], strict=False
        )
    ]
    assert names[:4] == ["merchant_id", "queue", "priority", "due_sort"], page
    return [
        diff
        for diff in found
        if not (diff[0] in ("add_index", "remove_index") and diff[1].name == QUEUE_PAGE_INDEX)
    ]


def schema(url: str) -> tuple[set[str], list[str]]:
    """The table names, and the Alembic revision recorded in the database."""
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        revision: list[str] = []
        if "alembic_version" in names:
            with engine.connect() as connection:
                found = connection.execute(text("SELECT version_num FROM alembic_version"))
                revision = list(found.scalars())
        return names, revision
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_tables_of_the_metadata_and_can_be_rerun(
    db_url: str,
) -> None:
    # given: an empty database
    assert schema(db_url) == (set(), [])
    tables = set(metadata.tables)

    # when: the schema is migrated to head
    upgrade(db_url)

    # then: every table of the metadata exists, and Alembic records the head revision
    assert schema(db_url) == (tables | {"alembic_version"}, ["0010"])
    # and: the migrated schema is what the table definitions describe
    assert schema_differences(db_url) == []

    # when: the upgrade runs again; then: nothing changes
    upgrade(db_url)
    assert schema(db_url) == (tables | {"alembic_version"}, ["0010"])
    assert schema_differences(db_url) == []

    # when: the schema is downgraded to nothing; then: the desk's tables are gone
    downgrade(db_url, "base")
    assert schema(db_url)[0] <= {"alembic_version"}
    assert schema(db_url)[1] == []

    # when: it is upgraded again; then: the schema is complete and right once more
    upgrade(db_url)
    assert schema(db_url) == (tables | {"alembic_version"}, ["0010"])
    assert schema_differences(db_url) == []
