"""The web desk in a real browser (Debian's Chromium, headless, driven by Playwright) against a
live desk (uvicorn in a thread) on SQLite and PostgreSQL: log in, pick the top case of a
queue, run a playbook step, message the customer, close the case; start a cancellation and
watch its stop-ship steps complete on the page; and what a user may not do. Screenshots of the
board and the workspace go to ``test-artifacts/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.entrypoints.web.users_cli import add_web_user
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent
from tests.e2e.conftest import LiveDesk

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (scripts/test installs it)")
        pytest.skip(f"{CHROMIUM} is not installed: run scripts/test or apt-get install chromium")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live(db_url: str) -> Iterator[LiveDesk]:
    """The desk as deployed, with its decision secret (the composer sends signed links)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=db_url, public_url=base, decision_secret=SecretStr("x" * 32))
    desk = bootstrap(settings)
    desk.upgrade()
    server = uvicorn.Server(
        uvicorn.Config(create_app(desk), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.02)
    try:
        yield LiveDesk(desk, base)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        desk.close()


def _at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def _event(eid: str, kind: str, minutes: int, ref: str, source: str, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{eid}-{ref}",
        "source": source,
        "type": kind,
        "occurred_at": _at(minutes),
        "order": {"ref": ref},
        "data": data,
    }


def held_for_fraud(live: LiveDesk, merchant: str, ref: str) -> int:
    """A paid order being picked, then held for fraud: the desk opens a fraud-hold case (P1)."""
    with live.desk.uow() as uow:
        if uow.merchants.by_name(merchant) is None:
            admin.add_merchant(uow, clock=live.desk.clock, name=merchant)
        uow.commit()
    with live.desk.reader() as uow:
        found = uow.merchants.by_name(merchant)
    assert found is not None
    placed = {
        "id": f"placed-{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": _at(120),
        "order": {
            "ref": ref,
            "channel": "shopify",
            "fulfillment_type": "3pl",
            "value": "150.00",
            "currency": "USD",
            "placed_at": _at(120),
            "customer": {"id": "c-9", "email": "kim@example.com"},
            "lines": [{"sku": "LAMP", "qty": 1, "price": "150.00"}],
        },
        "data": {},
    }
    events = [
        placed,
        _event("cap", "payment.captured", 119, ref, "psp", amount="150.00", capture_id="ch"),
        _event("pick", "fulfillment.picking", 5, ref, "wms"),
        _event("hold", "hold.placed", 4, ref, "shopify", hold_type="fraud", reason="risk 91"),
    ]
    live.desk.ingest(found, [IncomingEvent(parse_event(e), json.dumps(e)) for e in events])
    with live.desk.reader() as uow:
        cases = uow.cases.for_orders(found.id, [ref], open_only=True)[ref]
    return cases[0].id or 0


def warehouse_answers(live: LiveDesk, merchant: str, ref: str) -> None:
    with live.desk.reader() as uow:
        found = uow.merchants.by_name(merchant)
    assert found is not None
    ack = _event("ack", "stopship.acknowledged", 0, ref, "wms")
    live.desk.ingest(found, [IncomingEvent(parse_event(ack), json.dumps(ack))])


def work(live: LiveDesk) -> None:
    """Run every due job, as the desk's worker does."""
    runner = live.desk.job_runner("test-worker")
    for _ in range(20):
        if runner.run_due(limit=50).done == 0:
            return


def a_user(live: LiveDesk, name: str, role: str, *merchants: str) -> None:
    add_web_user(live.desk, name, role, list(merchants), password_stdin=False, password=PASSWORD)


def log_in(browser: Any, live: LiveDesk, name: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live.base_url}/desk/board")
    assert "/desk/login" in page.url
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/desk/board"))
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_an_agent_works_the_top_case_from_the_board_to_closed(browser: Any, live: LiveDesk) -> None:
    # given two fraud holds of acme and an agent of acme
    first = held_for_fraud(live, "acme", "1001")
    held_for_fraud(live, "acme", "1002")
    a_user(live, "ana", "agent", "acme")
    # when the agent logs in, then the board shows the queue's counts and SLA countdowns
    page = log_in(browser, live, "ana")
    live_region = page.locator("#board-live")
    assert live_region.get_attribute("aria-live") == "polite"
    assert live_region.get_attribute("hx-trigger") == "every 5s"
    queues = page.get_by_role("table", name="Open cases by queue and priority")
    assert queues.locator("tbody tr").first.inner_text().split("\t")[1].strip() == "2"  # P1
    top = page.get_by_role("table", name=re.compile("Top of the queue"))
    assert re.search(r"(On track|At risk|Breached): ", top.inner_text())
    shot(page, "board.png")
    # when they pick the top case of the queue
    top.get_by_role("link", name=re.compile(r"^Case \d+$")).first.click()
    page.wait_for_url(re.compile(r"/desk/cases/\d+"))
    case_id = int(page.url.rsplit("/", 1)[-1].split("?")[0])
    assert case_id == first
    page.get_by_role("heading", name=re.compile("Order 1001: 360")).wait_for()
    # and run the playbook's verification checklist
    step = page.get_by_role("row", name=re.compile("Verify the order"))
    for box in step.get_by_role("checkbox").all():
        box.check()
    step.get_by_role("button", name="Run: Verify the order").click()
    page.get_by_role("status").filter(has_text="Done: run step").wait_for()
    assert "done" in page.get_by_role("row", name=re.compile("Verify the order")).inner_text()
    # and message the customer with a decision template
    page.get_by_label("Template (the customer chooses)").select_option("fraud_verification")
    page.get_by_role("button", name="Send the message").click()
    page.get_by_role("status").filter(has_text="Done: offer decision").wait_for()
    assert "waiting customer" in page.locator(".status").inner_text()
    shot(page, "workspace.png")
    # and close it with an outcome and a root cause from the merchant's list
    page.get_by_label("Outcome").select_option("denied")
    page.get_by_label("Root cause").select_option(index=1)
    page.get_by_role("button", name="Close the case").click()
    page.get_by_role("status").filter(has_text="Done: close").wait_for()
    assert page.locator(".status").inner_text() == "closed"
    assert page.get_by_role("button", name="Close the case").is_disabled()
    timeline = page.get_by_role("heading", name="Timeline").locator("..").inner_text()
    assert "ana" in timeline
    page.close()


def test_a_cancellation_s_stop_ship_steps_complete_on_the_page(
    browser: Any, live: LiveDesk
) -> None:
    # given a fraud hold on an order being picked, and a lead working it
    case_id = held_for_fraud(live, "acme", "2001")
    a_user(live, "lee", "lead", "acme")
    page = log_in(browser, live, "lee")
    page.goto(f"{live.base_url}/desk/cases/{case_id}")
    # when the lead starts a cancellation
    page.get_by_role("button", name="Start a cancellation").click()
    page.get_by_role("status").filter(has_text="Done: cancellation started").wait_for()
    progress = page.locator("ol.progress")
    assert "requested: not yet" not in progress.inner_text()
    # then a second cancellation cannot be started while this one runs (the reason shown)
    assert page.get_by_role("button", name="Start a cancellation").is_disabled()
    assert "a cancellation is running" in page.locator("#why-cancel").inner_text()
    # when the worker sends the stop, the warehouse acknowledges and the worker goes on
    work(live)
    warehouse_answers(live, "acme", "2001")
    work(live)
    # then, without a reload, the page shows every step done with its time
    page.locator("ol.progress li", has_text="customer notified: 20").wait_for(timeout=15_000)
    text = progress.inner_text()
    for step in ("stop sent", "stop acknowledged", "payment action", "customer notified"):
        assert re.search(rf"{step}: \d{{4}}-\d\d-\d\d \d\d:\d\d", text), text
    page.locator(".stage", has_text="done").wait_for()
    page.close()


def test_what_an_agent_may_not_do_is_refused_in_the_page_and_on_the_server(
    browser: Any, live: LiveDesk
) -> None:
    # given a case of acme, a case of globex, and an agent of acme
    case_id = held_for_fraud(live, "acme", "3001")
    other = held_for_fraud(live, "globex", "9001")
    a_user(live, "ana", "agent", "acme")
    page = log_in(browser, live, "ana")
    page.goto(f"{live.base_url}/desk/cases/{case_id}")
    # then the refund is disabled, and says why
    refund = page.get_by_role("button", name="Refund", exact=True)
    assert refund.is_disabled()
    assert page.locator("#why-refund").inner_text() == "finance only (finance, lead or admin)"
    # and a forged refund with the session's token is refused by the server
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = page.request.post(
        f"{live.base_url}/desk/cases/{case_id}/actions",
        form={"csrf_token": token or "", "action": "refund", "amount": "10.00"},
        max_redirects=0,
    )
    assert forged.status == 403
    # and a POST without the token is refused (CSRF)
    bare = page.request.post(
        f"{live.base_url}/desk/cases/{case_id}/actions", form={"action": "note", "note": "x"}
    )
    assert bare.status == 403
    # and another merchant's case does not exist for this agent
    answer = page.goto(f"{live.base_url}/desk/cases/{other}")
    assert answer is not None
    assert answer.status == 404
    # when the agent logs out, then the board asks for a login again
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/desk/login"))
    page.goto(f"{live.base_url}/desk/board")
    assert "/desk/login" in page.url
    page.close()


def test_the_board_reads_at_tablet_width_and_by_keyboard(browser: Any, live: LiveDesk) -> None:
    held_for_fraud(live, "acme", "4001")
    a_user(live, "ana", "agent", "acme")
    page = log_in(browser, live, "ana")
    page.set_viewport_size({"width": 768, "height": 1000})
    page.goto(f"{live.base_url}/desk/board")
    # then nothing scrolls sideways at 768 px
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    # and the first Tab reaches the skip link, which moves focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    shot(page, "board-768.png")
    page.close()


def test_an_agent_sends_a_plain_message_from_the_composer(browser: Any, live: LiveDesk) -> None:
    # given a fraud hold on an order whose customer has an email, and an agent of acme
    case_id = held_for_fraud(live, "acme", "5001")
    a_user(live, "ana", "agent", "acme")
    page = log_in(browser, live, "ana")
    page.goto(f"{live.base_url}/desk/cases/{case_id}")
    # when the agent picks the delay update among the plain messages
    chosen = page.get_by_label("Plain message (no choices)")
    assert "delay update" in chosen.inner_text()
    assert "stock decision" not in chosen.inner_text()  # that one asks to choose
    chosen.select_option("delay_update")
    # then the page previews the message the customer will get, before it is sent
    preview = page.locator("#message-preview")
    preview.get_by_text("Your order #5001 is delayed").wait_for()
    assert "By email to kim@example.com" in preview.inner_text()
    assert "Your order #5001 is running late." in preview.inner_text()
    shot(page, "workspace-message.png")
    # when they send it
    page.get_by_role("button", name="Send the plain message").click()
    page.get_by_role("status").filter(has_text="Done: send message").wait_for()
    # then the timeline shows the message, sent by the agent
    timeline = page.get_by_role("heading", name="Timeline").locator("..").inner_text()
    assert re.search(r"message sent by ana .*template: delay_update", timeline), timeline
    # and the worker sends one email through the outbox
    work(live)
    with live.desk.reader() as uow:
        merchant = uow.merchants.by_name("acme")
        assert merchant is not None
        calls = uow.outbound.for_order(merchant.id, "5001")
    sent = [call for call in calls if call["action"] == "send_message"]
    assert [(c["system"], c["params"]["to"]) for c in sent] == [("email", "kim@example.com")]
    assert sent[0]["params"]["subject"] == "Your order #5001 is delayed"
    page.close()
