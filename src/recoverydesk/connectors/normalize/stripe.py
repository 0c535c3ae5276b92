"""Stripe webhooks to canonical events (source ``psp``).

Accepted: a full Event (``{"object": "event", "type": …, "data": {"object": …}}``), the event's
``data`` member (``{"object": …}``) or a bare API object (charge, payment_intent, refund, dispute,
review, radar.early_fraud_warning). Amounts are minor units and become major-unit decimals.

Order reference, first present of: ``metadata.order_ref``, ``metadata.order_id``,
``metadata.order_number``, ``metadata.order``; then ``description`` when it is a single token
(``#1001``, ``ORD-77``; prose descriptions are not references); else the Stripe payment's own id
(``payment_intent``, else ``charge``) so the event is still kept and can be matched later.

A refund's ``metadata.idempotency_key`` (or ``metadata.intent``; any metadata value starting with
``rd:``) is the desk's intent key and goes to ``data.intent``.
Event ids: ``psp:stripe:<object id>[:<fact>]``; a charge and its payment intent report the same
capture under the payment intent's id, so the two webhooks dedupe.
"""

from __future__ import annotations

import re
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
_REF_KEYS = ("order_ref", "order_id", "order_number", "order")
_TOKEN = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_OPEN_DISPUTES = frozenset(
    {"needs_response", "under_review", "warning_needs_response", "warning_under_review"}
)


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "stripe payload")
    event_type: str | None = None
    created: object = None
    if body.get("object") == "event":
        event_type = need(body, "type", "stripe event")
        created = body.get("created")
        data = as_map(body.get("data"), "stripe event data")
        obj = as_map(data.get("object"), "stripe event data.object")
    elif "object" in body and isinstance(body["object"], Mapping):
        obj = body["object"]  # the ``data`` member of an event
    else:
        obj = body
    kind = text(obj.get("object")) or _by_prefix(text(obj.get("id")) or "")
    handler = _HANDLERS.get(kind or "")
    if handler is None:
        what = f"event {event_type}" if event_type else f"object {kind!r}"
        if kind is None:
            raise InvalidEvent("stripe payload: not a Stripe event or API object (no 'object')")
        return skip(f"Stripe {what} concerns {kind}s, not an order's payment")
    return handler(obj, event_type, created)


_PREFIXES = {
    "ch": "charge",
    "py": "charge",
    "pi": "payment_intent",
    "re": "refund",
    "pyr": "refund",
    "dp": "dispute",
    "du": "dispute",
    "issfr": "radar.early_fraud_warning",
    "prv": "review",
}


def _by_prefix(object_id: str) -> str | None:
    """Some event bodies omit ``object``; Stripe ids name their type (``ch_…``)."""
    return _PREFIXES.get(object_id.split("_", 1)[0]) if "_" in object_id else None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _payment_id(obj: Mapping[str, Any]) -> str | None:
    for key in ("payment_intent", "charge"):
        value = obj.get(key)
        if isinstance(value, Mapping):
            value = value.get("id")
        if text(value):
            return text(value)
    return None


def _order(obj: Mapping[str, Any], fallback: str | None) -> dict[str, Any]:
    meta = _metadata(obj)
    ref = next((text(meta.get(k)) for k in _REF_KEYS if text(meta.get(k))), None)
    description = text(obj.get("description"))
    if ref is None and description and _TOKEN.fullmatch(description):
        ref = description
    ref = ref or _payment_id(obj) or fallback
    if ref is None:
        raise InvalidEvent("stripe object: no order reference and no payment id")
    ids = {
        "stripe_payment_intent": text(obj.get("payment_intent"))
        if isinstance(obj.get("payment_intent"), str)
        else None,
        "stripe_charge": text(obj.get("charge")) if isinstance(obj.get("charge"), str) else None,
    }
    return {"ref": ref, "ids": {k: v for k, v in ids.items() if v}}


def _cur(obj: Mapping[str, Any]) -> str:
    code = currency(obj.get("currency"))
    if code is None:
        raise InvalidEvent("stripe object: missing currency")
    return code


def _at(obj: Mapping[str, Any], created: object) -> str:
    return iso(created if created is not None else obj.get("created"), "stripe created")


def _intent(meta: Mapping[str, Any]) -> str | None:
    for key in ("idempotency_key", "intent", "recoverydesk_intent"):
        if text(meta.get(key)):
            return text(meta.get(key))
    return next((str(v) for v in meta.values() if isinstance(v, str) and v.startswith("rd:")), None)


