"""Inbound webhook signatures: check what each vendor signed, and sign the way it does.

``verify`` checks one delivery as the vendor specifies it (``fixtures/vendors/SIGNATURES.md``):
over the raw body bytes, compared in constant time, with every candidate secret of a rotation. It
returns a ``Delivery`` (the vendor's dedupe id and when the vendor says the event fired) or raises
``BadSignature`` (missing, garbled or wrong signature) or ``StaleDelivery`` (a signed timestamp
outside ``tolerance``). No other exception escapes for any headers or body; an unknown provider is
``NotFound`` and an unusable secret list is ``InvalidConfig`` (both are the caller's set-up, not
the sender's bytes). ``sign`` builds headers that ``verify`` accepts, for tests and the emulators.

Per provider (header names are matched in any case):

- ``shopify``: ``X-Shopify-Hmac-Sha256`` (or ``Shopify-Hmac-Sha256``) = base64 HMAC-SHA256 of the
  body, key the app client secret. No signed timestamp: ``triggered_at`` is
  ``X-Shopify-Triggered-At``. The id is ``X-Shopify-Webhook-Id``, the delivery (the same on every
  retry of it, Shopify's documented key to ignore duplicates), else ``X-Shopify-Event-Id``
  (the event, shared by every delivery it caused). ``sign`` sets both to ``delivery_id``.
- ``woocommerce``: ``X-WC-Webhook-Signature`` = base64 HMAC-SHA256 of the body. The secret is the
  plain value (what ``wp_specialchars_decode`` yields). No timestamp and no event id: the
  ``X-WC-Webhook-Delivery-ID`` is a per-second hash that can collide, so the id is ``None`` and
  callers dedupe on ``(id, date_modified_gmt, status)``.
- ``stripe``: ``Stripe-Signature: t=..,v1=..``, checked by the official SDK
  (``stripe.WebhookSignature.verify_header``). The age check uses the injected ``now`` with the
  SDK's rule (only ``t < now - tolerance`` is refused). Id and time: the event's ``id`` and
  ``created`` (else ``t``).
- ``adyen``: no header. Each ``notificationItems[].NotificationRequestItem`` carries
  ``additionalData.hmacSignature`` = base64 HMAC-SHA256, key hex-decoded, over
  ``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:
  eventCode:success``. Every item must verify. Id ``pspReference:eventCode:success`` per item
  (joined by ``,``); time the earliest ``eventDate``. ``sign`` adds no header: use
  ``sign_adyen_notification`` to put the signatures in the body.
- ``zendesk``: ``X-Zendesk-Webhook-Signature`` = base64 HMAC-SHA256 of ``TIMESTAMP + BODY`` where
  TIMESTAMP is ``X-Zendesk-Webhook-Signature-Timestamp`` (ISO-8601) as received; refused when more
  than ``tolerance`` from ``now`` either way. Id ``X-Zendesk-Webhook-Invocation-Id``.
- ``aftership``: ``aftership-hmac-sha256`` = base64 HMAC-SHA256 of the body. Id and time from the
  body's ``event_id`` and ``ts``.
- ``easypost``: ``X-Hmac-Signature: hmac-sha256-hex=<hex>``, key the NFKD-normalised secret as
  UTF-8. Id and time from the event's ``id`` and ``created_at``.
- ``wms``: our own generic 3PL scheme, for warehouses that let us choose. The sender sends
  ``X-Recoverydesk-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the lowercase hex
  HMAC-SHA256 of ``f"{t}.".encode() + body`` keyed with the shared secret as UTF-8 (several
  ``v1=`` entries may be sent while the sender rotates), and ``X-Recoverydesk-Delivery: <id>``, the
  delivery id, the same on every retry. ``t`` is canonical decimal (no sign, no leading zeros) and
  is refused when more than ``tolerance`` from ``now`` either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from recoverydesk.domain.errors import InvalidConfig, InvalidInput, NotFound, Unauthorized

__all__ = [
    "PROVIDERS",
    "BadSignature",
    "Delivery",
    "StaleDelivery",
    "sign",
    "sign_adyen_notification",
    "verify",
]


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: str
    delivery_id: str | None  # the vendor's id to dedupe on; None when the vendor gives none
    triggered_at: datetime | None  # when the vendor says it fired, aware UTC; None if unknown


class BadSignature(Unauthorized):
    code = "bad_signature"


class StaleDelivery(Unauthorized):
    code = "stale_delivery"


PROVIDERS: frozenset[str] = frozenset(
    {"shopify", "woocommerce", "stripe", "adyen", "zendesk", "aftership", "easypost", "wms"}
)

_WMS_SIGNATURE = "x-recoverydesk-signature"
_WMS_DELIVERY = "x-recoverydesk-delivery"
_UNIX_SECONDS = re.compile(r"0|[1-9][0-9]{0,11}")
_ADYEN_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")


@dataclass(frozen=True, slots=True)
class _Request:
    provider: str
    headers: dict[str, str]
    body: bytes
    secrets: tuple[str, ...]
    now: datetime
    tolerance: timedelta

    def header(self, *names: str) -> str:
        """The first present header of ``names`` (lower case), printable ASCII, or BadSignature."""
        for name in names:
            value = self.headers.get(name)
            if value is not None:
                if not value or not value.isascii() or not value.isprintable():
                    raise BadSignature(f"{self.provider}: header {name} is empty or not ASCII")
                return value.strip()
        raise BadSignature(f"{self.provider}: missing header {names[0]}")

    def optional(self, *names: str) -> str | None:
        try:
            return self.header(*names)
        except BadSignature:
            return None

    def hmac_keys(self) -> list[bytes]:
        return [_utf8(secret) for secret in self.secrets]


def verify(
    provider: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance: timedelta = timedelta(seconds=300),
) -> Delivery:
    """Check one delivery from ``provider``; see the module docstring for each scheme."""
    check = _VERIFIERS.get(provider)
    if check is None:
        raise NotFound(f"unknown webhook provider {provider!r}", code="unknown_provider")
    if now.tzinfo is None or tolerance < timedelta(0):
        raise InvalidInput("now must be timezone-aware and tolerance not negative")
    if isinstance(secrets, str) or not secrets or not all(s.strip() for s in secrets):
        raise InvalidConfig(
            f"{provider}: no usable signing secret (give one or more non-empty secrets)",
            code="no_signing_secret",
        )
    lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
    request = _Request(provider, lowered, bytes(body), tuple(secrets), now, tolerance)
    return check(request)


def sign(
    provider: str, *, body: bytes, secret: str, now: datetime, delivery_id: str | None = None
) -> dict[str, str]:
    """Headers with which ``verify(provider, ...)`` accepts ``body`` signed with ``secret``.

    Ids that the vendor puts in the body (Stripe, Adyen, AfterShip, EasyPost) are not headers, so
    ``delivery_id`` is ignored for them. Adyen signs inside the body: ``sign`` returns no headers
    and raises ``InvalidInput`` unless every item is already signed (``sign_adyen_notification``).
    """
    signer = _SIGNERS.get(provider)
    if signer is None:
        raise NotFound(f"unknown webhook provider {provider!r}", code="unknown_provider")
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    return signer(body, secret, now.astimezone(UTC), delivery_id)


def sign_adyen_notification(body: bytes, hex_key: str) -> bytes:
    """``body`` (an Adyen notification) with ``additionalData.hmacSignature`` set in each item."""
    notification = _json_object(body)
    if notification is None:
        raise InvalidInput("adyen: the body is not a JSON object")
    try:
        items = _adyen_items(notification)
        key = _hex_key(hex_key)
        for item in items:
            extra = item.setdefault("additionalData", {})
            extra["hmacSignature"] = _b64(_hmac(key, _adyen_signed_string(item)))
    except (BadSignature, AttributeError, TypeError) as exc:
        raise InvalidInput(f"adyen: cannot sign this notification ({exc})") from exc
    return json.dumps(notification, separators=(",", ":")).encode()


# -- shared pieces ---------------------------------------------------------------------------


def _utf8(secret: str) -> bytes:
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidConfig("a signing secret is not valid text", code="no_signing_secret") from exc


def _hex_key(secret: str) -> bytes:
    try:
        return binascii.a2b_hex(secret.strip())
    except (binascii.Error, ValueError) as exc:
        raise InvalidConfig("adyen: the HMAC key must be hex", code="no_signing_secret") from exc


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _b64_digest(provider: str, value: str) -> bytes:
    """The 32-byte digest in a base64 signature, or BadSignature."""
    try:
        digest = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSignature(f"{provider}: the signature is not base64") from exc
    if len(digest) != hashlib.sha256().digest_size:
        raise BadSignature(f"{provider}: the signature is not an HMAC-SHA256 digest")
    return digest


def _require_match(provider: str, expected: Sequence[bytes], given: Sequence[bytes]) -> None:
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise BadSignature(f"{provider}: the signature does not match (wrong secret or body)")


def _from_unix(provider: str, seconds: object) -> datetime:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise BadSignature(f"{provider}: the timestamp is not a number")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise BadSignature(f"{provider}: the timestamp is out of range") from exc


def _optional_unix(seconds: object) -> datetime | None:
    try:
        return _from_unix("", seconds)
    except BadSignature:
        return None


def _iso(value: object) -> datetime | None:
    """An ISO-8601 instant with an offset, as aware UTC; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _check_window(req: _Request, signed_at: datetime, *, future_too: bool) -> None:
    if signed_at < req.now - req.tolerance:
        raise StaleDelivery(f"{req.provider}: signed at {signed_at.isoformat()}, too long ago")
    if future_too and signed_at > req.now + req.tolerance:
        raise StaleDelivery(f"{req.provider}: signed at {signed_at.isoformat()}, in the future")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- body-only HMACs: Shopify, WooCommerce, AfterShip, EasyPost --------------------------------


