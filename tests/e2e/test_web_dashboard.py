"""The web desk's KPI dashboard and the export upload, over real HTTP against a live desk
(SQLite and PostgreSQL for the dashboard): tiles with known figures from ingested events, the
charts with their text alternatives, the week's report from the session, merchant isolation;
the assessment of an uploaded export matching ``recoverydesk assess`` on the same file, runs
bound to their user, CSRF, roles and the size limit; and the dashboard in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.entrypoints.web.dashboard_assess import runs_of
from recoverydesk.entrypoints.web.users_cli import add_web_user
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent
from tests.e2e.conftest import LiveDesk

PASSWORD = "a long enough password"
RETAIL = Path("/work/shared/data/online_retail_head1000/online_retail_head1000.csv")
CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def a_week_ago_fortnight() -> tuple[str, datetime]:
    """A whole ISO week in the past (two weeks back) and its Tuesday 10:00 UTC."""
    monday = datetime.now(UTC).date() - timedelta(days=14)
    monday -= timedelta(days=monday.weekday())
    year, week, _ = monday.isocalendar()
    tuesday = datetime(monday.year, monday.month, monday.day, 10, tzinfo=UTC) + timedelta(days=1)
    return f"{year}-W{week:02d}", tuesday


def merchant_id(live: LiveDesk, name: str) -> int:
    with live.desk.uow() as uow:
        if uow.merchants.by_name(name) is None:
            admin.add_merchant(uow, clock=live.desk.clock, name=name)
        uow.commit()
    with live.desk.reader() as uow:
        found = uow.merchants.by_name(name)
    assert found is not None
    return found.id


def four_orders_one_cancelled(live: LiveDesk, merchant: str, when: datetime) -> None:
    """Four orders placed on one Tuesday; the last is cancelled before anything shipped."""
    merchant_id(live, merchant)
    with live.desk.reader() as uow:
        found = uow.merchants.by_name(merchant)
    assert found is not None
    events: list[dict[str, Any]] = []
    for number in range(1, 5):
        ref = f"{merchant}-{number}"
        placed = (when + timedelta(minutes=number)).isoformat()
        events.append(
            {
                "id": f"placed-{ref}",
                "source": "shopify",
                "type": "order.placed",
                "occurred_at": placed,
                "order": {
                    "ref": ref,
                    "channel": "shopify",
                    "fulfillment_type": "3pl",
                    "value": "40.00",
                    "currency": "USD",
                    "placed_at": placed,
                    "customer": {"email": f"{ref}@example.com"},
                    "lines": [{"sku": "MUG", "qty": 1, "price": "40.00"}],
                },
                "data": {},
            }
        )
    events.append(
        {
            "id": f"cancel-{merchant}-4",
            "source": "shopify",
            "type": "order.cancelled",
            "occurred_at": (when + timedelta(hours=1)).isoformat(),
            "order": {"ref": f"{merchant}-4"},
            "data": {},
        }
    )
    live.desk.ingest(found, [IncomingEvent(parse_event(e), json.dumps(e)) for e in events])


def a_user(live: LiveDesk, name: str, role: str, *merchants: str) -> None:
    for merchant in merchants:
        merchant_id(live, merchant)
    add_web_user(live.desk, name, role, list(merchants), password_stdin=False, password=PASSWORD)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def logged_in(live: LiveDesk, name: str) -> httpx.Client:
    browser = live.client()
    form = browser.get("/desk/login")
    answer = browser.post(
        "/desk/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    )
    assert answer.status_code == 303, answer.text
    return browser


def text_of(html: str) -> str:
    """The page's text, as a reader hears it (tags dropped, spaces folded)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def tile(html: str, key: str) -> str:
    found = re.search(
        rf'<li class="tile" data-state="([a-z_-]+)" id="tile-{key}">(.*?)</li>', html, re.S
    )
    assert found, f"no tile {key}"
    return f"{found.group(1)}: {text_of(found.group(2)).strip()}"


