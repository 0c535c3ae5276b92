"""Webhook signatures per vendor (``connectors.signatures``).

Vectors come from ``fixtures/vendors/tools/vectors.py`` (run it to recompute them): the *vendor*
ones are published by Adyen and EasyPost, the *local* ones were computed from each vendor's
documented algorithm. Values are copied here so the suite runs without the shared fixtures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoverydesk.connectors.signatures import (
    PROVIDERS,
    BadSignature,
    Delivery,
    StaleDelivery,
    sign,
    sign_adyen_notification,
    verify,
)
from recoverydesk.domain.errors import InvalidConfig, InvalidInput, NotFound
from recoverydesk.services.merchants import WEBHOOK_PROVIDERS

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BODY = b'{"id":820982911946154508,"cancel_reason":"customer"}'  # vectors.py, local vectors
ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ADYEN_KEY_2 = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
# One secret per provider (Adyen's is a hex key) and an old one for rotation tests.
SECRET = dict.fromkeys(PROVIDERS, "whsec_current_secret") | {"adyen": ADYEN_KEY}
OLD_SECRET = dict.fromkeys(PROVIDERS, "whsec_previous_secret") | {"adyen": ADYEN_KEY_2}

# EasyPost vendor vector: payloads/easypost/webhook-event-tracker-updated.json without its
# trailing newline (EasyPost/easypost-python tests/test_webhook.py, via vectors.py).
EASYPOST_EVENT = (
    b'{"description":"tracker.updated","mode":"production","previous_attributes":{"status":"in'
    b'_transit"},"created_at":"2024-08-02T19:26:52.000Z","pending_urls":["https://example.com/'
    b'easypost"],"completed_urls":[],"updated_at":"2024-08-02T19:26:52.000Z","id":"evt_1","use'
    b'r_id":"user_1","status":"pending","object":"Event","result":{"id":"trk_1","object":"Trac'
    b'ker","mode":"production","tracking_code":"1","status":"in_transit","status_detail":"arri'
    b'ved_at_facility","created_at":"2024-07-31T14:45:27Z","updated_at":"2024-08-02T19:26:51Z"'
    b',"signed_by":null,"weight":614.4,"est_delivery_date":"2024-08-05T00:00:00Z","shipment_id'
    b'":null,"carrier":"FedEx","tracking_details":[{"object":"TrackingDetail","message":"Shipm'
    b'ent information sent to FedEx","description":"Shipment information sent to FedEx","statu'
    b's":"pre_transit","status_detail":"label_created","datetime":"2024-07-31T15:00:00Z","sour'
    b'ce":"FedEx","carrier_code":"OC","tracking_location":{"object":"TrackingLocation","city":'
    b'null,"state":null,"country":"US","zip":"32837"}},{"object":"TrackingDetail","message":"P'
    b'icked up","description":"Picked up","status":"in_transit","status_detail":"arrived_at_fa'
    b'cility","datetime":"2024-07-31T19:27:00Z","source":"FedEx","carrier_code":"PU","tracking'
    b'_location":{"object":"TrackingLocation","city":"ORLANDO","state":"FL","country":"US","zi'
    b'p":"32809"}},{"object":"TrackingDetail","message":"Arrived at FedEx location","descripti'
    b'on":"Arrived at FedEx location","status":"in_transit","status_detail":"arrived_at_facili'
    b'ty","datetime":"2024-07-31T22:35:00Z","source":"FedEx","carrier_code":"AR","tracking_loc'
    b'ation":{"object":"TrackingLocation","city":"ORLANDO","state":"FL","country":"US","zip":"'
    b'32809"}},{"object":"TrackingDetail","message":"Departed FedEx location","description":"D'
    b'eparted FedEx location","status":"in_transit","status_detail":"departed_facility","datet'
    b'ime":"2024-08-01T14:42:13Z","source":"FedEx","carrier_code":"DP","tracking_location":{"o'
    b'bject":"TrackingLocation","city":"ORLANDO","state":"FL","country":"US","zip":"32809"}},{'
    b'"object":"TrackingDetail","message":"On the way","description":"On the way","status":"in'
    b'_transit","status_detail":"unknown","datetime":"2024-08-02T02:46:19Z","source":"FedEx","'
    b'carrier_code":"IT","tracking_location":{"object":"TrackingLocation","city":"KENLY","stat'
    b'e":"NC","country":"US","zip":"27542"}},{"object":"TrackingDetail","message":"On the way"'
    b',"description":"On the way","status":"in_transit","status_detail":"unknown","datetime":"'
    b'2024-08-02T18:35:20Z","source":"FedEx","carrier_code":"IT","tracking_location":{"object"'
    b':"TrackingLocation","city":"EDISON TWP","state":"NJ","country":"US","zip":"08817"}},{"ob'
    b'ject":"TrackingDetail","message":"Arrived at FedEx location","description":"Arrived at F'
    b'edEx location","status":"in_transit","status_detail":"arrived_at_facility","datetime":"2'
    b'024-08-02T18:50:00Z","source":"FedEx","carrier_code":"AR","tracking_location":{"object":'
    b'"TrackingLocation","city":"EDISON","state":"NJ","country":"US","zip":"08817"}}],"carrier'
    b'_detail":{"object":"CarrierDetail","service":"FEDEX_GROUND","container_type":null,"est_d'
    b'elivery_date_local":"2024-08-05","est_delivery_time_local":null,"origin_location":"ORLAN'
    b'DO FL US","origin_tracking_location":{"object":"TrackingLocation","city":"ORLANDO","stat'
    b'e":"FL","country":"US","zip":"32809"},"destination_location":"BROOKLYN HGTS NY US","dest'
    b'ination_tracking_location":null,"guaranteed_delivery_date":null,"alternate_identifier":n'
    b'ull,"initial_delivery_attempt":null},"finalized":false,"is_return":false,"public_url":"h'
    b'ttps://track.easypost.com/1"}}'
)
EASYPOST_SIGNATURE = (
    "hmac-sha256-hex=38f3f53c103713df81616a0a186d77141957323ec21d5fe9363db93840f527db"
)


def adyen_notification(*items: dict[str, Any]) -> bytes:
    wrapped = [{"NotificationRequestItem": item} for item in items]
    return json.dumps({"live": "false", "notificationItems": wrapped}).encode()


def adyen_item(psp: str = "8515", event: str = "CANCELLATION", **extra: Any) -> dict[str, Any]:
    return {
        "pspReference": psp,
        "merchantAccountCode": "DeskTest",
        "merchantReference": "order-1001",
        "amount": {"currency": "EUR", "value": 4599},
        "eventCode": event,
        "eventDate": "2026-11-20T09:59:00+01:00",
        "success": "true",
        **extra,
    }


def body_for(provider: str) -> bytes:
    """A realistic body per provider; Adyen's carries its signatures (made with SECRET)."""
    if provider == "adyen":
        return sign_adyen_notification(adyen_notification(adyen_item()), SECRET["adyen"])
    if provider == "stripe":
        return b'{"id":"evt_1","object":"event","created":1795165000,"type":"charge.refunded"}'
    if provider == "aftership":
        return b'{"event_id":"7f2c","ts":1795165000,"event":"tracking_update","msg":{}}'
    return BODY