def _verify_shopify(req: _Request) -> Delivery:
    given = req.header("x-shopify-hmac-sha256", "shopify-hmac-sha256")
    _require_match(
        req.provider,
        [_hmac(k, req.body) for k in req.hmac_keys()],
        [_b64_digest(req.provider, given)],
    )
    webhook_id = req.optional("x-shopify-webhook-id", "shopify-webhook-id")
    event_id = req.optional("x-shopify-event-id", "shopify-event-id")
    triggered = _iso(req.optional("x-shopify-triggered-at", "shopify-triggered-at"))
    return Delivery(req.provider, webhook_id or event_id, triggered)


def _verify_woocommerce(req: _Request) -> Delivery:
    given = _b64_digest(req.provider, req.header("x-wc-webhook-signature"))
    _require_match(req.provider, [_hmac(k, req.body) for k in req.hmac_keys()], [given])
    return Delivery(req.provider, None, None)


def _verify_aftership(req: _Request) -> Delivery:
    given = _b64_digest(req.provider, req.header("aftership-hmac-sha256"))
    _require_match(req.provider, [_hmac(k, req.body) for k in req.hmac_keys()], [given])
    event = _json_object(req.body) or {}
    return Delivery(req.provider, _text(event.get("event_id")), _optional_unix(event.get("ts")))