# -- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_shows_the_week_s_tiles_with_counts_and_threshold_states(
    live: LiveDesk,
) -> None:
    # given four orders of acme in a past week, one cancelled before shipment, and an agent
    week, tuesday = a_week_ago_fortnight()
    four_orders_one_cancelled(live, "acme", tuesday)
    a_user(live, "ana", "agent", "acme")
    browser = logged_in(live, "ana")
    # when the agent opens that week's dashboard
    answer = browser.get("/desk/dashboard", params={"week": week})
    # then the tiles show the figures with their counts and their state in words and colour
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert tile(html, "orders") == "risk-none: Orders 4 placed this week no threshold in KPIS.md"
    assert tile(html, "cancellation_rate") == (
        "risk-breached: Cancellation rate 25.0% 1 of 4 orders cancelled "
        "above the 2.5% marketplace line"
    )
    assert tile(html, "pre_fulfillment_cancel_rate").startswith(
        "risk-breached: Pre-fulfilment cancel rate 25.0% 1 of 4 orders cancelled before any"
    )
    assert tile(html, "late_shipment_rate").endswith(
        "n/a 0 of 0 shipped orders shipped after their ship-by time no data this week"
    )
    assert tile(html, "refund_leakage").startswith("risk-on_track: Refund leakage 0")
    for key in ("save_rate", "stop_ship_success_rate", "first_touch_sla_attainment",
                "resolution_sla_attainment", "revenue_at_risk", "revenue_saved"):  # fmt: skip
        assert f'id="tile-{key}"' in html
    # and the weekly report's charts are inline SVG with a title, each with a table beside
    assert html.count('<svg role="img"') == 6
    assert "<title>Cancellation rate by channel and fulfilment type</title>" in html
    assert "<title>Root causes (Pareto)</title>" in html
    assert "<caption>Cancellations by channel and fulfilment type</caption>" in html
    assert "shopify / 3pl" in text_of(html)
    # and the page links the week's report for download
    for fmt in ("html", "csv", "json"):
        assert f"/desk/dashboard/report.{fmt}?merchant=" in html


def test_the_dashboard_opens_on_the_current_week_with_a_week_picker(live: LiveDesk) -> None:
    a_user(live, "lee", "lead", "acme")
    browser = logged_in(live, "lee")
    answer = browser.get("/desk/dashboard")
    assert answer.status_code == 200
    year, week, _ = datetime.now(UTC).isocalendar()
    assert f'<input type="week" id="week" name="week" value="{year}-W{week:02d}"' in answer.text
    assert "Week before (" in answer.text
    # and a week that is not an ISO week is one clear message
    wrong = browser.get("/desk/dashboard", params={"week": "2026-13"})
    assert wrong.status_code == 422
    assert "use the ISO form YYYY-Www" in wrong.text


def test_the_week_s_report_downloads_with_the_session_as_the_api_gives_it(
    live: LiveDesk,
) -> None:
    # given acme's week and a finance user of acme
    week, tuesday = a_week_ago_fortnight()
    four_orders_one_cancelled(live, "acme", tuesday)
    a_user(live, "fay", "finance", "acme")
    browser = logged_in(live, "fay")
    acme = merchant_id(live, "acme")
    query = {"merchant": str(acme), "week": week}
    # when they download the JSON, CSV and HTML report from the dashboard
    as_json = browser.get("/desk/dashboard/report.json", params=query)
    as_csv = browser.get("/desk/dashboard/report.csv", params=query)
    as_html = browser.get("/desk/dashboard/report.html", params=query)
    # then they are the API's figures for that week, as files
    api = live.client(live.token("acme")).get("/api/v1/kpis", params={"week": week})
    assert as_json.status_code == 200
    assert as_json.json() == api.json()
    assert as_json.json()["cancellation_rate"] == {"value": 0.25, "numerator": 1, "denominator": 4}
    assert as_json.headers["content-disposition"] == (
        f'attachment; filename="kpis-acme-{week}.json"'
    )
    assert "cancellation_rate,all,0.25,1,4" in as_csv.text
    assert as_html.headers["content-type"].startswith("text/html")
    assert "<svg" in as_html.text
    # and the export is in the audit log
    with SqlUserStore(live.desk.engine) as users:
        trail = users.audit_trail(limit=10)
    assert [(e.user, e.action) for e in trail if e.action == "kpi.export"] == [
        ("fay", "kpi.export")
    ] * 3


def test_another_merchant_s_dashboard_does_not_exist_for_this_user(live: LiveDesk) -> None:
    # given acme's agent and globex, a merchant they do not work
    a_user(live, "ana", "agent", "acme")
    globex = merchant_id(live, "globex")
    browser = logged_in(live, "ana")
    # when they ask for globex's dashboard or its report by id: then 404
    assert browser.get("/desk/dashboard", params={"merchant": globex}).status_code == 404
    report = browser.get("/desk/dashboard/report.json", params={"merchant": globex})
    assert report.status_code == 404
    # and without a session the dashboard asks for a login
    assert live.client().get("/desk/dashboard").status_code == 303