def _payment_event(  # noqa: PLR0917 - the facts of one payment event
    obj: Mapping[str, Any],
    kind: str,
    fact: str,
    created: object,
    amount: object,
    reason: str | None = None,
) -> dict[str, Any]:
    oid = need(obj, "id", "stripe object")
    payment = (
        text(obj.get("payment_intent")) if isinstance(obj.get("payment_intent"), str) else None
    )
    key = payment or oid
    cur = _cur(obj)
    return event(
        id=f"{SOURCE}:stripe:{key}:{fact}",
        source=SOURCE,
        type=kind,
        occurred_at=_at(obj, created),
        order={**_order(obj, oid), "currency": cur},
        data={
            "amount": minor_units(amount, cur, "stripe amount"),
            "currency": cur,
            "reason": reason,
            "payment_id": key,
        },
    )


def _charge(obj: Mapping[str, Any], event_type: str | None, created: object) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    cid = need(obj, "id", "charge")
    refunds_obj = obj.get("refunds")
    refunds = refunds_obj.get("data") if isinstance(refunds_obj, Mapping) else None
    if event_type == "charge.refunded" or (event_type is None and refunds):
        events = [
            ev
            for r in as_list(refunds or [], "charge.refunds.data")
            for ev in _refund({**as_map(r, "refund"), "_charge": obj}, None, None).events
        ]
        if not events:
            return skip(f"charge {cid} lists no succeeded refund")
        return Normalized(events=events)
    status = text(obj.get("status"))
    amount = obj.get("amount")
    if event_type == "charge.expired":
        return Normalized(
            events=[
                _payment_event(
                    obj, "payment.voided", "voided", created, amount, "authorization expired"
                )
            ]
        )
    if status == "failed" or event_type == "charge.failed":
        reason = clip(text(obj.get("failure_message")) or text(obj.get("failure_code")), 4000)
        return Normalized(
            events=[
                _payment_event(
                    {**obj, "payment_intent": None},
                    "payment.failed",
                    "failed",
                    created,
                    amount,
                    reason,
                )
            ]
        )
    if status == "succeeded" and obj.get("captured") is True:
        captured = (
            obj.get("amount_captured")
            if isinstance(obj.get("amount_captured"), int) and obj.get("amount_captured")
            else amount
        )
        return Normalized(
            events=[_payment_event(obj, "payment.captured", "captured", created, captured)]
        )
    if status == "succeeded":
        return Normalized(
            events=[_payment_event(obj, "payment.authorized", "authorized", created, amount)]
        )
    return skip(f"charge {cid} is {status}; its outcome comes in a later event")


def _payment_intent(obj: Mapping[str, Any], event_type: str | None, created: object) -> Normalized:
    pid = need(obj, "id", "payment_intent")
    status = text(obj.get("status"))
    error = (
        obj.get("last_payment_error")
        if isinstance(obj.get("last_payment_error"), Mapping)
        else None
    )
    by_event = {
        "payment_intent.payment_failed": "failed",
        "payment_intent.succeeded": "succeeded",
        "payment_intent.canceled": "canceled",
        "payment_intent.amount_capturable_updated": "requires_capture",
    }
    state = by_event.get(event_type or "", status)
    if state == "requires_payment_method" and error is not None:
        state = "failed"
    plain = {**obj, "payment_intent": pid}
    if state == "succeeded":
        received = obj.get("amount_received") or obj.get("amount")
        return Normalized(
            events=[_payment_event(plain, "payment.captured", "captured", created, received)]
        )
    if state == "requires_capture":
        capturable = obj.get("amount_capturable") or obj.get("amount")
        return Normalized(
            events=[_payment_event(plain, "payment.authorized", "authorized", created, capturable)]
        )
    if state == "canceled":
        reason = text(obj.get("cancellation_reason"))
        return Normalized(
            events=[
                _payment_event(
                    plain, "payment.voided", "voided", created, obj.get("amount"), reason
                )
            ]
        )
    if state == "failed":
        err = error or {}
        reason = clip(
            text(err.get("message"))
            or text(err.get("decline_code"))
            or text(err.get("code"))
            or text(err.get("type")),
            4000,
        )
        ev = _payment_event(
            plain,
            "payment.failed",
            f"failed:{text(err.get('charge')) or text(obj.get('latest_charge')) or 'last'}",
            created,
            obj.get("amount"),
            reason,
        )
        return Normalized(events=[ev])
    return skip(
        f"payment intent {pid} is {status}; it waits on the customer or the bank, no outcome yet"
    )


