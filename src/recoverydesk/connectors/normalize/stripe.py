"""Stripe webhooks to canonical events (source ``psp``).

Accepted: a full Event (``{"object": "event", "type": …, "data": {"object": …}}``), the event's
``data`` member (``{"object": …}``) or a bare API object (charge, payment_intent, refund, dispute,
review, radar.early_fraud_warning). Amounts are minor units and become major-unit decimals.

Order reference, first present of: ``metadata.order_ref``, ``metadata.order_id``,
``metadata.order_number``, ``metadata.order``; then ``description`` when it is a single token
(``#1001``, ``ORD-77``; prose descriptions are not references); else the Stripe payment's own id
as a *stand-in*: the PaymentIntent id when known, else the charge id (else the object's own id,
e.g. a dispute on nothing the payload names), so the event is still kept and can be matched later.

Payment ids: every event carries the PaymentIntent and charge it concerns in ``order.ids``
(``stripe_payment_intent``, ``stripe_charge``; either may be missing when the payload does not
name it). ``order.ids.stripe_payment_intent == order.ref`` (or, for a charge without a
PaymentIntent, ``order.ids.stripe_charge == order.ref``) says the ref is only that stand-in: the
payload named no order (disputes, early fraud warnings and reviews never do; refunds only when
the desk made them), and intake may resolve the payment to its order.

A refund's ``metadata.idempotency_key`` (or ``metadata.intent``; any metadata value starting with
``rd:``) is the desk's intent key and goes to ``data.intent``.

Event ids: ``psp:stripe:<object id>[:<fact>]``, one per fact however many webhooks report it:

- a charge and its PaymentIntent report a capture, an authorization or a void under the
  PaymentIntent's id (``psp:stripe:<pi>:captured``);
- a declined attempt is ``psp:stripe:<pi>:failed:<charge>`` from ``charge.failed`` and from
  ``payment_intent.payment_failed`` alike (``psp:stripe:<charge>:failed`` for a charge with no
  PaymentIntent), so one decline counts once;
- a refund is ``psp:stripe:<refund id>`` from ``charge.refunded`` (its ``refunds`` list, as API
  versions before 2022-11-15 render it), ``refund.created``, ``refund.updated`` and
  ``charge.refund.updated``; only a ``succeeded`` refund is a fact. From API version 2022-11-15
  on, ``charge.refunded`` carries no ``refunds`` list and the refund's amount cannot be told from
  the charge (``amount_refunded`` is a running total): it is no fact, and ``refund.created`` /
  ``refund.updated`` carry the refund.
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
# The ``order.ids`` keys of the payment; equal to ``order.ref``, the ref is only a stand-in.
PAYMENT_INTENT = "stripe_payment_intent"
CHARGE = "stripe_charge"
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


def _ident(value: object) -> str | None:
    """A Stripe id, given as a string or as the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return text(value) if isinstance(value, str) else None


def _order(
    obj: Mapping[str, Any], *, intent: str | None, charge: str | None, fallback: str
) -> dict[str, Any]:
    """The order of a payment fact: the reference the payload gives, else the payment's id as a
    stand-in (module docstring); ``ids`` always names the PaymentIntent and the charge known."""
    meta = _metadata(obj)
    ref = next((text(meta.get(k)) for k in _REF_KEYS if text(meta.get(k))), None)
    description = text(obj.get("description"))
    if ref is None and description and _TOKEN.fullmatch(description):
        ref = description
    ids = {PAYMENT_INTENT: intent, CHARGE: charge}
    return {
        "ref": ref or intent or charge or fallback,
        "ids": {k: v for k, v in ids.items() if v},
    }


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
    *,
    intent: str | None,
    charge: str | None,
) -> dict[str, Any]:
    """A payment fact, named after the PaymentIntent when there is one (so a charge and its
    PaymentIntent report it once), else after the object itself."""
    oid = need(obj, "id", "stripe object")
    key = intent or oid
    cur = _cur(obj)
    return event(
        id=f"{SOURCE}:stripe:{key}:{fact}",
        source=SOURCE,
        type=kind,
        occurred_at=_at(obj, created),
        order={**_order(obj, intent=intent, charge=charge, fallback=oid), "currency": cur},
        data={
            "amount": minor_units(amount, cur, "stripe amount"),
            "currency": cur,
            "reason": reason,
            "payment_id": key,
        },
    )


