"""EasyPost tracker webhooks to canonical events (source ``carrier``).

Accepted: the webhook ``Event`` (``{"object": "Event", "description": "tracker.updated",
"result": Tracker}``) and a bare ``Tracker``. The tracker's current ``status`` is the fact.

Order reference: a Tracker carries no order reference, only the parcel's tracking code
(``tracking_code``). So ``order.ref`` is that code as a stand-in, and ``order.ids`` says so:
``order.ids.tracking_number`` (``services.intake.TRACKING_NUMBER``) holds the same code, and an
``ids.tracking_number`` equal to ``order.ref`` means "the ref is only a tracking number". Intake
then moves the event to the order that shipped under that number; while the desk knows no such
order, the event stands under the code. ``order.ids`` also keeps the tracker and shipment ids.
Event ids: ``carrier:easypost:<tracker id>:<status>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_map,
    compact,
    event,
    iso,
    need,
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.services.intake import TRACKING_NUMBER

SOURCE = "carrier"
_FAILURE_KINDS = {"damaged": "damaged", "lost": "lost", "return_to_sender": "returned_to_sender"}


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "easypost payload")
    if body.get("object") == "Event":
        description = text(body.get("description")) or "unknown"
        if not description.startswith("tracker."):
            return skip(f"EasyPost event {description} is not about a shipment's tracking")
        if not isinstance(body.get("result"), Mapping):
            return skip(
                f"EasyPost event {description} carries no Tracker (result): no status to report"
            )
        return _tracker(body["result"])
    if body.get("object") == "Tracker":
        return _tracker(body)
    raise InvalidEvent("easypost payload: not an EasyPost Event or Tracker")


def _tracker(t: Mapping[str, Any]) -> Normalized:
    tid = need(t, "id", "tracker")
    code = need(t, "tracking_code", "tracker")
    status = text(t.get("status")) or "unknown"
    detail = text(t.get("status_detail"))
    data: dict[str, Any] = {
        "tracking": code[:200],
        "carrier": text(t.get("carrier")),
        "status_detail": detail,
    }
    if status in ("in_transit", "out_for_delivery", "available_for_pickup"):
        kind = "fulfillment.shipped"
    elif status == "delivered":
        kind = "fulfillment.delivered"
    elif status == "return_to_sender":
        kind, data["kind"] = "delivery.exception", "returned_to_sender"
    elif status == "failure":
        kind, data["kind"] = (
            "delivery.exception",
            _FAILURE_KINDS.get(detail or "", "failed_attempt"),
        )
    else:
        return skip(f"tracker {code} is {status}: not yet with the carrier, or no status to act on")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:easypost:{tid}:{status}",
                source=SOURCE,
                type=kind,
                occurred_at=iso(t.get("updated_at") or t.get("created_at"), "tracker.updated_at"),
                order={
                    "ref": code[:200],
                    "ids": compact(
                        {
                            TRACKING_NUMBER: code[:200],
                            "easypost_tracker": tid,
                            "easypost_shipment": text(t.get("shipment_id")),
                        }
                    ),
                },
                data=data,
            )
        ]
    )