def signed(provider: str, *, secret: str | None = None, at: datetime = NOW) -> dict[str, str]:
    return sign(
        provider,
        body=body_for(provider),
        secret=secret or SECRET[provider],
        now=at,
        delivery_id="dlv-1",
    )


def check(provider: str, headers: dict[str, str], body: bytes, *secrets: str) -> Delivery:
    return verify(
        provider, headers=headers, body=body, secrets=list(secrets or [SECRET[provider]]), now=NOW
    )


ALL = sorted(PROVIDERS)
HEADER_SIGNED = sorted(PROVIDERS - {"adyen"})  # providers whose signature travels in a header


# -- vendor-published vectors ----------------------------------------------------------------


def test_adyen_vendor_vector_from_the_python_library_verifies() -> None:
    # given the AUTHORISATION item of Adyen/adyen-python-api-library test/UtilTest.py
    item = {
        "pspReference": "7914073381342284",
        "merchantReference": "TestPayment-1407325143704",
        "merchantAccountCode": "TestMerchant",
        "amount": {"currency": "EUR", "value": 1130},
        "eventCode": "AUTHORISATION",
        "success": "true",
        "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="},
    }
    # when it is verified with the library's key
    delivery = check("adyen", {}, adyen_notification(item), ADYEN_KEY)
    # then it passes and the dedupe id is psp, event code and outcome
    assert delivery == Delivery("adyen", "7914073381342284:AUTHORISATION:true", None)