def _easypost_signature(secret: str, body: bytes) -> str:
    key = _utf8(unicodedata.normalize("NFKD", secret))
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _verify_easypost(req: _Request) -> Delivery:
    given = req.header("x-hmac-signature").encode("ascii")
    expected = [_easypost_signature(s, req.body).encode("ascii") for s in req.secrets]
    _require_match(req.provider, expected, [given])
    event = _json_object(req.body) or {}
    return Delivery(req.provider, _text(event.get("id")), _iso(event.get("created_at")))


# -- timestamped: Zendesk, Stripe, wms ---------------------------------------------------------


def _verify_zendesk(req: _Request) -> Delivery:
    given = _b64_digest(req.provider, req.header("x-zendesk-webhook-signature"))
    stamp = req.header("x-zendesk-webhook-signature-timestamp")
    message = stamp.encode("ascii") + req.body
    _require_match(req.provider, [_hmac(k, message) for k in req.hmac_keys()], [given])
    signed_at = _iso(stamp)
    if signed_at is None:
        raise BadSignature("zendesk: the signature timestamp is not an ISO-8601 instant")
    _check_window(req, signed_at, future_too=True)
    return Delivery(req.provider, req.optional("x-zendesk-webhook-invocation-id"), signed_at)


def _signed_time(provider: str, header: str) -> tuple[str, list[str]]:
    """``t`` and the ``v1`` values of a ``t=..,v1=..`` header (Stripe's reading: first ``t``)."""
    pairs = [item.split("=", 1) for item in header.split(",")]
    stamps = [p[1].strip() for p in pairs if len(p) == 2 and p[0].strip() == "t"]
    signatures = [p[1].strip() for p in pairs if len(p) == 2 and p[0].strip() == "v1"]
    if not stamps or not _UNIX_SECONDS.fullmatch(stamps[0]):
        raise BadSignature(f"{provider}: the signature header has no valid t=<unix seconds>")
    if not signatures:
        raise BadSignature(f"{provider}: the signature header has no v1= signature")
    return stamps[0], signatures