def _charge(obj: Mapping[str, Any], event_type: str | None, created: object) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    cid = need(obj, "id", "charge")
    intent = _ident(obj.get("payment_intent"))
    refunds_obj = obj.get("refunds")
    refunds = refunds_obj.get("data") if isinstance(refunds_obj, Mapping) else None
    if event_type == "charge.refunded" or (event_type is None and refunds):
        if refunds is None:
            return skip(
                f"charge {cid} lists no refunds (API versions from 2022-11-15 leave them out of "
                "charge.refunded); the refund.created and refund.updated events carry the refund"
            )
        events = [
            ev
            for r in as_list(refunds, "charge.refunds.data")
            for ev in _refund({**as_map(r, "refund"), "_charge": obj}, None, None).events
        ]
        if not events:
            return skip(f"charge {cid} lists no succeeded refund")
        return Normalized(events=events)
    status = text(obj.get("status"))
    amount = obj.get("amount")
    ids = {"intent": intent, "charge": cid}
    if event_type == "charge.expired":
        return Normalized(
            events=[
                _payment_event(
                    obj,
                    "payment.voided",
                    "voided",
                    created,
                    amount,
                    "authorization expired",
                    **ids,
                )
            ]
        )
    if status == "failed" or event_type == "charge.failed":
        reason = clip(text(obj.get("failure_message")) or text(obj.get("failure_code")), 4000)
        # the PaymentIntent's payment_failed names this same attempt <pi>:failed:<charge>
        fact = f"failed:{cid}" if intent else "failed"
        return Normalized(
            events=[_payment_event(obj, "payment.failed", fact, created, amount, reason, **ids)]
        )
    if status == "succeeded" and obj.get("captured") is True:
        captured = (
            obj.get("amount_captured")
            if isinstance(obj.get("amount_captured"), int) and obj.get("amount_captured")
            else amount
        )
        return Normalized(
            events=[_payment_event(obj, "payment.captured", "captured", created, captured, **ids)]
        )
    if status == "succeeded":
        return Normalized(
            events=[_payment_event(obj, "payment.authorized", "authorized", created, amount, **ids)]
        )
    return skip(f"charge {cid} is {status}; its outcome comes in a later event")


def _latest_charge(intent: Mapping[str, Any]) -> str | None:
    """The PaymentIntent's latest charge: ``latest_charge`` (API 2022-11-15 on), else the first
    of its ``charges`` list (earlier versions; Stripe lists newest first)."""
    latest = _ident(intent.get("latest_charge"))
    charges = intent.get("charges")
    listed = charges.get("data") if isinstance(charges, Mapping) else None
    if latest is None and isinstance(listed, list) and listed:
        latest = _ident(listed[0])
    return latest


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
    ids = {"intent": pid, "charge": _latest_charge(obj)}
    if state == "succeeded":
        received = obj.get("amount_received") or obj.get("amount")
        return Normalized(
            events=[_payment_event(obj, "payment.captured", "captured", created, received, **ids)]
        )
    if state == "requires_capture":
        capturable = obj.get("amount_capturable") or obj.get("amount")
        return Normalized(
            events=[
                _payment_event(obj, "payment.authorized", "authorized", created, capturable, **ids)
            ]
        )
    if state == "canceled":
        reason = text(obj.get("cancellation_reason"))
        return Normalized(
            events=[
                _payment_event(
                    obj, "payment.voided", "voided", created, obj.get("amount"), reason, **ids
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
        charge = _ident(err.get("charge")) or ids["charge"]
        ev = _payment_event(
            obj,
            "payment.failed",
            f"failed:{charge or 'last'}",
            created,
            obj.get("amount"),
            reason,
            intent=pid,
            charge=charge,
        )
        return Normalized(events=[ev])
    return skip(
        f"payment intent {pid} is {status}; it waits on the customer or the bank, no outcome yet"
    )


def _refund(obj: Mapping[str, Any], _event_type: str | None, created: object) -> Normalized:
    """A refund, from ``refund.created`` / ``refund.updated`` / ``charge.refund.updated`` or
    from the ``refunds`` list of ``charge.refunded`` (then ``_charge`` holds the charge, whose
    metadata and description name the order)."""
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
    }
    intent = _ident(obj.get("payment_intent")) or _ident(parent.get("payment_intent"))
    charge = _ident(obj.get("charge")) or _ident(parent.get("id"))
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:stripe:{rid}",
                source=SOURCE,
                type="payment.refunded",
                occurred_at=_at(obj, created),
                order={
                    **_order(source_obj, intent=intent, charge=charge, fallback=rid),
                    "currency": cur,
                },
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


def _on_payment(obj: Mapping[str, Any], fallback: str) -> dict[str, Any]:
    """The order of a dispute, an early fraud warning or a review: objects that name only the
    payment (``payment_intent``, ``charge``), so the ref is mostly a stand-in."""
    return _order(
        obj,
        intent=_ident(obj.get("payment_intent")),
        charge=_ident(obj.get("charge")),
        fallback=fallback,
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
                order={**_on_payment(obj, did), "currency": cur},
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
                order=_on_payment(obj, wid),
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
                    order=_on_payment(obj, vid),
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
                    order=_on_payment(obj, vid),
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