# payloads/adyen/hmac-vector-item-{colon,backslash}.json (Adyen/adyen-python-api-library tests)
ADYEN_ESCAPING_ITEMS = [
    rb"""{"pspReference": "M8NB66SBZSGLNK82", "merchantAccountCode": "AntoniStroinski",
    "merchantReference": ":slashes are fun", "amount": {"currency": "EUR", "value": 1000},
    "eventCode": "AUTHORISATION", "eventDate": "2023-01-10T13:40:54+01:00", "success": "true",
    "additionalData": {"hmacSignature": "2EQYm7YJpKO4EtHSPu55SQTyWf8dkW5u2nD1tJFpViA="}}""",
    rb"""{"pspReference": "T7FD4VM4D3RZNN82", "merchantAccountCode": "AntoniStroinski",
    "merchantReference": "\\\\slashes are fun", "amount": {"currency": "EUR", "value": 1000},
    "eventCode": "AUTHORISATION", "eventDate": "2023-01-09T16:27:29+01:00", "success": "true",
    "additionalData": {"hmacSignature": "nIgT81gaB5oJpn2jPXupDq68iRo2wUlBsuYjtYfwKqo="}}""",
]


@pytest.mark.parametrize("raw_item", ADYEN_ESCAPING_ITEMS, ids=["colon", "backslash"])
def test_adyen_vendor_vectors_join_raw_values_unescaped(raw_item: bytes) -> None:
    # given an item whose merchantReference holds ':' or '\' (Adyen's own vectors)
    item = json.loads(raw_item)
    # when verified with the vectors' key
    delivery = check("adyen", {}, adyen_notification(item), ADYEN_KEY_2)
    # then it passes, and the eventDate (+01:00) comes back as UTC
    assert delivery.triggered_at is not None
    assert delivery.triggered_at.utcoffset() == timedelta(0)
    assert delivery.triggered_at.hour == datetime.fromisoformat(item["eventDate"]).hour - 1


def test_easypost_vendor_vector_normalises_the_secret_nfkd() -> None:
    # given EasyPost's published event bytes, secret and signature
    headers = {"X-Hmac-Signature": EASYPOST_SIGNATURE}
    # when verified with the secret 'sécret' (composed é; NFKD decomposes it)
    delivery = check("easypost", headers, EASYPOST_EVENT, "s\u00e9cret")
    # then it passes and the event id and creation time come from the body
    assert delivery == Delivery("easypost", "evt_1", datetime(2024, 8, 2, 19, 26, 52, tzinfo=UTC))


# -- local vectors (vectors.py; computed from the documented algorithms) ------------------------


@pytest.mark.parametrize(
    ("provider", "header", "secret", "signature"),
    [
        (
            "shopify",
            "X-Shopify-Hmac-Sha256",
            "API_SECRET_KEY",
            "6M4LG1h9bHIMqBmyNyzRyGtTW91Wto1wT1oDvB+bbf8=",
        ),
        (
            "woocommerce",
            "X-WC-Webhook-Signature",
            "wc_secret",
            "rAriPnvQpK4mwRESA2f0B9l/vMz2NlBcN4/6XcqcNW8=",
        ),
        (
            "aftership",
            "aftership-hmac-sha256",
            "as_secret",
            "AxGR9jhT193YLMJ/t6m+a8NHOyjnKq92qOxAP3UrKjA=",
        ),
    ],
)
def test_local_body_hmac_vectors_verify(
    provider: str, header: str, secret: str, signature: str
) -> None:
    # given the local vector's header, secret and body
    # when verified
    delivery = check(provider, {header: signature}, BODY, secret)
    # then it passes
    assert delivery.provider == provider
    # and the same signature over another body does not
    with pytest.raises(BadSignature):
        check(provider, {header: signature}, BODY.replace(b"customer", b"fraud"), secret)