def test_a_provider_agent_picks_one_of_several_merchants(live: LiveDesk) -> None:
    week, tuesday = a_week_ago_fortnight()
    four_orders_one_cancelled(live, "globex", tuesday)
    a_user(live, "pat", "agent", "acme", "globex")
    browser = logged_in(live, "pat")
    globex = merchant_id(live, "globex")
    answer = browser.get("/desk/dashboard", params={"merchant": globex, "week": week})
    assert answer.status_code == 200
    assert '<select id="merchant" name="merchant">' in answer.text
    assert tile(answer.text, "orders").startswith("risk-none: Orders 4")


# -- the export upload -------------------------------------------------------------------------


def upload(
    browser: httpx.Client,
    files: list[tuple[str, bytes]],
    *,
    csrf: bool = True,
    profile: str = "",
) -> httpx.Response:
    form = browser.get("/desk/assess")
    data = {"profile": profile} | ({"csrf_token": csrf_of(form.text)} if csrf else {})
    parts = [("files", (name, body, "text/csv")) for name, body in files]
    return browser.post("/desk/assess", data=data, files=parts)


@pytest.fixture
def runs_removed(live: LiveDesk) -> Iterator[Path]:
    """The desk's assessment runs (in the temp folder), removed after the test."""
    yield runs_of(live.desk)
    shutil.rmtree(runs_of(live.desk), ignore_errors=True)


