"""The desk's playbooks at work in the running desk, against the vendor emulators over real HTTP,
on SQLite and PostgreSQL.

A live desk (uvicorn in a thread) on a simulated clock, shared with the Stripe, Zendesk and
Shopify emulators (their objects and webhooks are stamped on it), with its public address and
decision secret set so its worker signs decision links. The merchant's ``connectors.outbound``
point at the emulators (Stripe for ``payments``, the 3PL for ``wms``, Zendesk for ``helpdesk``,
Shopify for ``storefront``), so each playbook call goes out through the outbox's
``outbound.send`` job to the emulator; the test runs the due jobs as the worker does
(``_work``) after moving the clock.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.sandbox.easypost_emulator import TEST_API_KEY as EASYPOST_KEY
from recoverydesk.sandbox.easypost_emulator import (
    EasyPostEmulator,
    RunningEasyPost,
    running_easypost_emulator,
)
from recoverydesk.sandbox.shopify_emulator import (
    TEST_TOKEN,
    RunningShopify,
    ShopifyEmulator,
    running_shopify_emulator,
)
from recoverydesk.sandbox.stripe_emulator import (
    TEST_KEY,
    Decline,
    RunningEmulator,
    StripeEmulator,
    running_stripe_emulator,
)
from recoverydesk.sandbox.threepl_emulator import RunningEmulator as RunningWarehouse
from recoverydesk.sandbox.threepl_emulator import ThreePLEmulator, serve_emulator
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox
from recoverydesk.sandbox.zendesk_emulator import RunningZendesk, ZendeskEmulator, serve_zendesk
from recoverydesk.services import merchants as admin
from recoverydesk.services.clock import SimulatedClock
from tests.e2e.conftest import LiveDesk

MERCHANT = "acme"
STRIPE_SECRET = "whsec_emulated_secret"
SHOPIFY_SECRET = "shpss_emulated_secret"
ZENDESK_SECRET = "zd_emulated_secret"
ZENDESK_EMAIL, ZENDESK_TOKEN = "agent@acme.test", "zd-token"
WMS_KEY = "wms-key"
DECISION_SECRET = "a-long-random-test-secret-for-decision-links"


@dataclass
class Systems:
    """The live desk, its clock and the merchant's systems (emulators on loopback)."""

    live: LiveDesk
    clock: SimulatedClock
    api: httpx.Client
    stripe: StripeEmulator
    zendesk: ZendeskEmulator
    warehouse: ThreePLEmulator
    shopify: ShopifyEmulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def clock() -> SimulatedClock:
    """The desk's time and the vendors' (one clock: webhooks are signed and stamped on it)."""
    return SimulatedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def live(db_url: str, clock: SimulatedClock) -> Iterator[LiveDesk]:
    """The desk as deployed: its public address known, so its worker signs decision links."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    secret = SecretStr(DECISION_SECRET)
    settings = Settings(database_url=db_url, public_url=base_url, decision_secret=secret)
    desk = bootstrap(settings, clock=clock)
    desk.upgrade()
    server = uvicorn.Server(
        uvicorn.Config(create_app(desk), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    running = LiveDesk(desk, base_url)
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=10)
        desk.close()


@pytest.fixture
def stripe_api(live: LiveDesk, clock: SimulatedClock) -> Iterator[RunningEmulator]:
    outbox = WebhookOutbox("stripe", clock=clock.now)
    outbox.aim(live.base_url, MERCHANT, STRIPE_SECRET)
    with running_stripe_emulator(outbox=outbox, clock=clock.now) as running:
        yield running


@pytest.fixture
def zendesk_api(live: LiveDesk, clock: SimulatedClock) -> Iterator[RunningZendesk]:
    outbox = WebhookOutbox("zendesk", clock=clock.now)
    outbox.aim(live.base_url, MERCHANT, ZENDESK_SECRET)
    emulator = ZendeskEmulator(
        email=ZENDESK_EMAIL, token=ZENDESK_TOKEN, outbox=outbox, clock=clock.now
    )
    with serve_zendesk(emulator) as running:
        yield running


@pytest.fixture
def shopify_api(live: LiveDesk, clock: SimulatedClock) -> Iterator[RunningShopify]:
    outbox = WebhookOutbox("shopify", clock=clock.now)
    outbox.aim(live.base_url, MERCHANT, SHOPIFY_SECRET)
    with running_shopify_emulator(webhooks=outbox, clock=clock.now) as running:
        yield running


@pytest.fixture
def warehouse_api() -> Iterator[RunningWarehouse]:
    with serve_emulator(ThreePLEmulator(api_key=WMS_KEY)) as running:
        yield running


@pytest.fixture
def systems(
    live: LiveDesk,
    clock: SimulatedClock,
    tmp_path: Path,
    stripe_api: RunningEmulator,
    zendesk_api: RunningZendesk,
    warehouse_api: RunningWarehouse,
    shopify_api: RunningShopify,
) -> Systems:
    """The merchant, configured with the emulators as its systems; a lead's API client. The
    webhook outboxes sign on the wall clock (as a vendor does), which the desk's simulated
    clock runs ahead of: the merchant's tolerance of a signature's age is a day."""
    config = f"""