def test_zendesk_local_vector_signs_the_timestamp_then_the_body() -> None:
    # given the local Zendesk vector (timestamp 2021-03-25T05:09:27Z)
    headers = {
        "X-Zendesk-Webhook-Signature": "hUo5t+94ARQLcxj/fFHfw1cmngkC8RMa/XOhU9BvVvQ=",
        "X-Zendesk-Webhook-Signature-Timestamp": "2021-03-25T05:09:27Z",
        "X-Zendesk-Webhook-Invocation-Id": "inv-9",
    }
    # when verified one minute after it was signed
    delivery = verify(
        "zendesk",
        headers=headers,
        body=BODY,
        secrets=["zd_secret"],
        now=datetime(2021, 3, 25, 5, 10, 27, tzinfo=UTC),
    )
    # then it passes with the invocation id and the signing time
    assert delivery == Delivery("zendesk", "inv-9", datetime(2021, 3, 25, 5, 9, 27, tzinfo=UTC))


def test_stripe_local_vector_verifies_through_the_sdk() -> None:
    # given the local Stripe vector (t=1700000000, secret whsec_test_secret)
    header = "t=1700000000,v1=c40b5bc3a37a77ac42f3fab9db68ead901d11d820a647b70903b04651622541b"
    signed_at = datetime.fromtimestamp(1700000000, UTC)
    # when verified 299 s later
    delivery = verify(
        "stripe",
        headers={"Stripe-Signature": header},
        body=BODY,
        secrets=["whsec_test_secret"],
        now=signed_at + timedelta(seconds=299),
    )
    # then it passes; the body has no event id or created, so the time is t
    assert delivery == Delivery("stripe", None, signed_at)


def test_wms_scheme_is_hex_hmac_of_timestamp_dot_body() -> None:
    # given a header computed here from the documented wms scheme, not by sign()
    t = int(NOW.timestamp())
    digest = hmac.new(b"3pl-secret", f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    headers = {"X-Recoverydesk-Signature": f"t={t},v1={digest}", "X-Recoverydesk-Delivery": "d7"}
    # when verified
    delivery = check("wms", headers, BODY, "3pl-secret")
    # then it passes with the delivery id and the signing time
    assert delivery == Delivery("wms", "d7", NOW)


def test_stripe_verification_is_the_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a correctly signed Stripe delivery, but an SDK that refuses everything
    headers = signed("stripe")

    def refuse(*args: object, **kwargs: object) -> None:
        raise stripe.SignatureVerificationError("refused by the SDK", "header")

    monkeypatch.setattr(stripe.WebhookSignature, "verify_header", refuse)
    # when verified
    # then the SDK's refusal is ours
    with pytest.raises(BadSignature, match="refused by the SDK"):
        check("stripe", headers, body_for("stripe"))


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ALL)
def test_sign_then_verify_round_trips(provider: str) -> None:
    # given headers from sign()
    headers = signed(provider)
    # when verified with the same secret
    delivery = check(provider, headers, body_for(provider))
    # then it passes
    assert delivery.provider == provider


@pytest.mark.parametrize(
    ("provider", "delivery_id", "triggered_at"),
    [
        ("shopify", "dlv-1", NOW),
        ("woocommerce", None, None),
        ("stripe", "evt_1", datetime.fromtimestamp(1795165000, UTC)),
        ("adyen", "8515:CANCELLATION:true", datetime(2026, 11, 20, 8, 59, tzinfo=UTC)),
        ("zendesk", "dlv-1", NOW),
        ("aftership", "7f2c", datetime.fromtimestamp(1795165000, UTC)),
        ("easypost", None, None),
        ("wms", "dlv-1", NOW),
    ],
)
def test_delivery_carries_the_vendors_id_and_time(
    provider: str, delivery_id: str | None, triggered_at: datetime | None
) -> None:
    # given a signed delivery
    headers = signed(provider)
    # when verified
    delivery = check(provider, headers, body_for(provider))
    # then the dedupe id and trigger time are the vendor's
    assert delivery == Delivery(provider, delivery_id, triggered_at)


