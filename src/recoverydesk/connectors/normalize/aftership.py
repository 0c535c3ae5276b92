"""AfterShip tracking webhooks to canonical events (source ``carrier``).

Accepted: the webhook envelope ``{"event", "event_id", "msg": Tracking, "ts"}``, and the
Tracking API responses (``{"meta", "data": {"tracking"}}`` or ``{"data": {"trackings": []}}``).
The tracking's *current* ``tag``/``subtag`` is the fact (earlier checkpoints were earlier facts).

Order reference: the tracking's ``order_number``, else ``order_id`` (set when the tracking is
created); when both are empty, the tracking number itself, as a stand-in.
``order.ids.tracking_number`` (``services.intake.TRACKING_NUMBER``) always holds the tracking
number; when it equals ``order.ref`` the ref is only a tracking number, and intake moves the event
to the order that shipped under that number (while the desk knows no such order, the event
stands under the number).
Event ids: ``carrier:aftership:<tracking id>:<subtag>``.
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
    if isinstance(body.get("msg"), Mapping):
        trackings = [body["msg"]]
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
        outcome = _tracking(as_map(raw, "tracking"))
        if isinstance(outcome, str):
            reasons.append(outcome)
        else:
            events.append(outcome)
    return Normalized(events=events) if events else skip("; ".join(reasons) or "no trackings")


def _tracking(t: Mapping[str, Any]) -> dict[str, Any] | str:
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
    ref = text(t.get("order_number")) or text(t.get("order_id")) or number
    return event(
        id=f"{SOURCE}:aftership:{tid}:{subtag}",
        source=SOURCE,
        type=kind,
        occurred_at=at
        or iso(t.get("updated_at") or t.get("last_updated_at"), "tracking.updated_at"),
        order={
            "ref": ref[:200],
            "ids": {TRACKING_NUMBER: number[:200], "aftership_tracking": tid},
        },
        data=data,
    )