merchant: {MERCHANT}
connectors:
  webhooks:
    stripe: {{secrets: [{STRIPE_SECRET}], tolerance: P1D}}
    zendesk: {{secrets: [{ZENDESK_SECRET}], tolerance: P1D}}
    shopify: {{secrets: [{SHOPIFY_SECRET}], tolerance: P1D}}
  outbound:
    payments: {{kind: stripe, base_url: "{stripe_api.base_url}", api_key: {TEST_KEY}}}
    storefront: {{kind: shopify_admin, base_url: "{shopify_api.base_url}", api_key: {TEST_TOKEN}}}
    wms: {{kind: wms_rest, base_url: "{warehouse_api.base_url}", api_key: {WMS_KEY}}}
    helpdesk: {{kind: zendesk, base_url: "{zendesk_api.base_url}", email: "{ZENDESK_EMAIL}",
               api_key: {ZENDESK_TOKEN}}}
"""
    token = live.token(MERCHANT, "lead")
    path = tmp_path / "acme.yaml"
    path.write_text(config, encoding="utf-8")
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=clock, name=MERCHANT, config=path)
        uow.commit()
    return Systems(
        live,
        clock,
        live.client(token),
        stripe_api.emulator,
        zendesk_api.emulator,
        warehouse_api.emulator,
        shopify_api.emulator,
    )


# -- helpers -------------------------------------------------------------------------------------


def _work(systems: Systems) -> None:
    """Run every job due at the desk's time, as its worker does."""
    runner = systems.live.desk.job_runner("test-worker")
    for _ in range(20):
        if runner.run_due(limit=50).done == 0:
            return
    raise AssertionError("the jobs did not settle")


def _sent(results: list[DeliveryResult]) -> list[tuple[str, int | None]]:
    return [(r.topic, r.status_code) for r in results]


def _post_events(systems: Systems, *docs: dict[str, Any]) -> None:
    answer = systems.api.post("/api/v1/events", json=list(docs))
    assert answer.status_code == 200, answer.text


def _event(ref: str, source: str, kind: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{source}:{kind}-{ref}",
        "source": source,
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {"ref": ref},
        "data": data,
    }


def _placed(ref: str, at: datetime, lines: list[dict[str, Any]], **ids: str) -> dict[str, Any]:
    value = sum(float(line["price"]) * int(line["qty"]) for line in lines)
    order = {
        "ref": ref,
        "channel": "shopify",
        "value": f"{value:.2f}",
        "currency": "USD",
        "placed_at": at.isoformat(),
        "customer": {"id": "c-1", "email": "kim@example.com"},
        "lines": lines,
        "shipping_address": {
            "name": "Kim Lee",
            "address1": "4 Harbour St",
            "city": "Portland",
            "province_code": "OR",
            "zip": "97201",
            "country_code": "US",
        },
        "ids": ids,
    }
    return {**_event(ref, "shopify", "order.placed", at), "order": order}


def _case(systems: Systems, ref: str, category: str) -> dict[str, Any]:
    found = systems.api.get("/api/v1/cases", params={"order": ref, "category": category})
    assert found.status_code == 200, found.text
    [listed] = found.json()["cases"]
    case = systems.api.get(f"/api/v1/cases/{listed['id']}")
    assert case.status_code == 200, case.text
    detail: dict[str, Any] = case.json()
    return detail