@pytest.mark.parametrize("provider", ALL)
def test_header_names_match_in_any_case(provider: str) -> None:
    # given signed headers written in upper case
    headers = {k.upper(): v for k, v in signed(provider).items()}
    # when verified
    delivery = check(provider, headers, body_for(provider))
    # then it passes
    assert delivery.provider == provider


def test_shopify_unprefixed_header_is_accepted() -> None:
    # given Shopify's newer unprefixed header form
    headers = {k.removeprefix("X-"): v for k, v in signed("shopify").items()}
    # when verified
    delivery = check("shopify", headers, BODY)
    # then it passes and still reads the trigger time
    assert delivery.triggered_at == NOW


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"X-Shopify-Event-Id": "ev-1", "X-Shopify-Webhook-Id": "wh-1"}, "wh-1"),
        ({"X-Shopify-Webhook-Id": "wh-1"}, "wh-1"),
        ({"X-Shopify-Event-Id": "ev-1"}, "ev-1"),
        ({}, None),
    ],
)
def test_shopify_dedupes_on_the_webhook_id_else_the_event_id(
    ids: dict[str, str], expected: str | None
) -> None:
    # given a signed Shopify delivery with some of its id headers
    headers = sign("shopify", body=BODY, secret=SECRET["shopify"], now=NOW) | ids
    # when verified
    delivery = check("shopify", headers, BODY)
    # then the webhook id wins (the delivery, the same on its retries), the event id is the
    # fallback
    assert delivery.delivery_id == expected


# -- refusals -----------------------------------------------------------------------------------


def signed_with(provider: str, secret: str, at: datetime = NOW) -> tuple[dict[str, str], bytes]:
    """Headers and body of a delivery signed with ``secret`` (Adyen signs inside the body)."""
    body = body_for(provider)
    if provider == "adyen":
        body = sign_adyen_notification(body, secret)
    return sign(provider, body=body, secret=secret, now=at), body


@pytest.mark.parametrize("provider", ALL)
def test_wrong_secret_is_refused(provider: str) -> None:
    # given a delivery signed with the old secret
    headers, body = signed_with(provider, OLD_SECRET[provider])
    # when verified with the current secret only
    # then it is refused
    with pytest.raises(BadSignature) as refused:
        check(provider, headers, body)
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("provider", ALL)
def test_rotated_secrets_accept_either(provider: str) -> None:
    # given a delivery signed with the old secret, during a rotation
    headers, body = signed_with(provider, OLD_SECRET[provider])
    # when verified with the current secret first, then the old one
    delivery = check(provider, headers, body, SECRET[provider], OLD_SECRET[provider])
    # then it passes
    assert delivery.provider == provider


def _tamper(provider: str, body: bytes) -> bytes:
    """One byte changed: Adyen signs only some fields (so change one of them), others all bytes."""
    if provider == "adyen":
        return body.replace(b"CANCELLATION", b"XANCELLATION")
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]


@pytest.mark.parametrize("provider", ALL)
def test_tampered_body_is_refused(provider: str) -> None:
    # given a signed delivery whose body changed by one byte on the way
    headers = signed(provider)
    body = _tamper(provider, body_for(provider))
    assert body != body_for(provider)
    # when verified
    # then it is refused
    with pytest.raises(BadSignature):
        check(provider, headers, body)


@pytest.mark.parametrize("provider", ALL)
def test_truncated_body_is_refused(provider: str) -> None:
    # given a signed delivery cut short
    headers = signed(provider)
    body = body_for(provider)[:-7]
    # when verified
    # then it is refused
    with pytest.raises(BadSignature):
        check(provider, headers, body)


@pytest.mark.parametrize("provider", HEADER_SIGNED)
def test_missing_signature_header_is_refused_by_name(provider: str) -> None:
    # given a delivery without any headers
    # when verified
    # then the refusal names the missing header
    with pytest.raises(BadSignature, match="missing header"):
        check(provider, {}, body_for(provider))


