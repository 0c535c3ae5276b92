"""The Amazon SP-API orders poller over real HTTP on loopback against the Amazon emulator (Login
with Amazon + getOrders): token exchange and reuse, NextToken paging, cursors that read nothing
twice, rate limits, refusals, and a run through the durable polling job on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.connectors.poll_amazon import AmazonOrdersPoller, PollRefused, parse_cursor
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.persistence.tables import events, jobs
from recoverydesk.sandbox.amazon_emulator import AmazonEmulator, RunningAmazon, serve_amazon
from recoverydesk.services import merchants as admin
from recoverydesk.services import polling
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import OutsideUnavailable, PollPage

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def amazon() -> Iterator[RunningAmazon]:
    with serve_amazon(AmazonEmulator(page_size=2)) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as shared:
        yield shared


def _connection(running: RunningAmazon, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "amazon_spapi",
        "base_url": running.base_url,
        "client_id": "amzn1.application-oa2-client.test",
        "api_key": "lwa-secret",
        "refresh_token": "Atzr|test-refresh",
        "marketplace_ids": ["ATVPDKIKX0DER"],
        "per_page": 2,
        **extra,
    }


def _orders(emulator: AmazonEmulator, ids: range, updated: datetime) -> None:
    for n in ids:
        emulator.put_order(
            f"902-0000000-{n:07d}", updated=updated, purchased=T0 - timedelta(hours=2)
        )


def _oid(n: int) -> str:
    return f"902-0000000-{n:07d}"


def _drain(
    poller: AmazonOrdersPoller, connection: dict[str, Any], cursor: str | None, now: datetime
) -> tuple[list[PollPage], str | None]:
    """Poll until a page says no more (the polling job does the same, one job a page)."""
    pages: list[PollPage] = []
    for _ in range(20):
        page = poller.poll(connection, cursor, now=now)
        pages.append(page)
        cursor = page.cursor if page.cursor is not None else cursor
        if not page.more:
            break
    return pages, cursor


def _ids(pages: list[PollPage]) -> list[str]:
    return [str(e["id"]) for page in pages for e in page.events]


def test_the_token_is_exchanged_once_and_reused_until_it_expires(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    connection = _connection(amazon)
    _orders(emulator, range(1, 2), T0 - timedelta(minutes=5))
    poller.poll(connection, None, now=T0)
    poller.poll(connection, None, now=T0 + timedelta(minutes=30))
    assert emulator.token_requests == 1
    assert poller.exchanges == 1
    tokens = {r["token"] for r in emulator.requests}
    assert len(tokens) == 1
    assert next(iter(tokens)).startswith("Atza|")
    # an hour later (the token lives 3600 s, renewed a minute early): a new exchange
    poller.poll(connection, None, now=T0 + timedelta(minutes=59, seconds=30))
    assert emulator.token_requests == 2
    # a token Amazon no longer takes (403): dropped, exchanged once more, the poll goes on
    emulator.expire_tokens()
    page = poller.poll(connection, None, now=T0 + timedelta(minutes=60))
    assert f"amazon:order-{_oid(1)}-placed" in [e["id"] for e in page.events]
    assert emulator.token_requests == 3


def test_next_token_pages_are_followed_and_nothing_is_read_twice(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    connection = _connection(amazon)
    same = T0 - timedelta(minutes=30)
    _orders(emulator, range(1, 3), T0 - timedelta(minutes=40))
    _orders(emulator, range(3, 6), same)  # orders 3..5 straddle the page boundaries
    # when polled, 2 orders to a page: three pages, the first two say more
    pages, cursor = _drain(poller, connection, None, T0)
    assert [p.more for p in pages] == [True, True, False]
    assert [len(p.events) for p in pages] == [4, 4, 2]  # placed + unshipped per order
    first = parse_cursor(pages[0].cursor)
    assert first is not None
    assert first.next_token is not None
    assert first.order_id == _oid(2)
    # the second and third requests followed the NextToken, not a new query
    assert [("NextToken" in r, "LastUpdatedAfter" in r) for r in emulator.requests] == [
        (False, True),
        (True, False),
        (True, False),
    ]
    ids = _ids(pages)
    assert len(ids) == len(set(ids)) == 10
    assert cursor == f"{same.strftime('%Y-%m-%dT%H:%M:%SZ')}|{_oid(5)}"
    # when polled again with nothing new: no events, the cursor stays (LastUpdatedAfter is
    # inclusive: the orders of the cursor's second come back and are skipped)
    again, same_cursor = _drain(poller, connection, cursor, T0 + timedelta(minutes=5))
    assert _ids(again) == []
    assert same_cursor == cursor
    # when one order of that second changes and a new one comes: only those are read
    emulator.put_order(_oid(4), updated=T0 + timedelta(minutes=2), status="Shipped")
    emulator.put_order(_oid(6), updated=T0 + timedelta(minutes=3), purchased=T0)
    later, last = _drain(poller, connection, cursor, T0 + timedelta(minutes=10))
    assert sorted(_ids(later)) == sorted(
        [
            f"amazon:order-{_oid(4)}-placed",
            f"amazon:order-{_oid(4)}-shipped",
            f"amazon:order-{_oid(6)}-placed",
            f"amazon:order-{_oid(6)}-unshipped",
        ]
    )
    assert last is not None
    assert last.endswith(f"|{_oid(6)}")


def test_a_first_page_of_orders_already_taken_is_followed_in_the_same_poll(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    connection = _connection(amazon)
    same = T0 - timedelta(minutes=30)
    _orders(emulator, range(1, 4), same)
    cursor = f"{same.strftime('%Y-%m-%dT%H:%M:%SZ')}|{_oid(2)}"
    page = poller.poll(connection, cursor, now=T0)
    assert {e["id"] for e in page.events} == {
        f"amazon:order-{_oid(3)}-placed",
        f"amazon:order-{_oid(3)}-unshipped",
    }
    assert not page.more
    assert page.cursor == f"{same.strftime('%Y-%m-%dT%H:%M:%SZ')}|{_oid(3)}"


def test_a_lost_next_token_starts_a_new_query_from_the_cursor(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    connection = _connection(amazon)
    _orders(emulator, range(1, 4), T0 - timedelta(minutes=10))
    first = poller.poll(connection, None, now=T0)
    assert first.cursor is not None
    stale = first.cursor.rsplit("|", 1)[0] + "|unknown-token"
    page = poller.poll(connection, stale, now=T0)
    assert {e["id"] for e in page.events} == {
        f"amazon:order-{_oid(3)}-placed",
        f"amazon:order-{_oid(3)}-unshipped",
    }
    assert not page.more


def test_429_is_temporary_and_refusals_are_clear(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    emulator.rate_limit()
    with pytest.raises(OutsideUnavailable, match=r"429.*0\.0167"):
        poller.poll(_connection(amazon), None, now=T0)
    emulator.fail_next(503)
    with pytest.raises(OutsideUnavailable, match="503"):
        poller.poll(_connection(amazon), None, now=T0)
    with pytest.raises(PollRefused, match="invalid_client"):
        AmazonOrdersPoller(client).poll(_connection(amazon, api_key="wrong"), None, now=T0)
    with pytest.raises(PollRefused, match="invalid_grant"):
        AmazonOrdersPoller(client).poll(_connection(amazon, refresh_token="Atzr|old"), None, now=T0)
    emulator.fail_next(400)
    with pytest.raises(PollRefused, match="400 InvalidInput"):
        poller.poll(_connection(amazon), None, now=T0)
    with pytest.raises(PollRefused, match="needs marketplace_ids"):
        poller.poll(_connection(amazon, marketplace_ids=[]), None, now=T0)


def test_a_403_after_a_fresh_token_is_a_refusal(
    amazon: RunningAmazon, client: httpx.Client
) -> None:
    emulator, poller = amazon.emulator, AmazonOrdersPoller(client)
    emulator.token_ttl = 0  # every token is expired at once
    with pytest.raises(PollRefused, match="403 Unauthorized"):
        poller.poll(_connection(amazon), None, now=T0)
    assert emulator.token_requests == 2


def test_timeouts_are_temporary(client: httpx.Client) -> None:
    poller = AmazonOrdersPoller(client)
    connection = {
        "base_url": "http://127.0.0.1:9",  # discard: nothing listens
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
        "marketplace_ids": "ATVPDKIKX0DER",
        "timeout_seconds": 1,
    }
    with pytest.raises(OutsideUnavailable, match="unreachable"):
        poller.poll(connection, None, now=T0)


# -- through the durable polling job --------------------------------------------------------


def test_the_polling_job_stores_every_order_once_and_keeps_the_cursor_on_429(
    db_url: str, tmp_path: Path, amazon: RunningAmazon, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(db_url)
    clock = SimulatedClock(T0)
    desk = bootstrap(Settings(database_url=db_url), clock=clock)
    emulator = amazon.emulator
    monkeypatch.setenv("AMZ_REFRESH_TOKEN", "Atzr|test-refresh")
    config = tmp_path / "acme.yaml"
    config.write_text(
        "merchant: acme\nconnectors:\n  polling:\n"
        f"    amazon: {{kind: amazon_spapi, base_url: '{amazon.base_url}',"
        " client_id: amzn1.application-oa2-client.test, api_key: lwa-secret,"
        " refresh_token_env: AMZ_REFRESH_TOKEN, marketplace_ids: [ATVPDKIKX0DER],"
        " per_page: 2, every: PT10M}\n",
        encoding="utf-8",
    )
    with desk.uow() as uow:
        merchant = admin.add_merchant(uow, clock=clock, name="acme", config=config)
        uow.commit()

    def run() -> tuple[int, int]:
        done = failed = 0
        runner = desk.job_runner("w1")
        for _ in range(20):
            stats = runner.run_due(limit=50)
            done, failed = done + stats.done, failed + stats.failed
            if stats.done + stats.failed + stats.lost == 0:
                break
        return done, failed

    def stored() -> list[str]:
        with desk.engine.connect() as db:
            return sorted(db.execute(select(events.c.event_id)).scalars())

    def cursor() -> str | None:
        with desk.reader() as uow:
            row = uow.polls.get(merchant.id, "amazon")
        assert row is not None
        return row.cursor

    try:
        _orders(emulator, range(1, 6), T0 - timedelta(minutes=30))
        with desk.uow() as uow:
            polling.schedule_polls(uow, clock.now())
            uow.commit()
        assert run() == (3, 0)  # three pages, one job each (more: at once)
        ids = stored()
        assert ids == sorted(
            f"amazon:order-{_oid(n)}-{fact}"
            for n in range(1, 6)
            for fact in ("placed", "unshipped")
        )
        first = cursor()
        assert first == f"{(T0 - timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}|{_oid(5)}"
        assert emulator.token_requests == 1
        # when Amazon rate-limits the next poll: the job fails, the cursor stays
        emulator.put_order(_oid(2), updated=T0 + timedelta(minutes=1), status="Canceled")
        emulator.rate_limit()
        clock.advance(timedelta(minutes=10))
        assert run() == (0, 1)
        assert cursor() == first
        assert f"amazon:order-{_oid(2)}-canceled" not in stored()
        with desk.engine.connect() as db:
            due = db.execute(
                select(jobs.c.due_at, jobs.c.last_error).where(
                    jobs.c.kind == polling.RUN, jobs.c.status == "pending"
                )
            ).one()
        assert "429" in (due.last_error or "")
        # when the retry comes: the change is read, once
        clock.advance_to(due.due_at)
        assert run() == (1, 0)
        after = stored()
        assert f"amazon:order-{_oid(2)}-canceled" in after
        assert len(after) == len(set(after)) == 11
        assert cursor() == f"{(T0 + timedelta(minutes=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}|{_oid(2)}"
    finally:
        desk.close()