def _verify_stripe(req: _Request) -> Delivery:
    header = req.header("stripe-signature")
    try:
        payload = req.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSignature("stripe: the body is not UTF-8, Stripe signs UTF-8 text") from exc
    failure: stripe.SignatureVerificationError | None = None
    for secret in req.secrets:
        try:  # tolerance=None: the SDK reads the wall clock, the age is checked below on `now`
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except stripe.SignatureVerificationError as exc:
            failure = exc
        else:
            break
    else:
        raise _from_stripe(failure)
    stamp, _ = _signed_time(req.provider, header)
    signed_at = _from_unix(req.provider, int(stamp))
    _check_window(req, signed_at, future_too=False)  # the SDK's rule: only too old is refused
    event = _json_object(req.body) or {}
    created = _optional_unix(event.get("created"))
    return Delivery(req.provider, _text(event.get("id")), created or signed_at)


def _from_stripe(error: stripe.SignatureVerificationError | None) -> Unauthorized:
    message = getattr(error, "user_message", None) or str(error)
    if "tolerance" in message:
        return StaleDelivery(f"stripe: {message}")
    return BadSignature(f"stripe: {message}")


def _verify_wms(req: _Request) -> Delivery:
    stamp, signatures = _signed_time(req.provider, req.header(_WMS_SIGNATURE))
    message = f"{stamp}.".encode() + req.body
    expected = [hmac.new(k, message, hashlib.sha256).hexdigest().encode() for k in req.hmac_keys()]
    _require_match(req.provider, expected, [s.encode("ascii") for s in signatures])
    signed_at = _from_unix(req.provider, int(stamp))
    _check_window(req, signed_at, future_too=True)
    return Delivery(req.provider, req.optional(_WMS_DELIVERY), signed_at)


# -- Adyen: HMAC per notification item, in the body ----------------------------------------------


def _adyen_items(notification: dict[str, Any]) -> list[dict[str, Any]]:
    wrapped = notification.get("notificationItems")
    if not isinstance(wrapped, list) or not wrapped:
        raise BadSignature("adyen: the body has no notificationItems")
    items = [w.get("NotificationRequestItem") if isinstance(w, dict) else None for w in wrapped]
    if not all(isinstance(item, dict) for item in items):
        raise BadSignature("adyen: a notification item is not a NotificationRequestItem object")
    return [item for item in items if isinstance(item, dict)]


def _adyen_signed_string(item: dict[str, Any]) -> bytes:
    amount = item.get("amount", {})
    if not isinstance(amount, dict):
        raise BadSignature("adyen: amount is not an object")
    value, currency = amount.get("value", ""), amount.get("currency", "")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    parts = [item.get(f, "") for f in _ADYEN_FIELDS]
    parts += [value, currency, item.get("eventCode", ""), item.get("success", "")]
    if not all(isinstance(part, str) for part in parts):
        raise BadSignature("adyen: a signed field of the item is not a string")
    try:
        return ":".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadSignature("adyen: a signed field of the item is not valid text") from exc


