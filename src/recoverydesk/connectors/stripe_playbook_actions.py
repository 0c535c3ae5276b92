"""The Stripe connector's playbook actions (system ``payments``): retry a declined payment,
check (and capture) an authorization. ``connectors.stripe_payments`` registers them.

* ``retry_payment`` (``payment_intent``: else the order's; ``payment_method``: else the one
  the PaymentIntent last tried; ``off_session``: true unless given): Stripe's Confirm, under the
  desk's key, of a PaymentIntent that waits for a payment method (one already paid or authorized
  is answered as it is, ``already_paid``). Carried out either way: the facts say how it ended,
  ``status`` (``succeeded``, ``requires_capture`` = authorized, ``requires_payment_method``),
  ``paid``, ``authorized``, ``declined`` and for a decline ``decline_code``, ``code`` and
  ``message`` (Stripe's 402 card error, which is an answer here, not a refusal). The payment's
  own outcome reaches the desk as Stripe's webhooks (``payment_intent.amount_capturable_updated``
  / ``succeeded`` / ``payment_failed``).
* ``capture_check`` (``payment_intent`` as above; ``capture``: false unless given): the
  PaymentIntent with its latest charge; facts ``status``, ``currency``, ``amount_capturable``,
  ``capture_before`` (ISO 8601 UTC, from ``payment_method_details.card.capture_before``),
  ``hours_left`` (to it, never below 0), ``expired``, ``captured`` (the amount captured so
  far in major units, None when nothing was). With ``capture=true`` an authorization still in
  time is captured in full under the desk's key (an expired one is left: Stripe would refuse).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import PaymentIntentConfirmParams

from recoverydesk.connectors.stripe_commands import Refused, major, order_intent
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand

_PAID = frozenset({"succeeded", "requires_capture"})
_RETRYABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})


def _named_intent(command: OutsideCommand) -> str:
    given = command.params.get("payment_intent")
    return str(given) if given else order_intent(command)


def _payment_facts(intent: Mapping[str, Any]) -> dict[str, Any]:
    """How a payment attempt ended, from the PaymentIntent Stripe answered with."""
    status = str(intent.get("status") or "")
    facts: dict[str, Any] = {
        "status": status,
        "paid": status in _PAID,
        "authorized": status == "requires_capture",
        "declined": False,
    }
    if intent.get("amount") is not None and intent.get("currency"):
        facts["amount"] = major(int(intent["amount"]), str(intent["currency"]))
        facts["currency"] = str(intent["currency"]).upper()
    error = intent.get("last_payment_error")
    if status == "requires_payment_method" and isinstance(error, Mapping):
        facts |= _decline_facts(error)
    elif status == "requires_action":
        facts["needs_customer"] = True  # e.g. 3D Secure: the customer has to act
    return facts


def _decline_facts(error: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"declined": True}
    for name in ("decline_code", "code", "advice_code", "message"):
        if error.get(name):
            facts[name] = str(error[name])
    return facts


def _retry_method(command: OutsideCommand, intent: stripe.PaymentIntent) -> str:
    """The payment method to try again: the one given, else the PaymentIntent's, else the one
    its last failed attempt used (Stripe detaches a declined payment method)."""
    raw = intent.to_dict()
    error = raw.get("last_payment_error") or {}
    tried = error.get("payment_method")
    for found in (
        command.params.get("payment_method"),
        raw.get("payment_method"),
        tried.get("id") if isinstance(tried, Mapping) else tried,
    ):
        ident = found.get("id") if isinstance(found, Mapping) else found  # expanded, or an id
        if ident:
            return str(ident)
    raise Refused(
        f"PaymentIntent {intent.id} has no payment method to retry with (params.payment_method)",
        stripe_status=intent.status,
    )


def retry_payment(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = _named_intent(command)
    intent = client.v1.payment_intents.retrieve(intent_id)
    if intent.status in _PAID:
        facts = _payment_facts(intent.to_dict()) | {"already_paid": True}
        return OutsideAnswer(accepted=True, reference=intent.id, facts=facts)
    if intent.status not in _RETRYABLE:
        raise Refused(
            f"PaymentIntent {intent_id} is {intent.status}: only a payment that waits for a "
            "payment method can be retried",
            stripe_status=intent.status,
        )
    off_session = command.params.get("off_session", True)
    if not isinstance(off_session, bool):
        raise Refused(f"off_session must be true or false, not {off_session!r}")
    params: PaymentIntentConfirmParams = {
        "payment_method": _retry_method(command, intent),
        "off_session": off_session,
    }
    try:
        confirmed = client.v1.payment_intents.confirm(
            intent_id, params, {"idempotency_key": command.key}
        )
    except stripe.CardError as declined:
        return _declined(intent_id, declined)
    return OutsideAnswer(
        accepted=True, reference=confirmed.id, facts=_payment_facts(confirmed.to_dict())
    )


def _declined(intent_id: str, error: stripe.CardError) -> OutsideAnswer:
    """A declined retry is a retry carried out: accepted, the decline in the facts."""
    raw = error.json_body if isinstance(error.json_body, Mapping) else {}
    found = raw.get("error")
    body: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    intent = body.get("payment_intent")
    facts: dict[str, Any] = (
        _payment_facts(intent) if isinstance(intent, Mapping) else {"status": None}
    )
    facts |= _decline_facts(body)
    facts.setdefault("message", error.user_message or "the card was declined")
    return OutsideAnswer(accepted=True, reference=intent_id, facts=facts)


def _authorization_facts(intent: stripe.PaymentIntent, now: datetime) -> dict[str, Any]:
    currency = intent.currency
    charge = intent.to_dict().get("latest_charge")
    card = ((charge or {}).get("payment_method_details") or {}).get("card") or {}
    until = card.get("capture_before") if isinstance(charge, Mapping) else None
    facts: dict[str, Any] = {
        "status": intent.status,
        "currency": currency.upper(),
        "amount_capturable": major(intent.amount_capturable, currency),
        "capture_before": None,
        "hours_left": None,
        "expired": False,
        "captured": major(intent.amount_received, currency) if intent.amount_received else None,
    }
    if isinstance(until, int):
        moment = datetime.fromtimestamp(until, UTC)
        left = (moment - now).total_seconds() / 3600
        facts["capture_before"] = moment.isoformat().replace("+00:00", "Z")
        facts["hours_left"] = round(max(left, 0.0), 2)
        facts["expired"] = intent.status == "requires_capture" and left <= 0
    return facts


def capture_check(
    client: stripe.StripeClient, command: OutsideCommand, now: datetime
) -> OutsideAnswer:
    intent_id = _named_intent(command)
    capture = command.params.get("capture", False)
    if not isinstance(capture, bool):
        raise Refused(f"capture must be true or false, not {capture!r}")
    intent = client.v1.payment_intents.retrieve(intent_id, {"expand": ["latest_charge"]})
    facts = _authorization_facts(intent, now)
    if capture and intent.status == "requires_capture" and not facts["expired"]:
        captured = client.v1.payment_intents.capture(
            intent_id, {}, {"idempotency_key": command.key}
        )
        facts |= {
            "status": captured.status,
            "amount_capturable": major(captured.amount_capturable, captured.currency),
            "captured": major(captured.amount_received, captured.currency),
        }
    return OutsideAnswer(accepted=True, reference=intent.id, facts=facts)