def _refund(obj: Mapping[str, Any], _event_type: str | None, created: object) -> Normalized:
    rid = need(obj, "id", "refund")
    status = text(obj.get("status"))
    if status != "succeeded":
        return skip(f"refund {rid} is {status}; only a succeeded refund moves money back")
    parent = obj.get("_charge") if isinstance(obj.get("_charge"), Mapping) else {}
    assert isinstance(parent, Mapping)
    cur = _cur(obj)
    source_obj = {
        **obj,
        "metadata": {**_metadata(parent), **_metadata(obj)},
        "description": parent.get("description"),
        "payment_intent": obj.get("payment_intent") or parent.get("payment_intent"),
        "charge": obj.get("charge") or parent.get("id"),
    }
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:stripe:{rid}",
                source=SOURCE,
                type="payment.refunded",
                occurred_at=_at(obj, created),
                order={**_order(source_obj, rid), "currency": cur},
                data={
                    "amount": minor_units(obj.get("amount"), cur, "refund.amount"),
                    "currency": cur,
                    "refund_id": rid,
                    "intent": _intent(_metadata(obj)),
                    "reason": text(obj.get("reason")),
                },
            )
        ]
    )


def _dispute(obj: Mapping[str, Any], event_type: str | None, created: object) -> Normalized:
    did = need(obj, "id", "dispute")
    status = text(obj.get("status"))
    if (
        event_type in ("charge.dispute.closed", "charge.dispute.funds_reinstated")
        or status not in _OPEN_DISPUTES
    ):
        return skip(f"dispute {did} is {status}; only an open dispute needs the desk")
    cur = _cur(obj)
    evidence = (
        obj.get("evidence_details") if isinstance(obj.get("evidence_details"), Mapping) else {}
    )
    assert isinstance(evidence, Mapping)
    due = evidence.get("due_by")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:stripe:{did}:opened",
                source=SOURCE,
                type="dispute.opened",
                occurred_at=_at(obj, created),
                order={**_order(obj, did), "currency": cur},
                data={
                    "amount": minor_units(obj.get("amount"), cur, "dispute.amount"),
                    "currency": cur,
                    "reason": text(obj.get("reason")),
                    "due_by": iso(due, "due_by") if due is not None else None,
                    "dispute_id": did,
                    "inquiry": (status or "").startswith("warning_") or None,
                },
            )
        ]
    )


def _fraud_warning(obj: Mapping[str, Any], _event_type: str | None, created: object) -> Normalized:
    wid = need(obj, "id", "radar.early_fraud_warning")
    if obj.get("actionable") is not True:
        return skip(f"early fraud warning {wid} is not actionable (already refunded or disputed)")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:stripe:{wid}",
                source=SOURCE,
                type="hold.placed",
                occurred_at=_at(obj, created),
                order=_order(obj, wid),
                data={
                    "hold_type": "fraud",
                    "reason": f"early fraud warning: {text(obj.get('fraud_type')) or 'unknown'}",
                },
            )
        ]
    )


def _review(obj: Mapping[str, Any], event_type: str | None, created: object) -> Normalized:
    vid = need(obj, "id", "review")
    if obj.get("open") is True and event_type != "review.closed":
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:stripe:{vid}:opened",
                    source=SOURCE,
                    type="hold.placed",
                    occurred_at=_at(obj, created),
                    order=_order(obj, vid),
                    data={
                        "hold_type": "fraud",
                        "reason": "Radar review opened "
                        f"({text(obj.get('opened_reason')) or 'unknown'})",
                    },
                )
            ]
        )
    if text(obj.get("reason")) == "approved":
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:stripe:{vid}:approved",
                    source=SOURCE,
                    type="hold.released",
                    occurred_at=_at(obj, created),
                    order=_order(obj, vid),
                    data={"hold_type": "fraud", "reason": "Radar review approved"},
                )
            ]
        )
    return skip(
        f"review {vid} closed as {text(obj.get('reason'))}; "
        "the refund or dispute it led to is reported on its own"
    )


_HANDLERS = {
    "charge": _charge,
    "payment_intent": _payment_intent,
    "refund": _refund,
    "dispute": _dispute,
    "radar.early_fraud_warning": _fraud_warning,
    "review": _review,
}
