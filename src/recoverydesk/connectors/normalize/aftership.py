"""AfterShip tracking webhooks to canonical events (source ``carrier``).

Accepted: the webhook envelope ``{"event", "event_id", "msg": Tracking, "ts"}``, and the
Tracking API responses (``{"meta", "data": {"tracking"}}`` or ``{"data": {"trackings": []}}``).
The tracking's *current* ``tag``/``subtag`` is the fact (earlier checkpoints were earlier facts).
Only the envelope's ``event`` ``tracking_update`` (AfterShip's "shipment status" event; an
envelope without ``event`` is read as one) reports a tag: the others (``edd_revise``, an estimated
delivery date revised; ``tracking_pending_time``, a tracking pending too long …) carry the same
tracking but no new status, and are no order fact.

Order reference: the tracking's ``order_id``, else ``order_number`` (set when the tracking is
created); when both are empty, the tracking number itself, as a stand-in. ``order_id`` comes
first because it is the shop's id of the order, which is what the desk keys orders by: AfterShip's
Shopify integration puts the numeric Shopify order id there (``450789469``, the ref of the
``shopify`` normalizer) and the order name in ``order_number`` (``#1001``), and Magento's
entity id likewise. ``order_number``, when the ref is not it, is kept in
``order.ids.aftership_order_number``.
``order.ids.tracking_number`` (``services.intake.TRACKING_NUMBER``) always holds the tracking
number; when it equals ``order.ref`` the ref is only a tracking number, and intake moves the event
to the order that shipped under that number (while the desk knows no such order, the event
stands under the number).

Event ids: ``carrier:aftership:<tracking id>:<subtag>:<occurrence>``, the occurrence being the
envelope's ``event_id`` (AfterShip's dedupe key: a redelivery repeats it), else, for an API
response, the ``checkpoint_time`` of the tracking's latest checkpoint as AfterShip gives it (the
same for every read of the same state); ``carrier:aftership:<tracking id>:<subtag>`` when there is
neither. So a second failed attempt (the same subtag a day later) is a new fact, and one delivery
read twice is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
    aware,
    event,
    iso,
    need,
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.services.intake import TRACKING_NUMBER

SOURCE = "carrier"
_TAG_EVENTS = frozenset({"tracking_update"})  # the envelope events that report a tag
_EXCEPTION_KINDS = {
    "Exception_002": "failed_attempt",  # customer moved
    "Exception_003": "failed_attempt",  # refused by the customer
    "Exception_004": "delay",  # customs
    "Exception_005": "delay",  # external factors
    "Exception_006": "delay",  # held for payment
    "Exception_008": "failed_attempt",  # pick-up missed
    "Exception_009": "delay",  # rejected by the carrier
    "Exception_010": "returned_to_sender",  # returning
    "Exception_011": "returned_to_sender",
    "Exception_012": "damaged",
    "Exception_013": "lost",
}


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "aftership payload")
    meta = body.get("meta")
    if isinstance(meta, Mapping) and meta.get("code") not in (200, 201, None):
        raise InvalidEvent(
            f"aftership payload: an API error ({meta.get('code')} "
            f"{text(meta.get('type')) or ''}: {text(meta.get('message')) or ''}), not a tracking"
        )
    occurrence: str | None = None
    if isinstance(body.get("msg"), Mapping):
        kind = text(body.get("event"))
        if kind is not None and kind not in _TAG_EVENTS:
            return skip(
                f"AfterShip event {kind} reports no change of the shipment's status "
                "(only tracking_update does)"
            )
        trackings = [body["msg"]]
        occurrence = text(body.get("event_id"))
    elif isinstance(body.get("data"), Mapping) and isinstance(
        body["data"].get("tracking"), Mapping
    ):
        trackings = [body["data"]["tracking"]]
    elif isinstance(body.get("data"), Mapping) and "trackings" in body["data"]:
        trackings = as_list(body["data"]["trackings"], "data.trackings")
    else:
        raise InvalidEvent("aftership payload: no tracking (expected msg or data.tracking)")
    events: list[dict[str, Any]] = []
    reasons: list[str] = []
    for raw in trackings:
        outcome = _tracking(as_map(raw, "tracking"), occurrence)
        if isinstance(outcome, str):
            reasons.append(outcome)
        else:
            events.append(outcome)
    return Normalized(events=events) if events else skip("; ".join(reasons) or "no trackings")


def _tracking(t: Mapping[str, Any], occurrence: str | None = None) -> dict[str, Any] | str:
    tid = need(t, "id", "tracking")
    number = need(t, "tracking_number", "tracking")
    tag = need(t, "tag", "tracking")
    subtag = text(t.get("subtag")) or f"{tag}_000"
    data: dict[str, Any] = {
        "tracking": number[:200],
        "carrier": text(t.get("slug")),
        "subtag": subtag,
        "message": text(t.get("subtag_message")),
    }
    if tag == "Delivered":
        kind = "fulfillment.delivered"
    elif tag in ("InTransit", "OutForDelivery", "AvailableForPickup"):
        kind = "fulfillment.shipped"
    elif tag == "AttemptFail":
        kind, data["kind"] = "delivery.exception", "failed_attempt"
    elif tag == "Exception" and subtag == "Exception_007":
        kind = "address.invalid"
    elif tag == "Exception":
        kind, data["kind"] = "delivery.exception", _EXCEPTION_KINDS.get(subtag, "delay")
    elif tag == "Expired":
        kind, data["kind"] = "delivery.exception", "delay"
        data["message"] = data["message"] or "no tracking update for 30 days"
    else:
        return (
            f"tracking {number} is {tag}: the carrier has not picked it up yet, nothing to act on"
        )
    checkpoints = [
        as_map(c, "checkpoints[]") for c in as_list(t.get("checkpoints") or [], "checkpoints")
    ]
    at = next(
        (
            aware(c.get("checkpoint_time"))
            for c in reversed(checkpoints)
            if c.get("tag") == tag and aware(c.get("checkpoint_time"))
        ),
        None,
    )
    order_id, order_number = text(t.get("order_id")), text(t.get("order_number"))
    ref = order_id or order_number or number
    ids = {TRACKING_NUMBER: number[:200], "aftership_tracking": tid}
    if order_number and order_number != ref:
        ids["aftership_order_number"] = order_number[:200]
    latest = next(
        (
            text(c.get("checkpoint_time"))
            for c in reversed(checkpoints)
            if text(c.get("checkpoint_time"))
        ),
        None,
    )
    occurrence = occurrence or latest
    return event(
        id=f"{SOURCE}:aftership:{tid}:{subtag}" + (f":{occurrence[:64]}" if occurrence else ""),
        source=SOURCE,
        type=kind,
        occurred_at=at
        or iso(t.get("updated_at") or t.get("last_updated_at"), "tracking.updated_at"),
        order={"ref": ref[:200], "ids": ids},
        data=data,
    )
