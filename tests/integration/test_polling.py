"""Durable polling with stored cursors, over real HTTP on loopback against the WooCommerce and
3PL emulators, on SQLite and PostgreSQL: the real job runner, a simulated clock, nothing mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.persistence.tables import events, jobs
from recoverydesk.sandbox.threepl_emulator import ThreePLEmulator, serve_emulator
from recoverydesk.sandbox.woocommerce_emulator import WooCommerceEmulator, serve_woocommerce
from recoverydesk.services import merchants as admin
from recoverydesk.services import polling
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.jobs import OutsideStep, RunStats
from recoverydesk.services.ports import OutsideUnavailable, PollCursor

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)  # Settings.worker_lease_seconds


@dataclass
class World:
    desk: Desk
    clock: SimulatedClock
    shop: WooCommerceEmulator
    merchant_id: int

    def schedule(self) -> int:
        with self.desk.uow() as uow:
            asked = polling.schedule_polls(uow, self.clock.now())
            uow.commit()
        return len(asked)

    def run(self, rounds: int = 20) -> RunStats:
        """Run due jobs until none is left due now."""
        total = RunStats()
        runner = self.desk.job_runner("w1")
        for _ in range(rounds):
            stats = runner.run_due(limit=50)
            total.done += stats.done
            total.failed += stats.failed
            if stats.done + stats.failed + stats.lost == 0:
                break
        return total

    def cursor(self, name: str = "shop") -> PollCursor | None:
        with self.desk.reader() as uow:
            return uow.polls.get(self.merchant_id, name)

    def event_ids(self) -> list[str]:
        with self.desk.engine.connect() as db:
            return sorted(db.execute(select(events.c.event_id)).scalars())

    def poll_jobs(self) -> list[tuple[str, str, datetime]]:
        with self.desk.engine.connect() as db:
            rows = db.execute(
                select(jobs.c.key, jobs.c.status, jobs.c.due_at)
                .where(jobs.c.kind == polling.RUN)
                .order_by(jobs.c.id)
            ).all()
        return [(r.key, r.status, r.due_at) for r in rows]


def _config(tmp: Path, polls: str) -> Path:
    path = tmp / "acme.yaml"
    path.write_text(f"merchant: acme\nconnectors:\n  polling:\n{polls}", encoding="utf-8")
    return path


def _shop_poll(base_url: str, *, per_page: int = 3, every: str = "PT10M") -> str:
    return (
        f"    shop: {{kind: woocommerce, base_url: '{base_url}', consumer_key: ck_test,"
        f" api_key: cs_test, per_page: {per_page}, every: {every}}}\n"
    )


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    upgrade(db_url)
    clock = SimulatedClock(T0)
    desk = bootstrap(Settings(database_url=db_url), clock=clock)
    shop = WooCommerceEmulator()
    with serve_woocommerce(shop) as running:
        config = _config(tmp_path, _shop_poll(running.base_url))
        with desk.uow() as uow:
            merchant = admin.add_merchant(uow, clock=clock, name="acme", config=config)
            uow.commit()
        yield World(desk, clock, shop, merchant.id)
    desk.close()


def _orders(shop: WooCommerceEmulator, ids: range, modified: datetime) -> None:
    for oid in ids:
        shop.put_order(oid, modified=modified, created=T0 - timedelta(hours=1))


def placed(ids: range) -> list[str]:
    return [f"woocommerce:order-{oid}-created" for oid in ids]


# -- WooCommerce -------------------------------------------------------------------------------


def test_pages_with_equal_modified_times_lose_and_double_nothing(world: World) -> None:
    # given 8 orders, 5 of them modified in the same second, read 3 to a page
    same = T0 - timedelta(minutes=30)
    _orders(world.shop, range(1, 4), T0 - timedelta(minutes=40))
    _orders(world.shop, range(4, 9), same)  # orders 4..8 straddle the page boundaries
    # when the scheduler starts the poll and the worker runs it
    assert world.schedule() == 1
    assert world.schedule() == 1  # a second scheduler asks for the same job: still one
    world.run()
    # then every order is stored once (processing orders: placed + updated, ids dedupe)
    ids = world.event_ids()
    assert [i for i in ids if i.endswith("-created")] == sorted(placed(range(1, 9)))
    assert len(ids) == len(set(ids)) == 16
    # and the cursor names the last order of the last second, after 3 pages and 1 empty tail
    cursor = world.cursor()
    assert cursor is not None
    assert cursor.cursor == f"{(same).strftime('%Y-%m-%dT%H:%M:%S')}|8"
    assert cursor.kind == "woocommerce"
    assert cursor.polled_at == T0
    # and one chain of jobs, the next one due after ``every``
    pending = [j for j in world.poll_jobs() if j[1] == "pending"]
    assert len(pending) == 1
    assert pending[0][2] == T0 + timedelta(minutes=10)
    # when an order of that same second changes again later, and a new one comes
    world.shop.put_order(5, modified=T0 + timedelta(minutes=2), status="cancelled")
    world.shop.put_order(9, modified=T0 + timedelta(minutes=3), created=T0)
    world.clock.advance(timedelta(minutes=10))
    world.run()
    ids = world.event_ids()
    assert "woocommerce:order-5-cancelled" in ids
    assert "woocommerce:order-9-created" in ids
    assert len(ids) == len(set(ids)) == 16 + 1 + 2


def test_the_next_poll_is_scheduled_after_every_and_not_before(world: World) -> None:
    # given an empty shop, polled once
    world.schedule()
    world.run()
    first = world.cursor()
    assert first is not None
    assert first.cursor is None
    assert first.seq == 1
    assert first.due_at == T0 + timedelta(minutes=10)
    # when an order arrives and 9 minutes pass: nothing is polled yet
    world.shop.put_order(1, modified=T0 + timedelta(minutes=1))
    world.clock.advance(timedelta(minutes=9))
    assert world.run().done == 0
    assert world.event_ids() == []
    # when the tenth minute comes: it is read, and the poll after it is ten minutes later
    world.clock.advance(timedelta(minutes=1))
    assert world.run().done == 1
    assert placed(range(1, 2))[0] in world.event_ids()
    after = world.cursor()
    assert after is not None
    assert after.seq == 2
    assert after.due_at == T0 + timedelta(minutes=20)
    # and scheduling again asks for the job that is already there: no second chain
    world.schedule()
    keys = [key for key, status, _ in world.poll_jobs() if status == "pending"]
    assert keys == [f"poll:{world.merchant_id}:shop:2:{(T0 + timedelta(minutes=20)).isoformat()}"]


def test_a_5xx_retries_later_without_moving_the_cursor(world: World) -> None:
    # given a poll that read one order
    world.shop.put_order(1, modified=T0 - timedelta(minutes=5))
    world.schedule()
    world.run()
    before = world.cursor()
    assert before is not None
    assert before.cursor is not None
    # when the shop answers 503 at the next poll
    world.shop.put_order(2, modified=T0 + timedelta(minutes=1))
    world.shop.fail_next(503)
    world.clock.advance(timedelta(minutes=10))
    stats = world.run()
    # then the job failed and is retried later; the cursor did not move, nothing was read
    assert stats.failed == 1
    assert world.cursor() == before
    assert placed(range(2, 3))[0] not in world.event_ids()
    with world.desk.engine.connect() as db:
        due = db.execute(
            select(jobs.c.due_at, jobs.c.last_error).where(
                jobs.c.kind == polling.RUN, jobs.c.status == "pending"
            )
        ).one()
    assert due.due_at > world.clock.now()
    assert "503" in (due.last_error or "")
    # when the retry comes: the order is read, the cursor moves past it
    world.clock.advance_to(due.due_at)
    world.run()
    after = world.cursor()
    assert after is not None
    assert after.cursor is not None
    assert after.cursor.endswith("|2")
    assert placed(range(2, 3))[0] in world.event_ids()


def test_a_worker_crash_between_the_call_and_the_record_repeats_the_page(world: World) -> None:
    # given 5 orders, 3 to a page, and the poll due
    _orders(world.shop, range(1, 6), T0 - timedelta(minutes=10))
    world.schedule()
    # when a worker claims the job, reads the first page and dies before recording it
    now = world.clock.now()
    with world.desk.uow() as uow:
        claimed = uow.jobs.claim(now=now, worker="doomed", lease=LEASE, limit=10)
        uow.commit()
    assert [job.kind for job in claimed] == [polling.RUN]
    step = world.desk.handlers[polling.RUN]
    assert isinstance(step, OutsideStep)
    with world.desk.uow() as uow:
        prepared = step.prepare(uow, claimed[0], now)
    with suppress(OutsideUnavailable):
        page = step.call(prepared)
    assert len(page.events) == 6
    assert page.more
    # then nothing was stored and the cursor did not move; the job waits for its lease
    assert world.event_ids() == []
    assert world.cursor() is None
    assert world.run().done == 0
    # when the lease ends: another worker polls the same page again, and the rest
    world.clock.advance(LEASE + timedelta(seconds=1))
    world.run()
    ids = world.event_ids()
    assert [i for i in ids if i.endswith("-created")] == sorted(placed(range(1, 6)))
    assert len(ids) == len(set(ids)) == 10
    cursor = world.cursor()
    assert cursor is not None
    assert cursor.cursor is not None
    assert cursor.cursor.endswith("|5")
    # and a late record of the dead worker's page (its lease lost) would change nothing:
    # its seq is not the cursor's any more
    with world.desk.uow() as uow:
        step.record(uow, claimed[0], prepared, page, world.clock.now())
        uow.commit()
    assert world.cursor() == cursor
    assert len([j for j in world.poll_jobs() if j[1] == "pending"]) == 1


def test_a_removed_poll_stops_its_chain(world: World, tmp_path: Path) -> None:
    world.schedule()
    world.run()
    config = tmp_path / "empty.yaml"
    config.write_text("merchant: acme\n", encoding="utf-8")
    with world.desk.uow() as uow:
        admin.apply_settings(uow, clock=world.clock, name="acme", config=config)
        uow.commit()
    world.clock.advance(timedelta(minutes=10))
    world.run()
    cursor = world.cursor()
    assert cursor is not None
    assert cursor.due_at is None
    assert world.schedule() == 0
    assert not [j for j in world.poll_jobs() if j[1] == "pending"]


# -- the 3PL -------------------------------------------------------------------------------


def test_the_3pl_poll_reads_status_changes_once(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    clock = SimulatedClock(T0)
    desk = bootstrap(Settings(database_url=sqlite_url), clock=clock)
    warehouse_now = [T0 - timedelta(hours=1)]
    warehouse = ThreePLEmulator(api_key="k3", clock=lambda: warehouse_now[0])
    warehouse.add_order("A1", status="released")
    warehouse.add_order("A2", status="picking")
    with serve_emulator(warehouse) as running:
        polls = f"    wms: {{kind: wms_rest, base_url: '{running.base_url}', api_key: k3}}\n"
        with desk.uow() as uow:
            merchant = admin.add_merchant(
                uow, clock=clock, name="acme", config=_config(tmp_path, polls)
            )
            polling.schedule_polls(uow, clock.now())
            uow.commit()
        w = World(desk, clock, WooCommerceEmulator(), merchant.id)
        w.run()
        assert w.event_ids() == ["wms:poll:A1:released", "wms:poll:A2:picking"]
        first = w.cursor("wms")
        assert first is not None
        assert first.due_at == T0 + polling.DEFAULT_EVERY
        # when A1 moves on and the next poll comes (default every: 5 minutes)
        warehouse_now[0] = T0
        warehouse.set_status("A1", "shipped")
        clock.advance(polling.DEFAULT_EVERY)
        w.run()
        # and a 5xx at the poll after: the cursor stays
        after = w.cursor("wms")
        warehouse.fail_next(502)
        clock.advance(polling.DEFAULT_EVERY)
        assert w.run().failed == 1
        assert w.cursor("wms") == after
    ids = w.event_ids()
    assert ids == ["wms:poll:A1:released", "wms:poll:A1:shipped", "wms:poll:A2:picking"]
    assert after is not None
    assert after.cursor == T0.isoformat()
    with desk.engine.connect() as db:
        assert db.execute(select(func.count()).select_from(events)).scalar() == 3
    desk.close()


def test_the_worker_loop_schedules_polls(world: World) -> None:
    scheduler = polling.PollScheduler(world.desk.uow, world.clock)
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0  # at most once a minute
    assert len(world.poll_jobs()) == 1