def _rows(case: dict[str, Any], kind: str, step: str | None = None) -> list[dict[str, Any]]:
    return [
        row["detail"]
        for row in case["timeline"]
        if row["kind"] == kind and (step is None or row["detail"].get("step") == step)
    ]


def _calls(systems: Systems, ref: str, action: str) -> list[dict[str, Any]]:
    calls = systems.api.get(f"/api/v1/orders/{ref}").json()["outbound_calls"]
    return [call for call in calls if call["action"] == action]


# -- 1. payment recovery -------------------------------------------------------------------------


def test_a_declined_payment_is_retried_by_its_playbook_until_stripe_authorizes_it(
    systems: Systems,
) -> None:
    stripe, clock = systems.stripe, systems.clock
    # given an order paid by a PaymentIntent (manual capture) whose card was declined
    intent = stripe.create_payment_intent(
        15000, capture=False, metadata={"order_ref": "1001"}, confirm=False
    )["id"]
    lines = [{"sku": "LAMP", "qty": 1, "price": "150.00"}]
    _post_events(systems, _placed("1001", clock.now() - timedelta(minutes=5), lines))
    stripe.fail_payment(intent, decline_code="insufficient_funds")
    # when Stripe's webhooks reach the desk: a payment case opens, its playbook waits an hour
    assert _sent(stripe.deliver_due()) == [
        ("charge.failed", 200),
        ("payment_intent.payment_failed", 200),
    ]
    case = _case(systems, "1001", "payment_failed")
    _work(systems)
    assert _rows(_case(systems, "1001", "payment_failed"), "playbook_step") == []
    key = f"playbook:{MERCHANT}:{case['id']}:retry_authorization"

    # when an hour has passed (the issuer declines the next attempt too)
    stripe.decline_next(intent, 1, Decline(decline_code="insufficient_funds"))
    clock.advance(timedelta(hours=1))
    _work(systems)
    # then the playbook's first retry reached Stripe under its key, and was declined
    confirms = [r for r in stripe.requests if r[1] == f"/v1/payment_intents/{intent}/confirm"]
    assert confirms == [("POST", f"/v1/payment_intents/{intent}/confirm", f"{key}:1")]
    [first] = _calls(systems, "1001", "retry_payment")
    assert (first["idempotency_key"], first["result"]) == (f"{key}:1", "accepted")
    assert first["answer"]["declined"] is True
    assert first["answer"]["decline_code"] == "insufficient_funds"
    case = _case(systems, "1001", "payment_failed")
    assert [row["attempt"] for row in _rows(case, "playbook_step", "retry_authorization")] == [1]
    [answered] = _rows(case, "playbook_answer", "retry_authorization")
    assert (answered["accepted"], answered["idempotency_key"]) == (True, f"{key}:1")
    # and Stripe reports the decline; the case stays open
    assert _sent(stripe.deliver_due()) == [
        ("charge.failed", 200),
        ("payment_intent.payment_failed", 200),
    ]
    assert _case(systems, "1001", "payment_failed")["closed_at"] is None

    # when the second retry falls due, six hours later
    clock.advance(timedelta(hours=6))
    _work(systems)
    # then it went through: the payment is authorized
    [_, second] = _calls(systems, "1001", "retry_payment")
    assert second["idempotency_key"] == f"{key}:2"
    assert (second["answer"]["status"], second["answer"]["declined"]) == ("requires_capture", False)
    assert stripe.payment_intent(intent)["status"] == "requires_capture"
    # and Stripe's signed webhooks close the case as released, with its root cause
    assert _sent(stripe.deliver_due()) == [
        ("charge.succeeded", 200),
        ("payment_intent.amount_capturable_updated", 200),
    ]
    case = _case(systems, "1001", "payment_failed")
    assert case["outcome"] == "released"
    assert case["closed_at"] is not None
    assert case["root_cause"]
    assert systems.api.get("/api/v1/orders/1001").json()["payment"]["authorized"] == "150.00"

    # when the third attempt's time comes: nothing more is tried
    clock.advance(timedelta(hours=6))
    _work(systems)
    assert len(_calls(systems, "1001", "retry_payment")) == 2
    confirms = [r for r in stripe.requests if r[1].endswith("/confirm")]
    assert [r[2] for r in confirms] == [f"{key}:1", f"{key}:2"]