@pytest.mark.parametrize(
    ("provider", "header", "value", "reason"),
    [
        ("shopify", "X-Shopify-Hmac-Sha256", "not base64!", "not base64"),
        ("shopify", "X-Shopify-Hmac-Sha256", "c2hvcnQ=", "not an HMAC-SHA256"),
        ("woocommerce", "X-WC-Webhook-Signature", "\u00e9t\u00e9", "not ASCII"),
        ("aftership", "aftership-hmac-sha256", "", "empty"),
        ("easypost", "X-Hmac-Signature", "hmac-sha256-hex=zz", "does not match"),
        ("stripe", "Stripe-Signature", "t=abc,v1=00", "Unable to extract"),
        ("stripe", "Stripe-Signature", "t=1795165000", "No signatures found"),
        ("wms", "X-Recoverydesk-Signature", "v1=00", "no valid t="),
        ("wms", "X-Recoverydesk-Signature", "t=-5,v1=00", "no valid t="),
        ("wms", "X-Recoverydesk-Signature", "t=1795165000", "no v1="),
        ("wms", "X-Recoverydesk-Signature", "t=1795165000,v1=\ud800", "not ASCII"),
    ],
)
def test_garbled_signature_header_is_refused(
    provider: str, header: str, value: str, reason: str
) -> None:
    # given a signature header that cannot be read
    headers = signed(provider) | {header: value}
    # when verified
    # then it is refused, saying why
    with pytest.raises(BadSignature, match=reason):
        check(provider, headers, body_for(provider))


def test_zendesk_timestamp_that_is_not_iso_is_refused() -> None:
    # given a Zendesk delivery correctly signed over an epoch timestamp (not ISO-8601)
    digest = hmac.new(b"zd", b"1700000000" + BODY, hashlib.sha256).digest()
    headers = {
        "X-Zendesk-Webhook-Signature": __import__("base64").b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": "1700000000",
    }
    # when verified
    # then it is refused
    with pytest.raises(BadSignature, match="ISO-8601"):
        check("zendesk", headers, BODY, "zd")


@pytest.mark.parametrize(
    "items",
    [
        [],
        [adyen_item()],  # no hmacSignature at all
    ],
    ids=["no items", "unsigned item"],
)
def test_adyen_without_signed_items_is_refused(items: list[dict[str, Any]]) -> None:
    # given a notification with nothing signed in it
    # when verified
    # then it is refused
    with pytest.raises(BadSignature):
        check("adyen", {}, adyen_notification(*items))


def test_adyen_every_item_must_verify() -> None:
    # given a batch of two items where only the first carries a valid signature
    good = json.loads(sign_adyen_notification(adyen_notification(adyen_item()), ADYEN_KEY))
    first = good["notificationItems"][0]["NotificationRequestItem"]
    second = adyen_item(psp="8516", event="REFUND") | {"additionalData": first["additionalData"]}
    # when verified
    # then it is refused
    with pytest.raises(BadSignature, match="does not match"):
        check("adyen", {}, adyen_notification(first, second))
    # and signing both makes it pass, with both ids
    both = sign_adyen_notification(adyen_notification(first, second), ADYEN_KEY)
    assert check("adyen", {}, both).delivery_id == "8515:CANCELLATION:true,8516:REFUND:true"


def test_adyen_sign_refuses_an_unsigned_body() -> None:
    # given an Adyen notification with no signatures in it
    # when sign() is asked for headers
    # then it says the body itself must be signed
    with pytest.raises(InvalidInput, match="sign_adyen_notification"):
        sign("adyen", body=adyen_notification(adyen_item()), secret=ADYEN_KEY, now=NOW)


# -- timestamps -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["stripe", "zendesk", "wms"])
def test_stale_timestamp_is_refused(provider: str) -> None:
    # given a delivery signed 301 s before now
    headers = signed(provider, at=NOW - timedelta(seconds=301))
    # when verified with the default 300 s tolerance
    # then it is refused as stale
    with pytest.raises(StaleDelivery) as refused:
        check(provider, headers, body_for(provider))
    assert refused.value.code == "stale_delivery"


@pytest.mark.parametrize("provider", ["stripe", "zendesk", "wms"])
def test_timestamp_at_the_edge_of_the_tolerance_passes(provider: str) -> None:
    # given a delivery signed exactly 300 s before now
    headers = signed(provider, at=NOW - timedelta(seconds=300))
    # when verified
    delivery = check(provider, headers, body_for(provider))
    # then it passes
    assert delivery.provider == provider