@SQLITE_ONLY
def test_an_uploaded_export_gives_the_figures_of_recoverydesk_assess(
    live: LiveDesk, tmp_path: Path, runs_removed: Path
) -> None:
    # given a lead, and the CLI's assessment of the UCI Online Retail head
    a_user(live, "lee", "lead", "acme")
    browser = logged_in(live, "lee")
    done = subprocess.run(
        [*CLI, "assess", str(RETAIL), "--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        check=True,
    )
    by_cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    # when the lead uploads the same file
    answer = upload(browser, [(RETAIL.name, RETAIL.read_bytes())])
    # then they land on the run's page with the same headline figures
    assert answer.status_code == 303, answer.text
    run_page = answer.headers["location"]
    shown = browser.get(run_page)
    assert shown.status_code == 200
    text = text_of(shown.text)
    assert "Assessment of online_retail_head1000.csv" in text
    assert "orders 66 orders in the export" in text
    assert "cancellation rate 6.1% 4 / 66" in text
    assert done.stdout.startswith("66 orders, cancellation rate 0.060606, 0 cases")
    # and its summary.json has every figure the CLI computed, naming the file as uploaded
    summary = browser.get(f"{run_page}/summary.json").json()
    assert summary["figures"] == by_cli["figures"]
    assert summary["not_computed"] == by_cli["not_computed"]
    assert summary["input_files"][0]["file"] == RETAIL.name
    # and the report, the cases and the starter configuration are there to read
    report = browser.get(f"{run_page}/report.html")
    assert report.status_code == 200
    assert "sandbox" in report.headers["content-security-policy"]
    assert report.text == (tmp_path / "cli" / "report.html").read_text().replace(
        str(RETAIL), RETAIL.name
    )
    cases = browser.get(f"{run_page}/cases.csv")
    assert cases.headers["content-disposition"].startswith("attachment")
    assert cases.text.splitlines()[0].startswith("order_id,category,priority")
    assert browser.get(f"{run_page}/merchant.yaml").status_code == 200
    # and the run is listed among theirs
    assert run_page in browser.get("/desk/assess").text


SHOP_EXPORT = (
    b"Ref;Created;State;Total\n"
    b"1;2024-03-01 10:00;Cancelled;10.00\n"
    b"2;2024-03-01 11:00;Awaiting payment;25.50\n"
    b"3;2024-03-02 09:00;Shipped;12.00\n"
    b"4;2024-03-02 09:30;Shipped;5.00\n"
)
SHOP_MAPPING = b"""profile: my_shop
columns: {order_id: Ref, placed_at: Created, status: State, value: Total}
statuses:
  cancelled: cancelled
  awaiting payment: {status: payment_failed, category: payment_failed}
  shipped: shipped
defaults: {channel: web, currency: EUR}
"""


@SQLITE_ONLY
def test_any_csv_is_assessed_with_an_uploaded_mapping(live: LiveDesk, runs_removed: Path) -> None:
    a_user(live, "fay", "finance", "acme")
    browser = logged_in(live, "fay")
    form = browser.get("/desk/assess")
    answer = browser.post(
        "/desk/assess",
        data={"csrf_token": csrf_of(form.text)},
        files=[
            ("files", ("shop.csv", SHOP_EXPORT, "text/csv")),
            ("mapping", ("my-shop.yaml", SHOP_MAPPING, "application/yaml")),
        ],
    )
    assert answer.status_code == 303, answer.text
    summary = browser.get(f"{answer.headers['location']}/summary.json").json()
    assert summary["profile"]["name"] == "my_shop"
    assert summary["figures"]["orders"] == 4
    assert summary["figures"]["cancellation_rate"]["numerator"] == 1
    assert summary["figures"]["revenue_at_risk"] == [{"amount": "25.50", "currency": "EUR"}]
    # and a mapping naming a column the export lacks is the CLI's one line, by the file's name
    wrong = browser.post(
        "/desk/assess",
        data={"csrf_token": csrf_of(form.text)},
        files=[
            ("files", ("shop.csv", SHOP_EXPORT, "text/csv")),
            ("mapping", ("my-shop.yaml", SHOP_MAPPING.replace(b"Created", b"Placed On"), "x")),
        ],
    )
    assert wrong.status_code == 422
    assert "&#39;Placed On&#39;" in wrong.text
    assert "recoverydesk-assess" not in wrong.text


@SQLITE_ONLY
def test_a_run_belongs_to_the_user_who_uploaded_it(live: LiveDesk, runs_removed: Path) -> None:
    a_user(live, "lee", "lead", "acme")
    a_user(live, "max", "admin", "acme")
    answer = upload(logged_in(live, "lee"), [(RETAIL.name, RETAIL.read_bytes())])
    run_page = answer.headers["location"]
    # when another user opens the run or its files: then it does not exist for them
    other = logged_in(live, "max")
    assert other.get(run_page).status_code == 404
    assert other.get(f"{run_page}/report.html").status_code == 404
    assert run_page not in other.get("/desk/assess").text
    # and a made-up run or file is a 404 too
    assert other.get("/desk/assess/not-a-run").status_code == 404
    assert logged_in(live, "lee").get(f"{run_page}/run.json").status_code == 404


@SQLITE_ONLY
def test_a_bad_file_gives_the_form_again_with_the_cli_s_one_line(
    live: LiveDesk, runs_removed: Path
) -> None:
    a_user(live, "lee", "lead", "acme")
    browser = logged_in(live, "lee")
    for body, message in [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "bad.csv: not a CSV file"),
        (b"colour,size\nred,M\n", "match no known export"),
    ]:
        answer = upload(browser, [("bad.csv", body)])
        assert answer.status_code == 422
        error = re.search(r'<p class="alert" role="alert" id="assess-error">(.*?)</p>', answer.text)
        assert error, answer.text
        assert message in error.group(1)
        assert "\n" not in error.group(1)
        assert "Traceback" not in answer.text
        assert "recoverydesk-assess" not in answer.text  # no server path
        assert 'enctype="multipart/form-data"' in answer.text
    # and nothing is kept of a failed run
    assert not runs_removed.is_dir() or not list(runs_removed.iterdir())
    # and an unknown profile is named as the CLI names it
    unknown = upload(browser, [(RETAIL.name, RETAIL.read_bytes())], profile="ebay")
    assert unknown.status_code == 422
    assert "unknown profile &#39;ebay&#39;" in unknown.text
    # and a form without a file asks for one
    empty = browser.post(
        "/desk/assess",
        data={"csrf_token": csrf_of(browser.get("/desk/assess").text)},
        files=[("mapping", ("", b"", "text/plain"))],
    )
    assert empty.status_code == 422
    assert "choose at least one CSV export" in empty.text


@SQLITE_ONLY
def test_the_upload_needs_the_session_s_csrf_token(live: LiveDesk) -> None:
    a_user(live, "lee", "lead", "acme")
    browser = logged_in(live, "lee")
    answer = upload(browser, [(RETAIL.name, RETAIL.read_bytes())], csrf=False)
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    forged = browser.post(
        "/desk/assess",
        data={"csrf_token": "not-the-session-s"},
        files=[("files", (RETAIL.name, RETAIL.read_bytes(), "text/csv"))],
    )
    assert forged.status_code == 403


