"""Users of the web desk over real HTTP (a live desk, SQLite and PostgreSQL): passwords, the
session cookie, roles checked on the server, CSRF on every POST, merchant isolation by URL and
the audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from recoverydesk.domain.errors import Conflict, InvalidInput
from recoverydesk.entrypoints.web.users_cli import add_web_user
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent
from tests.e2e.conftest import LiveDesk, live

__all__ = ["live"]
PASSWORD = "a long enough password"


def _at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def unpaid_order(live: LiveDesk, merchant: str, ref: str) -> int:
    """An order whose payment failed: the desk opens a payment case. Returns its id."""
    with live.desk.uow() as uow:
        if uow.merchants.by_name(merchant) is None:
            admin.add_merchant(uow, clock=live.desk.clock, name=merchant)
        uow.commit()
    with live.desk.reader() as uow:
        found = uow.merchants.by_name(merchant)
    assert found is not None
    events = [
        {
            "id": f"placed-{ref}",
            "source": "shopify",
            "type": "order.placed",
            "occurred_at": _at(60),
            "order": {
                "ref": ref,
                "channel": "shopify",
                "fulfillment_type": "3pl",
                "value": "80.00",
                "currency": "USD",
                "placed_at": _at(60),
                "customer": {"id": "c-1", "email": "kim@example.com"},
                "lines": [{"sku": "LAMP", "qty": 1, "price": "80.00"}],
            },
            "data": {},
        },
        {
            "id": f"failed-{ref}",
            "source": "psp",
            "type": "payment.failed",
            "occurred_at": _at(50),
            "order": {"ref": ref},
            "data": {"amount": "80.00", "reason": "card_declined"},
        },
    ]
    live.desk.ingest(found, [IncomingEvent(parse_event(e), json.dumps(e)) for e in events])
    with live.desk.reader() as uow:
        cases = uow.cases.for_orders(found.id, [ref], open_only=True)[ref]
    return cases[0].id or 0


def a_user(live: LiveDesk, name: str, role: str, *merchants: str) -> None:
    add_web_user(live.desk, name, role, list(merchants), password_stdin=False, password=PASSWORD)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def logged_in(live: LiveDesk, name: str, password: str = PASSWORD) -> httpx.Client:
    browser = live.client()
    form = browser.get("/desk/login")
    answer = browser.post(
        "/desk/login",
        data={"name": name, "password": password, "csrf_token": _csrf(form.text)},
    )
    assert answer.status_code == 303, answer.text
    return browser


def post_action(browser: httpx.Client, case_id: int, **fields: Any) -> httpx.Response:
    page = browser.get(f"/desk/cases/{case_id}")
    data = {"csrf_token": _csrf(page.text), **fields}
    return browser.post(f"/desk/cases/{case_id}/actions", data=data)


def audit(live: LiveDesk) -> list[tuple[str, str, str | None]]:
    with SqlUserStore(live.desk.engine) as users:
        trail = users.audit_trail(limit=50)
    return [(entry.user, entry.action, entry.target) for entry in reversed(trail)]


def test_a_page_of_the_desk_asks_for_a_login_first(live: LiveDesk) -> None:
    # given a visitor without a session; when they open the board
    answer = live.client().get("/desk/board?queue=payments")
    # then they are sent to the login page, which brings them back afterwards
    assert answer.status_code == 303
    assert answer.headers["location"] == "/desk/login?next=%2Fdesk%2Fboard%3Fqueue%3Dpayments"


def test_login_sets_a_secure_session_cookie_and_a_wrong_password_is_refused(
    live: LiveDesk,
) -> None:
    # given a user of acme
    unpaid_order(live, "acme", "1001")
    a_user(live, "ana", "agent", "acme")
    # when they log in with a wrong password, then they stay out, and it is audited
    browser = live.client()
    form = browser.get("/desk/login")
    wrong = browser.post(
        "/desk/login", data={"name": "ana", "password": "not it", "csrf_token": _csrf(form.text)}
    )
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    # when they log in with the right one, then the cookie is HttpOnly, SameSite=Lax, /desk only
    browser = logged_in(live, "ana")
    cookie = next(c for c in browser.cookies.jar if c.name == "rd_session")
    assert cookie.path == "/desk"
    assert cookie.has_nonstandard_attr("HttpOnly")
    board = browser.get("/desk/board")
    assert board.status_code == 200
    assert "ana" in board.text
    assert "(agent)" in board.text
    # and the password is stored as an argon2id hash, never in clear
    with SqlUserStore(live.desk.engine) as users:
        stored = users.by_name("ana")
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert [a for _, a, _ in audit(live)] == ["user_add", "login_failed", "login"]


def test_a_login_without_the_form_s_token_is_refused(live: LiveDesk) -> None:
    answer = live.client().post("/desk/login", data={"name": "ana", "password": PASSWORD})
    assert answer.status_code == 403


def test_a_user_sees_only_its_merchants_cases_even_by_url(live: LiveDesk) -> None:
    # given a case of acme and a case of globex, and a user of acme only
    acme_case = unpaid_order(live, "acme", "1001")
    globex_case = unpaid_order(live, "globex", "9001")
    a_user(live, "ana", "agent", "acme")
    browser = logged_in(live, "ana")
    # when they open acme's case, then they see it
    assert browser.get(f"/desk/cases/{acme_case}").status_code == 200
    # when they type globex's case into the URL, then it does not exist for them
    for path in (f"/desk/cases/{globex_case}", f"/desk/cases/{globex_case}/live"):
        assert browser.get(path).status_code == 404
    # and acting on it is a 404 too, and changes nothing
    acting = post_action(browser, acme_case, action="note", note="x")
    assert acting.status_code == 303
    page = browser.get(f"/desk/cases/{acme_case}")
    forged = browser.post(
        f"/desk/cases/{globex_case}/actions",
        data={"csrf_token": _csrf(page.text), "action": "note", "note": "mine now"},
    )
    assert forged.status_code == 404
    # and the board does not offer another merchant
    with live.desk.reader() as uow:
        globex = uow.merchants.by_name("globex")
    assert globex is not None
    assert browser.get(f"/desk/board?merchant={globex.id}").status_code == 404


def test_a_provider_agent_works_several_merchants(live: LiveDesk) -> None:
    acme_case = unpaid_order(live, "acme", "1001")
    globex_case = unpaid_order(live, "globex", "9001")
    a_user(live, "pat", "agent", "acme", "globex")
    browser = logged_in(live, "pat")
    assert browser.get(f"/desk/cases/{acme_case}").status_code == 200
    assert browser.get(f"/desk/cases/{globex_case}").status_code == 200
    board = browser.get("/desk/board")
    assert 'id="merchant"' in board.text  # a merchant picker


def test_an_agent_cannot_refund_but_finance_may(live: LiveDesk) -> None:
    case_id = unpaid_order(live, "acme", "1001")
    a_user(live, "ana", "agent", "acme")
    a_user(live, "fay", "finance", "acme")
    agent = logged_in(live, "ana")
    # then the page shows the refund disabled with the reason
    page = agent.get(f"/desk/cases/{case_id}").text
    assert re.search(r'<button type="submit" disabled aria-describedby="why-refund">Refund', page)
    assert "finance only" in page
    # and a forged POST is refused on the server
    forged = post_action(agent, case_id, action="refund", amount="10.00")
    assert forged.status_code == 403
    assert "finance, lead or admin" in forged.text
    # while finance is not refused for its role (the ledger has nothing captured to refund)
    finance = logged_in(live, "fay")
    answer = post_action(finance, case_id, action="refund", amount="10.00")
    assert answer.status_code != 403
    assert ("ana", "case.refund", f"case:{case_id}") in audit(live)


def test_every_post_needs_the_session_s_csrf_token(live: LiveDesk) -> None:
    case_id = unpaid_order(live, "acme", "1001")
    a_user(live, "ana", "agent", "acme")
    browser = logged_in(live, "ana")
    # when a POST comes without the token, or with another one, then it is refused
    bare = browser.post(f"/desk/cases/{case_id}/actions", data={"action": "note", "note": "x"})
    wrong = browser.post(
        f"/desk/cases/{case_id}/actions",
        data={"action": "note", "note": "x", "csrf_token": "forged"},
    )
    assert (bare.status_code, wrong.status_code) == (403, 403)
    # when it comes in the htmx header, then it is accepted
    token = _csrf(browser.get(f"/desk/cases/{case_id}").text)
    ok = browser.post(
        f"/desk/cases/{case_id}/actions",
        data={"action": "note", "note": "by htmx"},
        headers={"X-CSRF-Token": token},
    )
    assert ok.status_code == 303
    with live.desk.reader() as uow:
        merchant = uow.merchants.by_name("acme")
        assert merchant is not None
        notes = [r for r in uow.cases.timeline(merchant.id, case_id) if r["kind"] == "note"]
    assert [n["detail"]["text"] for n in notes] == ["by htmx"]


def test_logout_ends_the_session_on_the_server(live: LiveDesk) -> None:
    unpaid_order(live, "acme", "1001")
    a_user(live, "ana", "agent", "acme")
    browser = logged_in(live, "ana")
    stolen = browser.cookies.get("rd_session")
    token = _csrf(browser.get("/desk/board").text)
    assert browser.post("/desk/logout", data={"csrf_token": token}).status_code == 303
    # then the old cookie, replayed, opens nothing
    replay = live.client()
    replay.cookies.set("rd_session", stolen or "", path="/desk")
    assert replay.get("/desk/board").status_code == 303
    assert [a for _, a, _ in audit(live)][-2:] == ["login", "logout"]


def test_adding_users_checks_role_merchant_password_and_name(live: LiveDesk) -> None:
    unpaid_order(live, "acme", "1001")
    a_user(live, "ana", "agent", "acme")
    with pytest.raises(Conflict):
        a_user(live, "ana", "lead", "acme")
    with pytest.raises(InvalidInput, match="unknown role"):
        a_user(live, "bob", "boss", "acme")
    with pytest.raises(InvalidInput, match="password"):
        add_web_user(live.desk, "bob", "agent", ["acme"], password_stdin=False, password="short")
    with pytest.raises(InvalidInput, match="merchant"):
        add_web_user(live.desk, "bob", "agent", [], password_stdin=False, password=PASSWORD)
