"""Adyen standard notifications to canonical events (source ``psp``).

Accepted: the webhook body ``{"live": …, "notificationItems": [{"NotificationRequestItem": …}]}``,
or one ``NotificationRequestItem`` (wrapped or bare). Amounts are minor units.

Order reference: ``merchantReference`` (the merchant's order reference given with the payment).
When it is missing, or when it is the desk's own intent key (``rd:…``, set as the reference of a
refund the desk asked for; it then goes to ``data.intent``), the original payment's PSP reference
(``originalReference``, else ``pspReference``) stands in.
Event ids: ``psp:adyen:<pspReference>:<eventCode>:<success>`` (Adyen's own unique key of a
notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
    clip,
    currency,
    event,
    iso,
    minor_units,
    need,
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent

SOURCE = "psp"
_DISPUTE_CODES = frozenset({"CHARGEBACK", "NOTIFICATION_OF_CHARGEBACK", "REQUEST_FOR_INFORMATION"})


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "adyen payload")
    if "notificationItems" in body:
        items = [
            as_map(
                as_map(i, "notificationItems[]").get("NotificationRequestItem"),
                "NotificationRequestItem",
            )
            for i in as_list(body["notificationItems"], "notificationItems")
        ]
    elif "NotificationRequestItem" in body:
        items = [as_map(body["NotificationRequestItem"], "NotificationRequestItem")]
    elif "eventCode" in body:
        items = [body]
    elif "resultCode" in body:
        return skip(
            "an Adyen API response (resultCode "
            f"{text(body.get('resultCode'))}) answers the caller's own request; the AUTHORISATION "
            "notification reports the same result with the order's merchantReference"
        )
    elif str(body.get("type", "")).startswith("balancePlatform."):
        return skip(
            f"{body.get('type')} is a Balance Platform (issuing) webhook about the platform's own "
            "cards, not a shopper's payment for an order"
        )
    else:
        raise InvalidEvent("adyen payload: not an Adyen notification (no notificationItems)")
    events: list[dict[str, Any]] = []
    reasons: list[str] = []
    for item in items:
        outcome = _item(item)
        if isinstance(outcome, str):
            reasons.append(outcome)
        else:
            events.append(outcome)
    return (
        Normalized(events=events) if events else skip("; ".join(reasons) or "no notification items")
    )


def _item(item: Mapping[str, Any]) -> dict[str, Any] | str:
    code = need(item, "eventCode", "NotificationRequestItem").upper()
    psp = need(item, "pspReference", "NotificationRequestItem")
    success = text(item.get("success")) == "true"
    amount_obj = as_map(item.get("amount") or {}, "amount")
    cur = currency(amount_obj.get("currency"))
    reason = clip(text(item.get("reason")), 4000)
    extra = item.get("additionalData") if isinstance(item.get("additionalData"), Mapping) else {}
    assert isinstance(extra, Mapping)
    kind: str | None
    data: dict[str, Any] = {}
    if code == "AUTHORISATION":
        kind = "payment.authorized" if success else "payment.failed"
        data["reason"] = None if success else reason
    elif code == "CAPTURE":
        kind = "payment.captured" if success else "payment.failed"
        data.update(reason=None if success else reason, operation="capture")
    elif code in ("CANCELLATION", "TECHNICAL_CANCEL"):
        if not success:
            return (
                f"Adyen refused cancellation {psp} ({reason}); the authorisation stands unchanged"
            )
        kind = "payment.voided"
    elif code == "REFUND":
        if not success:
            return (
                f"Adyen refused refund {psp} ({reason or 'no reason'}); no money moved, and the "
                "catalogue has no refund-failure event"
            )
        kind = "payment.refunded"
        data["refund_id"] = psp
    elif code == "OFFER_CLOSED":
        if not success:
            return f"OFFER_CLOSED {psp} did not close the offer"
        kind = "payment.failed"
        data["reason"] = "offer closed: the shopper did not complete the payment"
    elif code in _DISPUTE_CODES:
        kind = "dispute.opened"
        due = text(extra.get("defensePeriodEndsAt"))
        data.update(
            reason=reason,
            reason_code=text(extra.get("chargebackReasonCode")),
            due_by=iso(due, "defensePeriodEndsAt") if due else None,
            dispute_stage=code.lower(),
        )
    else:
        return f"Adyen {code} notifications are not order exceptions for this desk"
    if cur is None:
        raise InvalidEvent(f"adyen {code} {psp}: missing amount.currency")
    data.update(
        amount=minor_units(amount_obj.get("value"), cur, "amount.value"),
        currency=cur,
        psp_reference=psp,
    )
    merchant_ref = text(item.get("merchantReference"))
    intent = merchant_ref if merchant_ref and merchant_ref.startswith("rd:") else None
    if code == "REFUND":
        data["intent"] = intent
    ref = (
        (merchant_ref if merchant_ref and not intent else None)
        or text(item.get("originalReference"))
        or psp
    )
    return event(
        id=f"{SOURCE}:adyen:{psp}:{code}:{'true' if success else 'false'}",
        source=SOURCE,
        type=kind,
        occurred_at=iso(item.get("eventDate"), "eventDate"),
        order={
            "ref": ref[:200],
            "currency": cur,
            "ids": {"adyen_psp_reference": text(item.get("originalReference")) or psp},
        },
        data=data,
    )
