"""The NetSuite connector and poller against the NetSuite emulator, over real HTTP on loopback:
OAuth 1.0a signing checked by the emulator, the account's concurrency limit, the ERP commands
of the stop-ship workflow and the poll of changed sales orders."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from recoverydesk.connectors.netsuite import (
    AccountLimiter,
    NetSuiteConnector,
    NetSuitePoller,
    erp_status,
)
from recoverydesk.sandbox.netsuite_emulator import (
    INVALID_LOGIN,
    Credentials,
    NetSuiteEmulator,
    RunningNetSuite,
    serve_netsuite,
)
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable

CREDS = Credentials(
    account="1234567_SB1",
    consumer_key="ck-1",
    consumer_secret="cs-1",
    token_id="tid-1",
    token_secret="ts-1",
)


@pytest.fixture
def emulator() -> NetSuiteEmulator:
    return NetSuiteEmulator(CREDS, concurrency=5)


@pytest.fixture
def netsuite(emulator: NetSuiteEmulator) -> Iterator[RunningNetSuite]:
    with serve_netsuite(emulator) as running:
        yield running


@pytest.fixture
def connector() -> Iterator[NetSuiteConnector]:
    found = NetSuiteConnector(timeout=5.0, limiter=AccountLimiter(), backoff=0.02)
    yield found
    found.close()


def _command(
    base_url: str,
    action: str = "erp_update",
    so_id: str | None = "501",
    *,
    key: str = "k-1",
    creds: Credentials = CREDS,
    connection: dict[str, Any] | None = None,
    **params: Any,
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref="1001",
        system="erp",
        action=action,
        key=key,
        params=params,
        connection=creds.connection(base_url, **(connection or {})),
        order_ids={"netsuite": so_id} if so_id else {},
    )


STOP = {
    "reason_code": "customer_request",
    "note": "Cancelled by the desk: customer request (changed mind)",
    "case_id": 42,
    "ticket": "ZD-9",
}


# -- the ERP update --------------------------------------------------------------------------------


def test_cancel_while_pending_approval(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1, "BULB": 2})
    answer = connector.send(_command(netsuite.base_url, status_action="cancel", **STOP))
    assert answer.accepted, answer.message
    assert answer.reference == "501"
    assert answer.facts == {"erp_action": "cancel", "erp_status": "cancelled"}
    order = emulator.order("501")
    assert order is not None
    assert order["orderStatus"] == {"id": "C", "refName": "Cancelled"}
    assert order["memo"] == f"{STOP['note']} (ticket ZD-9)"
    assert order["custbody_rd_cancel_reason"] == "customer_request"
    assert order["custbody_rd_case"] == "42"
    assert order["custbody_rd_command_key"] == "k-1"
    assert [line["isClosed"] for line in order["item"]["items"]] == [False, False]


def test_cancel_becomes_close_once_the_order_is_approved(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    """The desk asked to cancel, but NetSuite approved the order meanwhile: it is closed."""
    emulator.add_order("501", status="pendingFulfillment", lines={"LAMP": 1, "BULB": 2})
    answer = connector.send(
        _command(
            netsuite.base_url,
            status_action="cancel",
            connection={
                "reason_field": "custbody_why",
                "case_field": "custbody_link",
                "case_url": "https://desk.example/cases/{case_id}",
            },
            **STOP,
        )
    )
    assert answer.accepted, answer.message
    assert answer.facts == {"erp_action": "close", "erp_status": "closed"}
    order = emulator.order("501")
    assert order is not None
    assert order["status"] == {"id": "H", "refName": "Closed"}
    assert [line["isClosed"] for line in order["item"]["items"]] == [True, True]
    assert order["custbody_why"] == "customer_request"
    assert order["custbody_link"] == "https://desk.example/cases/42"
    assert "custbody_rd_cancel_reason" not in order


def test_close_when_pending_fulfillment_and_a_repeat_changes_nothing(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingFulfillment", lines={"LAMP": 1})
    first = connector.send(_command(netsuite.base_url, status_action="close", **STOP))
    assert first.accepted
    assert first.facts == {"erp_action": "close", "erp_status": "closed"}
    again = connector.send(_command(netsuite.base_url, status_action="close", **STOP))
    assert again.accepted
    assert again.facts == {"erp_status": "closed", "repeat": True}
    assert emulator.patches("501") == 1


def test_close_lines_for_a_partial_cancel(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="partiallyFulfilled", lines={"LAMP": 1, "BULB": 3, "SHADE": 2})
    lines = [{"sku": "LAMP", "qty": 1}, {"sku": "BULB", "qty": 2}]
    answer = connector.send(
        _command(netsuite.base_url, status_action="close_lines", lines=lines, **STOP)
    )
    assert answer.accepted, answer.message
    assert answer.facts == {"erp_action": "close_lines", "erp_status": "partially_fulfilled"}
    order = emulator.order("501")
    assert order is not None
    assert [
        (i["item"]["refName"], i["quantity"], i["isClosed"]) for i in order["item"]["items"]
    ] == [
        ("LAMP", 1, True),
        ("BULB", 1, False),
        ("SHADE", 2, False),
    ]
    assert order["status"]["refName"] == "Partially Fulfilled"
    assert order["custbody_rd_case"] == "42"
    # the retry of the same command (its key is on the record) does not reduce BULB again
    again = connector.send(
        _command(netsuite.base_url, status_action="close_lines", lines=lines, **STOP)
    )
    assert again.accepted
    assert emulator.patches("501") == 1
    unknown = connector.send(
        _command(
            netsuite.base_url,
            key="k-2",
            status_action="close_lines",
            lines=[{"sku": "SOFA", "qty": 1}],
        )
    )
    assert not unknown.accepted
    assert unknown.message == "the sales order has no open line for SOFA"


def test_an_order_already_cancelled_in_netsuite_is_done(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="cancelled", lines={"LAMP": 1})
    answer = connector.send(_command(netsuite.base_url, status_action="cancel", **STOP))
    assert answer.accepted
    assert answer.facts == {"erp_status": "cancelled", "already_stopped": True}
    assert emulator.patches("501") == 0


# -- return authorizations -----------------------------------------------------------------------


def test_return_authorization_is_created_once(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingBilling", lines={"LAMP": 1, "BULB": 3})
    params = {
        "reason_code": "customer_request",
        "case_id": 42,
        "note": "Shipped before the stop: converted to a return",
        "lines": [{"sku": "BULB", "qty": 2}],
    }
    answer = connector.send(_command(netsuite.base_url, "return_authorize", key="ra-1", **params))
    assert answer.accepted, answer.message
    assert answer.reference
    (ra,) = emulator.returns()
    assert ra.id == answer.reference
    assert answer.facts == {"return_authorization": ra.id}
    assert ra.created_from == "501"
    assert ra.memo == params["note"]
    assert ra.lines == [{"sku": "BULB", "quantity": 2}]
    assert ra.custom == {
        "custbody_rd_command_key": "ra-1",
        "custbody_rd_cancel_reason": "customer_request",
        "custbody_rd_case": "42",
    }
    assert ra.idempotency_key == "ra-1"
    # the retry carries the same idempotency key: the same record, not a second one
    again = connector.send(_command(netsuite.base_url, "return_authorize", key="ra-1", **params))
    assert again == answer
    assert len(emulator.returns()) == 1
    # the whole order when no lines are named
    whole = connector.send(_command(netsuite.base_url, "return_authorize", key="ra-2"))
    assert whole.accepted
    assert emulator.returns()[-1].lines == [
        {"sku": "LAMP", "quantity": 1},
        {"sku": "BULB", "quantity": 3},
    ]


def test_a_return_of_an_unapproved_order_is_refused_with_netsuites_words(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1})
    answer = connector.send(_command(netsuite.base_url, "return_authorize", key="ra-1"))
    assert not answer.accepted
    assert answer.message == (
        "You cannot create a return authorization from a sales order that is Pending Approval."
    )
    assert answer.facts == {"http_status": 400, "code": "INVALID_INITIALIZE_REF"}


# -- authentication ------------------------------------------------------------------------------


def test_a_bad_signature_is_refused(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1})
    wrong = dataclasses.replace(CREDS, token_secret="not-it")
    answer = connector.send(
        _command(netsuite.base_url, creds=wrong, status_action="cancel", **STOP)
    )
    assert not answer.accepted
    assert answer.message == INVALID_LOGIN
    assert answer.facts == {"http_status": 401, "code": "INVALID_LOGIN"}
    assert emulator.unauthorized == 1
    assert emulator.patches("501") == 0
    order = emulator.order("501")
    assert order is not None
    assert order["status"]["refName"] == "Pending Approval"


def _signed(base_url: str, path: str, creds: Credentials = CREDS) -> tuple[str, dict[str, str]]:
    url = f"{base_url}{path}"
    client = Client(
        creds.consumer_key,
        client_secret=creds.consumer_secret,
        resource_owner_key=creds.token_id,
        resource_owner_secret=creds.token_secret,
        signature_method=SIGNATURE_HMAC_SHA256,
        realm=creds.account,
    )
    _, headers, _ = client.sign(url, http_method="GET")
    return url, {"Authorization": headers["Authorization"]}


def test_the_emulator_checks_every_part_of_the_signature(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    emulator.add_order("501", lines={"LAMP": 1})
    path = "/services/rest/record/v1/salesOrder/501"
    with httpx.Client(timeout=5) as http:
        url, headers = _signed(netsuite.base_url, path)
        assert http.get(url, headers=headers).status_code == 200
        # the same nonce again (a replay)
        assert http.get(url, headers=headers).status_code == 401
        # signed for another URL
        _, other = _signed(netsuite.base_url, "/services/rest/record/v1/salesOrder/502")
        assert http.get(url, headers=other).status_code == 401
        # another realm, and no signature at all
        _, foreign = _signed(netsuite.base_url, path, Credentials(account="999"))
        assert http.get(url, headers=foreign).status_code == 401
        refused = http.get(url)
        assert refused.status_code == 401
        assert refused.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


# -- concurrency -----------------------------------------------------------------------------------


def _cancel_many(
    connectors: list[NetSuiteConnector], base_url: str, count: int, concurrency: int
) -> list[Any]:
    start = threading.Barrier(count)

    def one(n: int) -> Any:
        command = _command(
            base_url,
            so_id=str(600 + n),
            key=f"c-{n}",
            connection={"concurrency": concurrency},
            status_action="cancel",
            **STOP,
        )
        start.wait()
        try:
            return connectors[n % len(connectors)].send(command)
        except OutsideUnavailable as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_twenty_commands_within_a_limit_of_two_all_succeed(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    emulator.set_concurrency(CREDS.account, 2)
    emulator.latency = 0.03
    for n in range(20):
        emulator.add_order(str(600 + n), status="pendingApproval", lines={"LAMP": 1})
    # two connectors (the outbound one and, say, a poller's) share one limiter's slots; no
    # retries on 429, so one 429 would fail a command
    limiter = AccountLimiter()
    connectors = [NetSuiteConnector(timeout=10, limiter=limiter, retries=0) for _ in range(2)]
    try:
        answers = _cancel_many(connectors, netsuite.base_url, 20, concurrency=2)
    finally:
        for connector in connectors:
            connector.close()
    assert all(not isinstance(a, Exception) and a.accepted for a in answers), answers
    assert emulator.limited == 0
    assert emulator.max_in_flight[CREDS.account] == 2
    for n in range(20):
        order = emulator.order(str(600 + n))
        assert order is not None
        assert order["status"]["refName"] == "Cancelled"


def test_without_the_limiter_the_emulator_answers_429(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    """The same load with the account's limit configured too high at the desk (20): the
    emulator enforces its limit of 2, and with no retries left the commands are retried later."""
    emulator.set_concurrency(CREDS.account, 2)
    emulator.latency = 0.05
    for n in range(20):
        emulator.add_order(str(600 + n), status="pendingApproval", lines={"LAMP": 1})
    connector = NetSuiteConnector(timeout=10, limiter=AccountLimiter(), retries=0)
    try:
        answers = _cancel_many([connector], netsuite.base_url, 20, concurrency=20)
    finally:
        connector.close()
    failed = [a for a in answers if isinstance(a, OutsideUnavailable)]
    assert failed
    assert emulator.limited >= len(failed)
    assert all("HTTP 429: Concurrent request limit exceeded" in str(a) for a in failed)
    assert emulator.max_in_flight[CREDS.account] == 2


def test_429_is_retried_with_backoff_then_succeeds(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1})
    delays: list[float] = []
    connector = NetSuiteConnector(
        timeout=5, limiter=AccountLimiter(), retries=3, backoff=0.01, sleep=delays.append
    )
    try:
        emulator.fail_next(429, message="Concurrent request limit exceeded.")
        emulator.fail_next(429, message="Concurrent request limit exceeded.")
        answer = connector.send(_command(netsuite.base_url, status_action="cancel", **STOP))
        assert answer.accepted
        assert len(delays) == 2
        assert all(0 <= d <= 0.02 for d in delays)
        for _ in range(4):
            emulator.fail_next(429, message="Concurrent request limit exceeded.")
        with pytest.raises(OutsideUnavailable, match="HTTP 429"):
            connector.send(_command(netsuite.base_url, key="k-2", status_action="cancel"))
    finally:
        connector.close()


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_later(
    emulator: NetSuiteEmulator,
    netsuite: RunningNetSuite,
    connector: NetSuiteConnector,
    status: int,
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1})
    emulator.fail_next(status, message="An unexpected error occurred.")
    with pytest.raises(OutsideUnavailable, match=f"HTTP {status}: An unexpected error occurred"):
        connector.send(_command(netsuite.base_url, status_action="cancel", **STOP))
    assert emulator.patches("501") == 0
    assert connector.send(_command(netsuite.base_url, status_action="cancel", **STOP)).accepted


def test_timeouts_and_unreachable_accounts_are_retried_later(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    emulator.add_order("501", status="pendingApproval", lines={"LAMP": 1})
    emulator.latency = 1.0
    slow = _command(netsuite.base_url, connection={"timeout_seconds": 0.2}, status_action="cancel")
    with pytest.raises(OutsideUnavailable, match="timed out"):
        connector.send(slow)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(OutsideUnavailable, match="ConnectError"):
        connector.send(_command(closed, status_action="cancel"))


def test_an_unknown_record_is_refused_with_netsuites_message(
    netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    answer = connector.send(_command(netsuite.base_url, so_id="404404", status_action="close"))
    assert not answer.accepted
    assert answer.message == (
        "The record instance does not exist. Provide a valid record instance ID."
    )
    assert answer.facts == {"http_status": 404, "code": "NONEXISTENT_ID"}


def test_what_cannot_be_sent_is_refused_without_a_call(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite, connector: NetSuiteConnector
) -> None:
    no_id = connector.send(_command(netsuite.base_url, so_id=None, status_action="close"))
    assert not no_id.accepted
    assert no_id.facts == {"code": "no_erp_id"}
    by_param = _command(netsuite.base_url, so_id=None, status_action="close", erp_id="404")
    assert connector.send(by_param).facts["code"] == "NONEXISTENT_ID"
    incomplete = OutsideCommand(
        merchant_id=1,
        order_ref="1001",
        system="erp",
        action="erp_update",
        key="k",
        params={"status_action": "close"},
        connection={"kind": "netsuite", "account": "1"},
        order_ids={"netsuite": "501"},
    )
    answer = connector.send(incomplete)
    assert not answer.accepted
    assert answer.facts == {"code": "connection_incomplete"}
    other = connector.send(_command(netsuite.base_url, "wms_hold"))
    assert other.facts == {"code": "unsupported_action"}
    assert emulator.requests == [("GET", "/services/rest/record/v1/salesOrder/404")]


def test_status_spellings() -> None:
    assert erp_status({"id": "A", "refName": "Pending Approval"}) == "pending_approval"
    assert erp_status("SalesOrd:B") == "pending_fulfillment"
    assert erp_status("pendingBillingPartFulfilled") == "pending_billing_partially_fulfilled"
    assert erp_status("Closed") == "closed"
    assert erp_status("fullyBilled") == "billed"
    assert erp_status("Z") is None


# -- the poller ------------------------------------------------------------------------------------


def test_the_poller_reads_changed_sales_orders_page_by_page(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    t0 = datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC)
    emulator.add_order("701", status="pendingApproval", other_ref="1001", modified=t0)
    emulator.add_order(
        "702", status="pendingFulfillment", other_ref="1002", lines={"LAMP": 1}, modified=t0
    )
    emulator.add_order("703", status="cancelled", other_ref="1003", modified=t0)
    emulator.add_order("704", status="closed", tran_id="SO-704", modified=t0 + timedelta(seconds=5))
    emulator.add_order("650", status="fullyBilled", modified=t0 - timedelta(days=3))
    poller = NetSuitePoller(page_size=2, limiter=AccountLimiter())
    connection = CREDS.connection(netsuite.base_url)
    now = t0 + timedelta(hours=1)
    try:
        first = poller.poll(connection, None, now=now)
        assert first.more
        assert first.cursor == "2026-11-20 14:00:00|702"
        assert [(e["type"], e["order"]["ref"], e["data"]["erp_status"]) for e in first.events] == [
            ("order.updated", "1001", "pending_approval"),
            ("order.updated", "1002", "pending_fulfillment"),
        ]
        assert first.events[0]["order"]["ids"] == {"netsuite": "701"}
        assert first.events[0]["occurred_at"] == "2026-11-20T14:00:00Z"
        second = poller.poll(connection, first.cursor, now=now)
        assert not second.more
        assert second.cursor == "2026-11-20 14:00:05|704"
        assert [(e["type"], e["order"]["ref"], e["data"]["erp_status"]) for e in second.events] == [
            ("order.updated", "1003", "cancelled"),
            ("order.cancelled", "1003", "cancelled"),
            ("order.updated", "SO-704", "closed"),
            ("order.cancelled", "SO-704", "closed"),
        ]
        # the events are canonical, and their ids the same on every read
        for event in first.events + second.events:
            parse_event(event)
        again = poller.poll(connection, first.cursor, now=now)
        assert [e["id"] for e in again.events] == [e["id"] for e in second.events]
        # nothing new: the cursor stays where it was
        idle = poller.poll(connection, second.cursor, now=now)
        assert (idle.events, idle.cursor, idle.more) == ([], second.cursor, False)
        # a change made by the connector is read on the next poll
        emulator.clock = lambda: t0 + timedelta(minutes=10)
        emulator.set_status("702", "pendingFulfillment")
        connector = NetSuiteConnector(timeout=5, limiter=AccountLimiter())
        try:
            answer = connector.send(
                _command(netsuite.base_url, so_id="702", status_action="close", **STOP)
            )
        finally:
            connector.close()
        assert answer.accepted
        later = poller.poll(connection, second.cursor, now=now)
        assert [(e["type"], e["order"]["ref"]) for e in later.events] == [
            ("order.updated", "1002"),
            ("order.cancelled", "1002"),
        ]
        assert later.cursor == "2026-11-20 14:10:00|702"
    finally:
        poller.close()


def test_the_poller_reads_in_the_accounts_time_zone(netsuite: RunningNetSuite) -> None:
    emulator = netsuite.emulator
    emulator.zone = ZoneInfo("America/Los_Angeles")
    t0 = datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC)
    emulator.add_order("801", status="pendingBilling", other_ref="2001", modified=t0)
    poller = NetSuitePoller(limiter=AccountLimiter())
    try:
        page = poller.poll(
            CREDS.connection(netsuite.base_url, time_zone="America/Los_Angeles"),
            None,
            now=t0 + timedelta(minutes=5),
        )
    finally:
        poller.close()
    assert page.cursor == "2026-11-20 06:00:00|801"
    assert page.events[0]["occurred_at"] == "2026-11-20T14:00:00Z"


def test_the_poller_raises_unavailable_when_netsuite_fails(
    emulator: NetSuiteEmulator, netsuite: RunningNetSuite
) -> None:
    poller = NetSuitePoller(limiter=AccountLimiter())
    try:
        emulator.fail_next(503, message="Service unavailable")
        with pytest.raises(OutsideUnavailable, match="HTTP 503"):
            poller.poll(CREDS.connection(netsuite.base_url), None, now=datetime.now(UTC))
        wrong = Credentials(account=CREDS.account, consumer_key="ck-1", token_id="tid-1")
        with pytest.raises(OutsideUnavailable, match="Invalid login attempt"):
            poller.poll(wrong.connection(netsuite.base_url), None, now=datetime.now(UTC))
    finally:
        poller.close()