# -- 3. chargeback -------------------------------------------------------------------------------


def test_a_dispute_on_a_delivered_order_gets_its_evidence_staged_at_stripe(
    systems: Systems,
) -> None:
    stripe, clock = systems.stripe, systems.clock
    # given a delivered order, paid at Stripe (the desk took Stripe's webhooks)
    placed = clock.now() - timedelta(days=12)
    intent = stripe.create_payment_intent(15000, metadata={"order_ref": "3001"})["id"]
    assert _sent(stripe.deliver_due()) == [
        ("charge.succeeded", 200),
        ("payment_intent.succeeded", 200),
    ]
    scan = {"tracking": "1Z999AA10123456784", "carrier": "ups"}
    lines = [{"sku": "LAMP", "qty": 1, "price": "150.00"}]
    _post_events(
        systems,
        _placed("3001", placed, lines, stripe_payment_intent=intent),
        _event("3001", "wms", "fulfillment.shipped", placed + timedelta(days=1), **scan),
        _event("3001", "carrier", "fulfillment.delivered", placed + timedelta(days=3), **scan),
    )
    # when the cardholder disputes it as not received
    dispute = stripe.open_dispute(intent, reason="product_not_received", due_in_days=7)
    assert _sent(stripe.deliver_due()) == [("charge.dispute.created", 200)]
    _work(systems)
    # then the playbook staged the evidence on the dispute at Stripe, not submitted
    stored = stripe.dispute(dispute["id"])
    evidence = stored["evidence"]
    assert evidence["shipping_tracking_number"] == "1Z999AA10123456784"
    assert evidence["shipping_carrier"] == "UPS"
    assert evidence["shipping_date"]
    assert stored["status"] == "needs_response"
    assert stored["evidence_details"]["submission_count"] == 0
    assert stored["evidence_details"]["has_evidence"] is True
    # and the case says so: the step ran under its key, Stripe accepted it
    case = _case(systems, "3001", "chargeback")
    key = f"playbook:{MERCHANT}:{case['id']}:evidence:1"
    [call] = _calls(systems, "3001", "dispute_evidence")
    assert call["idempotency_key"].startswith(key)
    assert call["result"] == "accepted"
    assert call["params"].get("submit") in (False, None)
    [answered] = _rows(case, "playbook_answer", "evidence")
    assert (answered["accepted"], answered["reference"]) == (True, dispute["id"])
    assert case["data"]["steps"]["evidence"]["dispute"] == dispute["id"]
    # and Stripe's update webhook is taken; running the jobs again sends nothing more
    assert [code for _, code in _sent(stripe.deliver_due())] == [200]
    _work(systems)
    assert len(_calls(systems, "3001", "dispute_evidence")) == 1


# -- 2. inventory --------------------------------------------------------------------------------


def _link(body: str, choice: str) -> str:
    found = re.search(rf"(http://\S+/decide/[A-Za-z0-9._-]+)\?choice={choice}\b", body)
    assert found, body
    return found.group(1)


def _lamp_short(systems: Systems) -> int:
    """An order of two items, the lamp short where it was to ship from but in stock elsewhere,
    the customer's ticket about it in Zendesk; the warehouse reports the lamp short and the
    worker runs. The ticket's id."""
    zendesk, warehouse, clock = systems.zendesk, systems.warehouse, systems.clock
    warehouse.add_order("5001", lines={"LAMP": 1, "DESK": 1})
    warehouse.set_stock("LAMP", {"reno": 0, "memphis": 4})
    lines = [
        {"sku": "LAMP", "qty": 1, "price": "129.00"},
        {"sku": "DESK", "qty": 1, "price": "80.00"},
    ]
    _post_events(systems, _placed("5001", clock.now() - timedelta(hours=1), lines))
    ticket = zendesk.open_ticket("Where is my order #5001?", "When does it ship?")
    assert _sent(zendesk.deliver_due()) == [("ticket.created", 200)]
    clock.advance(timedelta(minutes=5))
    _post_events(systems, _event("5001", "wms", "inventory.short", clock.now(), sku="LAMP"))
    _work(systems)
    return ticket