def _verify_adyen(req: _Request) -> Delivery:
    keys = [_hex_key(secret) for secret in req.secrets]
    notification = _json_object(req.body)
    if notification is None:
        raise BadSignature("adyen: the body is not a JSON notification object")
    items = _adyen_items(notification)
    for item in items:
        extra = item.get("additionalData")
        given = extra.get("hmacSignature") if isinstance(extra, dict) else None
        if not isinstance(given, str) or not given.isascii():
            raise BadSignature("adyen: an item has no additionalData.hmacSignature")
        message = _adyen_signed_string(item)
        _require_match(
            req.provider, [_hmac(k, message) for k in keys], [_b64_digest("adyen", given)]
        )
    ids = [
        ":".join(str(item.get(f, "")) for f in ("pspReference", "eventCode", "success"))
        for item in items
    ]
    dates = [d for d in (_iso(item.get("eventDate")) for item in items) if d is not None]
    return Delivery(req.provider, ",".join(ids), min(dates, default=None))


# -- signing -----------------------------------------------------------------------------------

_Id = str | None
_Headers = dict[str, str]
_Signer = Callable[[bytes, str, datetime, _Id], _Headers]


def _with_id(headers: dict[str, str], name: str, delivery_id: str | None) -> dict[str, str]:
    return headers | ({name: delivery_id} if delivery_id is not None else {})


def _sign_shopify(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    headers = {
        "X-Shopify-Hmac-Sha256": _b64(_hmac(_utf8(secret), body)),
        "X-Shopify-Triggered-At": now.isoformat().replace("+00:00", "Z"),
    }
    # one delivery of one event: the webhook id is the delivery, the event id the fact it reports
    # (an emulator fanning one event out to several deliveries sets its own event id over this)
    headers = _with_id(headers, "X-Shopify-Webhook-Id", delivery_id)
    return _with_id(headers, "X-Shopify-Event-Id", delivery_id)


def _sign_woocommerce(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    headers = {"X-WC-Webhook-Signature": _b64(_hmac(_utf8(secret), body))}
    return _with_id(headers, "X-WC-Webhook-Delivery-ID", delivery_id)


def _sign_stripe(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("stripe: only UTF-8 bodies can be signed") from exc
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=int(now.timestamp())
    )
    return {"Stripe-Signature": header}


def _sign_adyen(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    try:
        _verify_adyen(_Request("adyen", {}, body, (secret,), now, timedelta(0)))
    except BadSignature as exc:
        raise InvalidInput(f"{exc.message}: sign the body with sign_adyen_notification") from exc
    return {}


def _sign_zendesk(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "X-Zendesk-Webhook-Signature": _b64(_hmac(_utf8(secret), stamp.encode() + body)),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }
    return _with_id(headers, "X-Zendesk-Webhook-Invocation-Id", delivery_id)


def _sign_aftership(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    return {"aftership-hmac-sha256": _b64(_hmac(_utf8(secret), body))}


def _sign_easypost(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    return {"X-Hmac-Signature": _easypost_signature(secret, body)}


def _sign_wms(body: bytes, secret: str, now: datetime, delivery_id: _Id) -> _Headers:
    stamp = int(now.timestamp())
    digest = hmac.new(_utf8(secret), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Recoverydesk-Signature": f"t={stamp},v1={digest}"}
    return _with_id(headers, "X-Recoverydesk-Delivery", delivery_id)


_VERIFIERS: dict[str, Callable[[_Request], Delivery]] = {
    "shopify": _verify_shopify,
    "woocommerce": _verify_woocommerce,
    "stripe": _verify_stripe,
    "adyen": _verify_adyen,
    "zendesk": _verify_zendesk,
    "aftership": _verify_aftership,
    "easypost": _verify_easypost,
    "wms": _verify_wms,
}
_SIGNERS: dict[str, _Signer] = {
    "shopify": _sign_shopify,
    "woocommerce": _sign_woocommerce,
    "stripe": _sign_stripe,
    "adyen": _sign_adyen,
    "zendesk": _sign_zendesk,
    "aftership": _sign_aftership,
    "easypost": _sign_easypost,
    "wms": _sign_wms,
}