@SQLITE_ONLY
def test_agents_and_risk_may_not_assess_but_finance_may_open_the_form(live: LiveDesk) -> None:
    a_user(live, "ana", "agent", "acme")
    a_user(live, "rik", "risk", "acme")
    a_user(live, "fay", "finance", "acme")
    agent = logged_in(live, "ana")
    assert agent.get("/desk/assess").status_code == 403
    forged = agent.post(
        "/desk/assess",
        data={"csrf_token": csrf_of(agent.get("/desk/dashboard").text)},
        files=[("files", (RETAIL.name, RETAIL.read_bytes(), "text/csv"))],
    )
    assert forged.status_code == 403
    assert "for leads, admins and finance, not agent" in forged.text
    assert logged_in(live, "rik").get("/desk/assess").status_code == 403
    assert logged_in(live, "fay").get("/desk/assess").status_code == 200


@contextmanager
def serving(settings: Settings) -> Iterator[LiveDesk]:
    """A live desk with these settings (uvicorn in a thread on a free port)."""
    desk = bootstrap(settings)
    desk.upgrade()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(desk), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.02)
    live = LiveDesk(desk, f"http://127.0.0.1:{port}")
    try:
        yield live
    finally:
        for client in live.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=10)
        desk.close()


def test_an_upload_over_the_limit_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    # given a desk whose upload limit is 4 KB, and a lead
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'desk.db'}", max_upload_bytes=4096)
    with serving(settings) as live:
        a_user(live, "lee", "lead", "acme")
        browser = logged_in(live, "lee")
        assert "4 KB in all" in browser.get("/desk/assess").text
        # when the lead uploads an 85 KB export
        answer = upload(browser, [(RETAIL.name, RETAIL.read_bytes())])
    # then the form comes back saying so
    assert answer.status_code == 413
    assert "the upload (83 KB) is larger than 4 KB" in text_of(answer.text)
    assert 'enctype="multipart/form-data"' in answer.text


# -- in a browser ------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (scripts/test installs it)")
        pytest.skip(f"{CHROMIUM} is not installed: run scripts/test or apt-get install chromium")
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@SQLITE_ONLY
def test_the_dashboard_in_a_browser_shows_tiles_and_charts(chromium: Any, live: LiveDesk) -> None:
    # given acme's week with a cancellation, and a lead logged in through the form
    week, tuesday = a_week_ago_fortnight()
    four_orders_one_cancelled(live, "acme", tuesday)
    a_user(live, "lee", "lead", "acme")
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live.base_url}/desk/dashboard")
    page.get_by_label("User name").fill("lee")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/desk/dashboard"))
    # when they pick the week with the week picker
    page.get_by_label("ISO week (YYYY-Www)").fill(week)
    page.get_by_role("button", name="Show the week").click()
    page.wait_for_url(re.compile(rf"week={week}"))
    # then the tiles and the charts are visible, the charts named for screen readers
    cancel = page.locator("#tile-cancellation_rate")
    assert cancel.is_visible()
    assert "above the 2.5% marketplace line" in cancel.inner_text()
    assert page.locator(".tile").count() >= 12
    chart = page.get_by_role("img", name="Cancellation rate by channel and fulfilment type")
    assert chart.is_visible()
    assert page.locator("svg[role=img]").count() == 6
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    # and at tablet width nothing scrolls sideways
    page.set_viewport_size({"width": 768, "height": 1000})
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    # and the nav's Dashboard link leads here
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url(re.compile(r"/desk/dashboard$"))
    page.close()


@SQLITE_ONLY
def test_a_lead_uploads_an_export_in_the_browser(
    chromium: Any, live: LiveDesk, runs_removed: Path
) -> None:
    a_user(live, "lee", "lead", "acme")
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live.base_url}/desk/assess")
    page.get_by_label("User name").fill("lee")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/desk/assess$"))
    # when they choose the export and press Assess
    page.get_by_label("Export file(s)").set_input_files(str(RETAIL))
    page.get_by_role("button", name="Assess").click()
    page.wait_for_url(re.compile(r"/desk/assess/[A-Za-z0-9_-]{20,}$"))
    # then the run's figures are on the page, with its report a link away
    figures = page.get_by_role("table", name="Headline figures")
    assert "6.1%" in figures.get_by_role("row", name=re.compile("^cancellation rate")).inner_text()
    assert page.get_by_role("link", name="report.html").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "assess.png"), full_page=True)
    page.get_by_role("link", name="report.html").click()
    page.wait_for_url(re.compile(r"/report.html$"))
    assert "66" in page.content()
    page.close()
