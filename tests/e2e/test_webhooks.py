"""Vendor webhooks over real HTTP on SQLite and PostgreSQL: `POST /webhooks/{provider}/{merchant}`.

Real vendor payloads (``../shared/fixtures/vendors``) signed as each vendor signs them; forged,
replayed, truncated and oversized deliveries are refused with 401 / 413 / 422, never a 500, and
store nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from recoverydesk.connectors.signatures import sign
from recoverydesk.persistence.tables import events
from recoverydesk.services import merchants as admin
from tests.e2e.conftest import LiveDesk

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
SHOPIFY_SECRET = "shpss_test_secret"
STRIPE_SECRET = "whsec_test_secret"
CONFIG = f"""
merchant: acme
connectors:
  webhooks:
    shopify: {{secrets: [{SHOPIFY_SECRET}, shpss_old_secret]}}
    stripe: {{secrets: [{STRIPE_SECRET}]}}
"""


def _merchant(live: LiveDesk, tmp_path: Path) -> httpx.Client:
    token = live.token("acme", "lead")
    path = tmp_path / "acme.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name="acme", config=path)
        uow.commit()
    return live.client(token)


def _stored(live: LiveDesk) -> int:
    with live.desk.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def _stripe_event(kind: str, obj: dict[str, Any], event_id: str) -> bytes:
    envelope = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": int(datetime.now(UTC).timestamp()),
        "data": {"object": obj},
    }
    return json.dumps(envelope).encode()


def _fixture(vendor: str, name: str) -> Any:
    return json.loads((VENDORS / vendor / name).read_text(encoding="utf-8"))


def test_a_signed_shopify_webhook_is_stored_once_and_opens_its_case(
    live: LiveDesk, tmp_path: Path
) -> None:
    # given a merchant with a Shopify secret (and the old one, mid-rotation)
    api = _merchant(live, tmp_path)
    body = (VENDORS / "shopify" / "api-order-risk-cancel.json").read_bytes()
    now = datetime.now(UTC)
    headers = sign("shopify", body=body, secret="shpss_old_secret", now=now, delivery_id="e-1")
    headers["X-Shopify-Topic"] = "orders/risk"
    # when Shopify delivers the risk webhook, and delivers it again (a retry)
    with live.client() as http:
        first = http.post("/webhooks/shopify/acme", content=body, headers=headers)
        again = http.post("/webhooks/shopify/acme", content=body, headers=headers)
    # then it is stored once, answered 2xx both times, and opens a fraud-hold case
    assert first.status_code == 200, first.text
    assert (first.json()["stored"], again.json()["stored"]) == (1, 0)
    assert again.json()["duplicates"] == 1
    cases = api.get("/api/v1/cases", params={"order": "450789469"}).json()["cases"]
    assert [c["category"] for c in cases] == ["fraud_hold"]


def test_a_stripe_dispute_through_the_official_signature_opens_a_chargeback(
    live: LiveDesk, tmp_path: Path
) -> None:
    api = _merchant(live, tmp_path)
    dispute = _fixture("stripe", "object-dispute.json")
    dispute["metadata"] = {"order_ref": "5001"}
    body = _stripe_event("charge.dispute.created", dispute, "evt_dispute_1")
    headers = sign("stripe", body=body, secret=STRIPE_SECRET, now=datetime.now(UTC))
    with live.client() as http:
        answer = http.post("/webhooks/stripe/acme", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1
    cases = api.get("/api/v1/cases", params={"order": "5001"}).json()["cases"]
    assert [c["category"] for c in cases] == ["chargeback"]


def test_forged_stale_and_unknown_deliveries_are_refused_and_store_nothing(
    live: LiveDesk, tmp_path: Path
) -> None:
    _merchant(live, tmp_path)
    body = (VENDORS / "shopify" / "api-order-cancelled.json").read_bytes()
    now = datetime.now(UTC)
    good = sign("shopify", body=body, secret=SHOPIFY_SECRET, now=now, delivery_id="e-2")
    stale_body = _stripe_event(
        "charge.dispute.created", _fixture("stripe", "object-dispute.json"), "evt_2"
    )
    stale = sign("stripe", body=stale_body, secret=STRIPE_SECRET, now=now - timedelta(minutes=10))
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (
            "/webhooks/shopify/acme",
            body,
            sign("shopify", body=body, secret="wrong", now=now),
            401,
            "bad_signature",
        ),
        ("/webhooks/shopify/acme", body[:-10], good, 401, "bad_signature"),
        ("/webhooks/shopify/acme", body, {}, 401, "bad_signature"),
        ("/webhooks/stripe/acme", stale_body, stale, 401, "stale_delivery"),
        ("/webhooks/adyen/acme", body, {}, 401, "no_webhook_secret"),
        ("/webhooks/shopify/nobody", body, good, 401, "unknown_merchant"),
        ("/webhooks/paypal/acme", body, good, 404, "unknown_provider"),
        ("/webhooks/shopify/acme", b"x" * (64 * 1024 + 1), good, 413, "payload_too_large"),
    ]
    with live.client() as http:
        for url, content, headers, status, code in cases:
            answer = http.post(url, content=content, headers=headers)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), url
    assert _stored(live) == 0


def test_a_rotated_secret_works_at_once_and_the_old_one_stops(
    live: LiveDesk, tmp_path: Path
) -> None:
    # given the desk has already checked a delivery with the merchant's current secrets
    _merchant(live, tmp_path)
    body = (VENDORS / "shopify" / "api-order-cancelled.json").read_bytes()
    now = datetime.now(UTC)

    def deliver(secret: str, delivery: str) -> httpx.Response:
        headers = sign("shopify", body=body, secret=secret, now=now, delivery_id=delivery)
        headers["X-Shopify-Topic"] = "orders/cancelled"
        with live.client() as http:
            return http.post("/webhooks/shopify/acme", content=body, headers=headers)

    assert deliver(SHOPIFY_SECRET, "r-1").status_code == 200
    # when the merchant rotates to a new secret and drops the others
    path = tmp_path / "rotated.yaml"
    path.write_text(
        "merchant: acme\nconnectors:\n  webhooks:\n    shopify: {secrets: [shpss_new]}\n",
        encoding="utf-8",
    )
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name="acme", config=path)
        uow.commit()
    # then the new secret is accepted at once, although the old ones are still cached
    assert deliver("shpss_new", "r-2").status_code == 200
    # and the old one is refused once the desk has read the new settings
    refused = deliver(SHOPIFY_SECRET, "r-3")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "bad_signature")


def test_a_signed_body_that_is_not_what_the_vendor_sends_is_a_clear_422(
    live: LiveDesk, tmp_path: Path
) -> None:
    _merchant(live, tmp_path)
    now = datetime.now(UTC)
    with live.client() as http:
        for body in (b"not json", b"[1, 2]", b'{"id": 1}'):
            headers = sign("shopify", body=body, secret=SHOPIFY_SECRET, now=now, delivery_id="x")
            headers["X-Shopify-Topic"] = "orders/updated"
            answer = http.post("/webhooks/shopify/acme", content=body, headers=headers)
            assert answer.status_code == 422, (body, answer.text)
    assert _stored(live) == 0


@given(
    body=st.binary(max_size=2048),
    signature=st.text(max_size=120),
    topic=st.text(max_size=40),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_arbitrary_deliveries_never_fail_the_desk(
    live: LiveDesk, tmp_path: Path, body: bytes, signature: str, topic: str
) -> None:
    # given anything at all in the body and the signature headers
    if _stored(live) == 0 and not (tmp_path / "acme.yaml").exists():
        _merchant(live, tmp_path)
    headers = {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Topic": topic}
    safe = {  # what an HTTP client can send at all
        k: v for k, v in headers.items() if v.isascii() and v.isprintable() and v == v.strip()
    }
    with live.client() as http:
        answer = http.post("/webhooks/shopify/acme", content=body, headers=safe)
    # then the desk answers with a 4xx (never a 500) and stores nothing
    assert 400 <= answer.status_code < 500, answer.text
    assert _stored(live) == 0
