"""The payments connector for Stripe (``connectors.outbound.payments.kind: stripe``), on the
official ``stripe`` SDK.

Commands (system ``payments``), on the order's PaymentIntent (``order_ids.stripe_payment_intent``,
else its charge ``stripe_charge`` for refunds):

* ``void``: cancel the PaymentIntent (one already canceled counts as done; one captured
  meanwhile is refused: a captured payment is refunded).
* ``refund`` (``amount`` in major units, ``currency``): a refund of that amount, under the desk's
  key as Stripe's ``Idempotency-Key`` and in the refund's metadata (``intent``, ``order_ref``), so
  Stripe's own ``charge.refunded`` / ``refund.*`` webhooks name the desk's intent.
* ``reduce_authorization`` (``amount`` to release): Stripe cannot shrink an authorization, so
  the PaymentIntent is captured for the rest (``amount_to_capture = capturable - amount``);
  releasing all of it is refused (that is a void).
* ``refund_lookup`` (``intent`` = an earlier refund's key): the payment's refunds are listed and
  the one whose metadata carries the intent is the answer (Stripe cannot search refunds).
* ``dispute_evidence`` (``evidence``: Stripe's evidence field names -> text, ``submit``: False
  unless given, ``dispute``: the dispute's id, else the payment's newest dispute): Stripe's
  Update Dispute under the desk's key, with ``metadata[intent]`` / ``metadata[order_ref]``;
  ``submit=false`` only stages the evidence (the dispute stays open for more), ``submit=true``
  sends it to the card network (once: Stripe refuses updates after that). Field names outside
  ``EVIDENCE_TEXT_FIELDS`` (unknown ones, and the file fields, which take uploaded file ids) are
  refused before calling Stripe.
* ``retry_payment`` and ``capture_check``, the playbook actions, are in
  ``connectors.stripe_playbook_actions``.

At the boundary every SDK error becomes either a refusal (``OutsideAnswer(accepted=False)``, with
Stripe's message and code) or ``OutsideUnavailable`` (retried later): ``ERROR_VERDICTS``
(``connectors.stripe_commands``) maps every error class of the SDK; whatever the class, a 409,
a 429 or a 5xx is retried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import stripe
from stripe.params import (
    DisputeListParams,
    DisputeUpdateParams,
    RefundCreateParams,
    RefundListParams,
)

from recoverydesk.connectors.stripe_commands import (
    ERROR_VERDICTS,
    REFUSE,
    RETRY,
    Refused,
    Verdict,
    answer_for,
    major,
    order_intent,
    to_minor,
    verdict,
)
from recoverydesk.connectors.stripe_playbook_actions import capture_check, retry_payment
from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand

__all__ = [
    "ERROR_VERDICTS",
    "EVIDENCE_TEXT_FIELDS",
    "REFUSE",
    "RETRY",
    "StripePayments",
    "Verdict",
    "answer_for",
    "to_minor",
    "verdict",
]

# The evidence fields of Stripe's Update Dispute that take text (the file fields, e.g.
# ``customer_communication`` or ``receipt``, take uploaded file ids and are not sent by the desk).
EVIDENCE_TEXT_FIELDS = frozenset(
    {
        "access_activity_log",
        "billing_address",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_tracking_number",
        "uncategorized_text",
    }
)

_PAGES = 20  # a lookup reads at most 20 pages of 100 refunds of one payment


class StripePayments:
    """``OutsideSystems`` for Stripe; one SDK client per (base URL, key), shared by threads."""

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        connect_timeout: float = 5.0,
        max_network_retries: int = 1,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()  # "now" for the hours left of an authorization
        self._timeout = (connect_timeout, timeout)
        self._retries = max_network_retries
        self._clients: dict[tuple[str, str], tuple[stripe.StripeClient, stripe.HTTPClient]] = {}
        self._lock = threading.Lock()

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        action = _ACTIONS.get(command.action)
        timed = _TIMED_ACTIONS.get(command.action)
        if command.system != "payments" or (action is None and timed is None):
            return OutsideAnswer(
                accepted=False,
                message=f"the Stripe connector does not do {command.system}.{command.action}",
            )
        try:
            client = self._client(command.connection)
            if timed is not None:
                return timed(client, command, self._clock.now())
            assert action is not None
            return action(client, command)
        except Refused as refused:
            return OutsideAnswer(accepted=False, message=refused.message, facts=refused.facts)
        except stripe.StripeError as error:
            return answer_for(error, command.action)

    def close(self) -> None:
        """Close this thread's HTTP sessions (each thread's requests session is its own)."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for _, http in clients:
            http.close()  # type: ignore[no-untyped-call]

    def _client(self, connection: Mapping[str, Any]) -> stripe.StripeClient:
        api_key = str(connection.get("api_key") or "")
        if not api_key:
            raise Refused(
                "no Stripe API key: set connectors.outbound.payments.api_key (or api_key_env)"
            )
        base_url = str(connection.get("base_url") or "").rstrip("/")
        with self._lock:
            found = self._clients.get((base_url, api_key))
            if found is None:
                http = stripe.RequestsClient(timeout=self._timeout)
                client = stripe.StripeClient(
                    api_key,
                    base_addresses={"api": base_url} if base_url else {},
                    max_network_retries=self._retries,
                    http_client=http,
                )
                found = self._clients[(base_url, api_key)] = (client, http)
        return found[0]