def test_stock_found_elsewhere_is_offered_and_the_customers_split_reaches_the_warehouse(
    systems: Systems,
) -> None:
    zendesk, warehouse, clock = systems.zendesk, systems.warehouse, systems.clock
    # given an order with a short lamp that another location has, and the customer's ticket
    # when the warehouse reports the lamp short
    ticket = _lamp_short(systems)
    # then the playbook looked the stock up at the warehouse, and the locations are on the case
    case = _case(systems, "5001", "inventory_mismatch")
    [lookup] = _calls(systems, "5001", "inventory_lookup")
    assert lookup["result"] == "accepted", lookup
    assert lookup["answer"]["locations"] == {"reno": 0, "memphis": 4}
    assert case["data"]["steps"]["locate_stock"]["done"] is True
    # and the stock decision went to the customer on the Zendesk ticket, with its links
    assert case["status"] == "waiting_customer"
    shown = zendesk.ticket(ticket)
    assert shown is not None
    body = shown["comments"][-1]["body"]
    page = _link(body, "split")
    assert page.startswith(systems.live.base_url)

    # when the customer, an hour later, opens the page and chooses to ship what is ready
    clock.advance(timedelta(hours=1))
    customer = systems.live.client()
    assert customer.get(page).status_code == 200
    chosen = customer.post(page, data={"choice": "split"})
    assert chosen.status_code == 200, chosen.text
    _work(systems)
    # then the split reached the warehouse under the playbook's key
    case = _case(systems, "5001", "inventory_mismatch")
    [split] = _calls(systems, "5001", "split_shipment")
    assert split["result"] == "accepted", split
    assert split["idempotency_key"] == f"playbook:{MERCHANT}:{case['id']}:split:1"
    [performed] = warehouse.performed
    assert (performed.action, performed.ref, performed.key) == (
        "split",
        "5001",
        split["idempotency_key"],
    )
    assert performed.body["lines"] == [{"sku": "DESK", "qty": 1}]
    # and the warehouse ships the desk now and backorders the lamp
    shipments = split["answer"]["shipments"]
    assert [(s["status"], s["lines"]) for s in shipments] == [
        ("released", [{"sku": "DESK", "qty": 1}]),
        ("backordered", [{"sku": "LAMP", "qty": 1}]),
    ]
    assert case["data"]["choice"] == "split"


def test_the_stock_the_warehouse_found_is_on_the_case(systems: Systems) -> None:
    _lamp_short(systems)
    case = _case(systems, "5001", "inventory_mismatch")
    located = case["data"]["steps"]["locate_stock"]["answer"]
    assert located["locations"] == {"reno": 0, "memphis": 4}
    assert located["in_stock"] is True


# -- 4. fraud hold -------------------------------------------------------------------------------


def _held_vip_order(systems: Systems) -> str:
    """A 100.00 order of a VIP customer placed in Shopify, which Shopify's fraud check holds."""
    shopify, clock = systems.shopify, systems.clock
    number = shopify.add_order(paid="100.00", email="kim@example.com")
    assert [code for _, code in _sent(shopify.deliver_due())] == [200, 200]
    tier = {"ref": number, "customer": {"tier": "vip"}}
    _post_events(systems, {**_event(number, "import", "order.updated", clock.now()), "order": tier})
    clock.advance(timedelta(minutes=5))
    shopify.place_hold(number, "HIGH_RISK_OF_FRAUD", notes="Shopify Flow: high risk")
    assert {code for _, code in _sent(shopify.deliver_due())} == {200}
    return number


def _holds(shopify: ShopifyEmulator, number: str) -> list[dict[str, Any]]:
    return [hold for fo in shopify.fulfillment_orders_of(number) for hold in fo.holds]