@pytest.mark.parametrize(
    ("provider", "refused"), [("stripe", False), ("zendesk", True), ("wms", True)]
)
def test_future_timestamp_follows_the_scheme(provider: str, refused: bool) -> None:
    # given a delivery signed an hour ahead of our clock
    headers = signed(provider, at=NOW + timedelta(hours=1))
    # when verified
    # then Stripe (the SDK's rule) accepts it, Zendesk and wms refuse it
    if refused:
        with pytest.raises(StaleDelivery, match="future"):
            check(provider, headers, body_for(provider))
    else:
        assert check(provider, headers, body_for(provider)).provider == provider


def test_stale_and_forged_is_a_bad_signature() -> None:
    # given an old delivery signed with another secret
    headers = signed("wms", secret="forger", at=NOW - timedelta(days=1))
    # when verified
    # then the signature is what fails
    with pytest.raises(BadSignature):
        check("wms", headers, BODY)


def test_shopify_has_no_signed_time_so_old_deliveries_pass_with_their_trigger_time() -> None:
    # given a Shopify retry that fired a day ago
    headers = signed("shopify", at=NOW - timedelta(days=1))
    # when verified now
    delivery = check("shopify", headers, BODY)
    # then it passes and says when it fired, for the caller's stale-retry check
    assert delivery.triggered_at == NOW - timedelta(days=1)


# -- set-up errors ------------------------------------------------------------------------------


def test_providers_are_the_ones_merchants_configure() -> None:
    assert PROVIDERS == WEBHOOK_PROVIDERS


def test_unknown_provider_is_not_found() -> None:
    # given a provider the desk has no scheme for
    # when verified or signed
    # then it is NotFound with code unknown_provider
    with pytest.raises(NotFound) as refused:
        verify("gorgias", headers={}, body=b"", secrets=["s"], now=NOW)
    assert refused.value.code == "unknown_provider"
    with pytest.raises(NotFound):
        sign("gorgias", body=b"", secret="s", now=NOW)


@pytest.mark.parametrize("secrets", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_no_usable_secret_is_a_configuration_error(secrets: list[str]) -> None:
    # given a provider configured without a usable secret
    # when a delivery arrives
    # then it is a configuration error, never an accepted delivery
    with pytest.raises(InvalidConfig):
        verify("shopify", headers=signed("shopify"), body=BODY, secrets=secrets, now=NOW)


# -- arbitrary input ----------------------------------------------------------------------------

HEADER_NAMES = sorted(
    {name.lower() for p in HEADER_SIGNED for name in signed(p)}
    | {"x-shopify-triggered-at", "x-shopify-event-id", "shopify-hmac-sha256"}
)


def _mutated_headers(provider: str) -> st.SearchStrategy[dict[str, str]]:
    """Real signed headers with values replaced, cut or dropped, plus random extra headers."""
    real = signed(provider)
    edits = st.dictionaries(
        st.sampled_from(sorted(real) + HEADER_NAMES),
        st.one_of(st.text(), st.sampled_from([*real.values(), "t=1,v1="]).map(lambda v: v[:-3])),
    )
    return st.builds(lambda e: real | e, edits)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _adyen_like(value: Any) -> bytes:
    return json.dumps({"notificationItems": [{"NotificationRequestItem": value}, value]}).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(ALL).map(body_for),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(_adyen_like),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), body=bodies)
def test_arbitrary_input_only_ever_raises_signature_errors(
    data: st.DataObject, body: bytes
) -> None:
    # given any provider, headers close to or far from real ones, and any body
    provider = data.draw(st.sampled_from(ALL))
    headers = data.draw(
        st.one_of(_mutated_headers(provider), st.dictionaries(st.text(), st.text()))
    )
    # when verified
    try:
        delivery = check(provider, headers, body)
    # then the only refusals are BadSignature and StaleDelivery
    except (BadSignature, StaleDelivery):
        return
    # and anything accepted is the real signed body
    assert delivery.provider == provider
    assert body == body_for(provider)