def _void(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = order_intent(command)
    try:
        intent = client.v1.payment_intents.cancel(
            intent_id,
            {"cancellation_reason": "requested_by_customer"},
            {"idempotency_key": command.key},
        )
    except stripe.InvalidRequestError as error:
        if error.code != "payment_intent_unexpected_state":
            raise
        intent = client.v1.payment_intents.retrieve(intent_id)
        if intent.status != "canceled":
            raise Refused(
                f"PaymentIntent {intent_id} is {intent.status}: "
                + (
                    "it was captured, so it is refunded, not voided"
                    if intent.status == "succeeded"
                    else "it cannot be canceled"
                ),
                stripe_status=intent.status,
            ) from None
        return OutsideAnswer(
            accepted=True,
            reference=intent.id,
            facts={"status": intent.status, "already_canceled": True},
        )
    return OutsideAnswer(accepted=True, reference=intent.id, facts={"status": intent.status})


def _refund(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    currency = str(command.params.get("currency") or "")
    if len(currency) != 3:
        raise Refused(f"refund without a currency (params: {sorted(command.params)})")
    amount = to_minor(command.params.get("amount"), currency)
    metadata = {"intent": command.key}
    if command.order_ref:
        metadata["order_ref"] = command.order_ref
    params: RefundCreateParams = {
        "amount": amount,
        "reason": "requested_by_customer",
        "metadata": metadata,
    }
    intent_id = command.order_ids.get("stripe_payment_intent")
    charge_id = command.order_ids.get("stripe_charge")
    if intent_id:
        paid = client.v1.payment_intents.retrieve(intent_id).currency
        params["payment_intent"] = intent_id
    elif charge_id:
        paid = client.v1.charges.retrieve(charge_id).currency
        params["charge"] = charge_id
    else:
        raise Refused(
            f"order {command.order_ref} has no Stripe payment id "
            "(order ids: stripe_payment_intent or stripe_charge)"
        )
    if paid.upper() != currency.upper():
        raise Refused(f"the payment is in {paid.upper()}, the refund asked in {currency.upper()}")
    refund = client.v1.refunds.create(params, {"idempotency_key": command.key})
    facts = {"status": refund.status, "amount": major(refund.amount, refund.currency)}
    if refund.status in ("failed", "canceled"):
        why = refund.failure_reason or refund.status
        return OutsideAnswer(
            accepted=False, reference=refund.id, message=f"Stripe's refund {why}", facts=facts
        )
    return OutsideAnswer(accepted=True, reference=refund.id, facts=facts)


def _reduce_authorization(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = order_intent(command)
    intent = client.v1.payment_intents.retrieve(intent_id)
    currency = str(command.params.get("currency") or intent.currency)
    if currency.upper() != intent.currency.upper():
        raise Refused(
            f"the payment is in {intent.currency.upper()}, the release asked in {currency.upper()}"
        )
    release = to_minor(command.params.get("amount"), currency)
    if intent.status != "requires_capture":
        raise Refused(
            f"PaymentIntent {intent_id} is {intent.status}: only an uncaptured authorization "
            "can be reduced",
            stripe_status=intent.status,
        )
    keep = intent.amount_capturable - release
    if keep <= 0:
        raise Refused(
            f"releasing {major(release, currency)} of an authorization of "
            f"{major(intent.amount_capturable, currency)} leaves nothing to capture: "
            "void the payment instead",
        )
    captured = client.v1.payment_intents.capture(
        intent_id, {"amount_to_capture": keep}, {"idempotency_key": command.key}
    )
    return OutsideAnswer(
        accepted=True,
        reference=captured.id,
        facts={
            "status": captured.status,
            "captured": major(keep, currency),
            "released": major(release, currency),
        },
    )


def _refund_lookup(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent = str(command.params.get("intent") or "")
    if not intent:
        raise Refused("a refund lookup needs the refund's intent (params.intent)")
    params: RefundListParams = {"limit": 100}
    if command.order_ids.get("stripe_payment_intent"):
        params["payment_intent"] = command.order_ids["stripe_payment_intent"]
    elif command.order_ids.get("stripe_charge"):
        params["charge"] = command.order_ids["stripe_charge"]
    else:
        raise Refused(f"order {command.order_ref} has no Stripe payment id to look refunds up")
    for _ in range(_PAGES):
        page = client.v1.refunds.list(params)
        for refund in page.data:
            meta: Mapping[str, Any] = refund.to_dict().get("metadata") or {}
            if intent in (meta.get("intent"), meta.get("idempotency_key")):
                return OutsideAnswer(
                    accepted=True,
                    reference=refund.id,
                    facts={
                        "status": refund.status,
                        "amount": major(refund.amount, refund.currency),
                    },
                )
        if not page.has_more or not page.data:
            break
        params["starting_after"] = page.data[-1].id
    return OutsideAnswer(accepted=False, message=f"Stripe has no refund made under intent {intent}")


def _evidence(params: Mapping[str, Any]) -> dict[str, str]:
    evidence = params.get("evidence")
    if not isinstance(evidence, Mapping) or not evidence:
        raise Refused("dispute evidence without evidence (params.evidence: field name -> text)")
    unknown = sorted(str(name) for name in evidence if name not in EVIDENCE_TEXT_FIELDS)
    if unknown:
        raise Refused(
            f"unknown or unsupported Stripe evidence fields: {', '.join(unknown)} "
            f"(text fields: {', '.join(sorted(EVIDENCE_TEXT_FIELDS))})",
            unknown_fields=unknown,
        )
    not_text = sorted(str(name) for name, value in evidence.items() if not isinstance(value, str))
    if not_text:
        raise Refused(f"dispute evidence fields that are not text: {', '.join(not_text)}")
    return {str(name): value for name, value in evidence.items()}


def _dispute_id(client: stripe.StripeClient, command: OutsideCommand) -> str:
    given = command.params.get("dispute")
    if given:
        return str(given)
    params: DisputeListParams = {"limit": 100}
    if command.order_ids.get("stripe_payment_intent"):
        params["payment_intent"] = command.order_ids["stripe_payment_intent"]
    elif command.order_ids.get("stripe_charge"):
        params["charge"] = command.order_ids["stripe_charge"]
    else:
        raise Refused(
            f"order {command.order_ref} has no Stripe dispute id (params.dispute) nor payment id "
            "to find it (order ids: stripe_payment_intent or stripe_charge)"
        )
    disputes = client.v1.disputes.list(params).data
    if not disputes:
        raise Refused(f"Stripe has no dispute on the payment of order {command.order_ref}")
    return max(disputes, key=lambda d: d.created).id


def _dispute_evidence(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    evidence = _evidence(command.params)
    submit = command.params.get("submit", False)
    if not isinstance(submit, bool):
        raise Refused(f"submit must be true or false, not {submit!r}")
    metadata = {"intent": command.key}
    if command.order_ref:
        metadata["order_ref"] = command.order_ref
    params: DisputeUpdateParams = {
        "evidence": evidence,  # type: ignore[typeddict-item]
        "metadata": metadata,
        "submit": submit,
    }
    dispute = client.v1.disputes.update(
        _dispute_id(client, command), params, {"idempotency_key": command.key}
    )
    details = dispute.evidence_details
    return OutsideAnswer(
        accepted=True,
        reference=dispute.id,
        facts={
            "status": dispute.status,
            "submitted": submit,
            "has_evidence": details.has_evidence,
            "submission_count": details.submission_count,
            "due_by": details.due_by,
        },
    )


_TIMED_ACTIONS: dict[
    str, Callable[[stripe.StripeClient, OutsideCommand, datetime], OutsideAnswer]
] = {"capture_check": capture_check}

_ACTIONS: dict[str, Callable[[stripe.StripeClient, OutsideCommand], OutsideAnswer]] = {
    "void": _void,
    "refund": _refund,
    "reduce_authorization": _reduce_authorization,
    "refund_lookup": _refund_lookup,
    "dispute_evidence": _dispute_evidence,
    "retry_payment": retry_payment,
}