def test_a_vip_customers_low_value_order_on_a_fraud_hold_is_released_in_shopify_safely(
    systems: Systems,
) -> None:
    # given a VIP customer's low-value order, held in Shopify for fraud
    number = _held_vip_order(systems)
    case = _case(systems, number, "fraud_hold")
    assert _holds(systems.shopify, number)
    # when the worker runs the fraud playbook
    _work(systems)
    # then its safe release went to Shopify under the playbook's key, and was accepted
    case = _case(systems, number, "fraud_hold")
    [release] = _calls(systems, number, "release_hold")
    assert release["idempotency_key"] == f"playbook:{MERCHANT}:{case['id']}:safe_release:1"
    assert release["result"] == "accepted", release
    assert [row["step"] for row in _rows(case, "playbook_step", "safe_release")] == ["safe_release"]
    # and the suggested (manual) release did not run as well
    assert _rows(case, "playbook_step", "release_hold") == []
    asked = [
        r["variables"].get("id") for r in systems.shopify.requests if "order(id:" in r["query"]
    ]
    assert f"gid://shopify/Order/{number}" in asked
    assert release["answer"]["reference"] == f"gid://shopify/Order/{number}"


def test_the_fraud_hold_shopify_placed_is_gone_after_the_safe_release(systems: Systems) -> None:
    number = _held_vip_order(systems)
    _work(systems)
    assert _holds(systems.shopify, number) == []
    assert [fo.status for fo in systems.shopify.fulfillment_orders_of(number)] == ["OPEN"]


# -- 5. carrier claim (EasyPost) -----------------------------------------------------------------


@pytest.fixture
def easypost_api() -> Iterator[RunningEasyPost]:
    with running_easypost_emulator() as running:
        yield running


@pytest.fixture
def with_carrier(
    systems: Systems, easypost_api: RunningEasyPost, tmp_path: Path
) -> EasyPostEmulator:
    """The merchant's carrier connection added: EasyPost (the emulator), claims to its address."""
    path = tmp_path / "acme.yaml"
    carrier = (
        f'    carrier: {{kind: easypost, base_url: "{easypost_api.base_url}", '
        f"api_key: {EASYPOST_KEY}, contact_email: claims@acme.test}}\n"
    )
    path.write_text(path.read_text(encoding="utf-8") + carrier, encoding="utf-8")
    with systems.live.desk.uow() as uow:
        admin.apply_settings(uow, clock=systems.clock, name=MERCHANT, config=path)
        uow.commit()
    return easypost_api.emulator


def test_a_lost_parcel_is_claimed_at_easypost_by_its_playbook(
    systems: Systems, with_carrier: EasyPostEmulator
) -> None:
    clock, warehouse = systems.clock, systems.warehouse
    # given a shipped, insured parcel of a 59.00 order the warehouse knows
    warehouse.add_order("7101", lines={"MUG": 1})
    warehouse.set_stock("MUG", {"reno": 5})
    with_carrier.insure("1Z7101", "100.00")
    lines = [{"sku": "MUG", "qty": 1, "price": "59.00"}]
    _post_events(systems, _placed("7101", clock.now() - timedelta(days=3), lines))
    shipped = _event("7101", "wms", "fulfillment.shipped", clock.now() - timedelta(days=2))
    shipped["data"] = {"tracking": "1Z7101", "carrier": "ups"}
    _post_events(systems, shipped)
    # when the carrier reports it lost and the worker runs the delivery-exception playbook
    lost = _event("7101", "carrier", "delivery.exception", clock.now())
    lost["data"] = {"kind": "lost"}
    _post_events(systems, lost)
    _work(systems)
    # then a loss claim for the order's value went to EasyPost under the playbook's key
    case = _case(systems, "7101", "delivery_exception")
    [call] = _calls(systems, "7101", "claim")
    assert call["result"] == "accepted", call
    assert call["idempotency_key"] == f"playbook:{MERCHANT}:{case['id']}:carrier_claim:1"
    [claim] = with_carrier.claims
    assert (claim["tracking_code"], claim["type"], claim["requested_amount"]) == (
        "1Z7101",
        "loss",
        "59.00",
    )
    assert call["idempotency_key"] in claim["description"]
    assert claim["contact_email"] == "claims@acme.test"
    # and the claim's id and status are on the case
    facts = case["data"]["steps"]["carrier_claim"]["answer"]
    assert (facts["claim_id"], facts["status"]) == (claim["id"], "submitted")
