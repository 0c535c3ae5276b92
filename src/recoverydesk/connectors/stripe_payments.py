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

At the boundary every SDK error becomes either a refusal (``OutsideAnswer(accepted=False)``, with
Stripe's message and code) or ``OutsideUnavailable`` (retried later): ``ERROR_VERDICTS`` maps
every error class of the SDK; whatever the class, a 409, a 429 or a 5xx is retried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import stripe
from stripe import oauth_error
from stripe.params import (
    DisputeListParams,
    DisputeUpdateParams,
    PaymentIntentConfirmParams,
    RefundCreateParams,
    RefundListParams,
)

from recoverydesk.connectors.normalize._common import minor_units
from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

Verdict = Literal["retry", "refuse"]
RETRY: Verdict = "retry"
REFUSE: Verdict = "refuse"

# Every error class of the installed SDK (``stripe._error`` and ``stripe.oauth_error``), by what
# the desk does about it; a class missing here is found by the tests (which iterate the SDK).
ERROR_VERDICTS: dict[type[stripe.StripeError], Verdict] = {
    stripe.StripeError: REFUSE,  # an unknown kind of answer: a human looks at it
    stripe.APIError: RETRY,  # Stripe's own trouble (5xx, 409 conflicts)
    stripe.APIConnectionError: RETRY,  # timeouts, refused connections, resets
    stripe.RateLimitError: RETRY,
    stripe.CardError: REFUSE,
    stripe.InvalidRequestError: REFUSE,
    stripe.IdempotencyError: REFUSE,  # the key was used with other parameters
    stripe.AuthenticationError: REFUSE,  # the configured key is wrong: retrying cannot help
    stripe.PermissionError: REFUSE,
    stripe.SignatureVerificationError: REFUSE,
    stripe.StripeErrorWithParamCode: REFUSE,
    # the v2 API's errors (the desk calls v1 only; refused if one ever appears)
    stripe.AlreadyCanceledError: REFUSE,
    stripe.BlockedByStripeError: REFUSE,
    stripe.CannotProceedError: REFUSE,
    stripe.CapabilityNotEnabledError: REFUSE,
    stripe.ControlledByAlternateResourceError: REFUSE,
    stripe.FeatureNotEnabledError: REFUSE,
    stripe.FinancialAccountNotOpenError: REFUSE,
    stripe.FxQuoteNeedsRefreshError: REFUSE,
    stripe.InsufficientFundsError: REFUSE,
    stripe.InvalidPaymentMethodError: REFUSE,
    stripe.InvalidPayoutMethodError: REFUSE,
    stripe.InvalidVaultedCredentialError: REFUSE,
    stripe.NotCancelableError: REFUSE,
    stripe.QuotaExceededError: REFUSE,
    stripe.RecipientNotNotifiableError: REFUSE,
    stripe.TemporarySessionExpiredError: REFUSE,
    stripe.VerificationAttemptFailedError: REFUSE,
    stripe.VerificationExpiredError: REFUSE,
    stripe.VerificationNotInitiatedError: REFUSE,
    # OAuth (Connect onboarding; not used to move money)
    oauth_error.OAuthError: REFUSE,
    oauth_error.InvalidClientError: REFUSE,
    oauth_error.InvalidGrantError: REFUSE,
    oauth_error.InvalidRequestError: REFUSE,
    oauth_error.InvalidScopeError: REFUSE,
    oauth_error.UnsupportedGrantTypeError: REFUSE,
    oauth_error.UnsupportedResponseTypeError: REFUSE,
}

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


class _Refused(Exception):
    """A command the connector refuses before (or instead of) calling Stripe."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message, self.facts = message, facts


def verdict(error: stripe.StripeError) -> Verdict:
    """Retry or refuse: by HTTP status when it says "try later", else by the error's class
    (the nearest mapped class in its MRO)."""
    status = error.http_status
    if status is not None and (status in (409, 429) or status >= 500):
        return RETRY
    for cls in type(error).__mro__:
        if cls in ERROR_VERDICTS:
            return ERROR_VERDICTS[cls]
    return REFUSE  # pragma: no cover - every StripeError has StripeError in its MRO


def answer_for(error: stripe.StripeError, action: str) -> OutsideAnswer:
    """The desk's answer to an SDK error: a refusal, or ``OutsideUnavailable`` raised."""
    message = error.user_message or type(error).__name__
    status = f"HTTP {error.http_status}" if error.http_status else "no HTTP answer"
    if verdict(error) == RETRY:
        raise OutsideUnavailable(
            f"Stripe is unavailable for {action} ({type(error).__name__}, {status}): {message}"
        )
    code = error.code
    if isinstance(error, stripe.AuthenticationError):
        message = (
            f"the API key was rejected (check connectors.outbound.payments.api_key): {message}"
        )
    elif isinstance(error, stripe.PermissionError):
        message = f"the API key may not do this (a restricted key?): {message}"
    facts: dict[str, Any] = {"stripe_error": type(error).__name__, "http_status": error.http_status}
    if code:
        facts["stripe_code"] = str(code)
    if error.error is not None and error.error.type:
        facts["stripe_type"] = error.error.type
    if error.request_id:
        facts["stripe_request"] = error.request_id
    detail = f" [{code}]" if code else ""
    return OutsideAnswer(
        accepted=False, message=f"Stripe refused {action}{detail}: {message}", facts=facts
    )


def to_minor(amount: object, currency: str) -> int:
    """A major-unit decimal string to Stripe's integer minor units (10.99 USD -> 1099,
    500 JPY -> 500), refusing amounts the currency cannot hold."""
    code = currency.upper()
    exponent = -Decimal(minor_units(1, code, "unit")).as_tuple().exponent  # type: ignore[operator]
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise _Refused(f"amount {amount!r} is not a number") from None
    minor = value.scaleb(exponent)
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise _Refused(f"amount {amount} {code} is not a positive amount in {code}'s units")
    return int(minor)


def _major(minor: int, currency: str) -> str:
    return minor_units(minor, currency.upper(), "amount")


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
        except _Refused as refused:
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
            raise _Refused(
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


def _intent_id(command: OutsideCommand) -> str:
    intent = command.order_ids.get("stripe_payment_intent")
    if not intent:
        raise _Refused(
            f"order {command.order_ref} has no Stripe PaymentIntent id "
            "(order ids: stripe_payment_intent)"
        )
    return intent


def _void(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = _intent_id(command)
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
            raise _Refused(
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
        raise _Refused(f"refund without a currency (params: {sorted(command.params)})")
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
        raise _Refused(
            f"order {command.order_ref} has no Stripe payment id "
            "(order ids: stripe_payment_intent or stripe_charge)"
        )
    if paid.upper() != currency.upper():
        raise _Refused(f"the payment is in {paid.upper()}, the refund asked in {currency.upper()}")
    refund = client.v1.refunds.create(params, {"idempotency_key": command.key})
    facts = {"status": refund.status, "amount": _major(refund.amount, refund.currency)}
    if refund.status in ("failed", "canceled"):
        why = refund.failure_reason or refund.status
        return OutsideAnswer(
            accepted=False, reference=refund.id, message=f"Stripe's refund {why}", facts=facts
        )
    return OutsideAnswer(accepted=True, reference=refund.id, facts=facts)


def _reduce_authorization(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = _intent_id(command)
    intent = client.v1.payment_intents.retrieve(intent_id)
    currency = str(command.params.get("currency") or intent.currency)
    if currency.upper() != intent.currency.upper():
        raise _Refused(
            f"the payment is in {intent.currency.upper()}, the release asked in {currency.upper()}"
        )
    release = to_minor(command.params.get("amount"), currency)
    if intent.status != "requires_capture":
        raise _Refused(
            f"PaymentIntent {intent_id} is {intent.status}: only an uncaptured authorization "
            "can be reduced",
            stripe_status=intent.status,
        )
    keep = intent.amount_capturable - release
    if keep <= 0:
        raise _Refused(
            f"releasing {_major(release, currency)} of an authorization of "
            f"{_major(intent.amount_capturable, currency)} leaves nothing to capture: "
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
            "captured": _major(keep, currency),
            "released": _major(release, currency),
        },
    )


def _refund_lookup(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent = str(command.params.get("intent") or "")
    if not intent:
        raise _Refused("a refund lookup needs the refund's intent (params.intent)")
    params: RefundListParams = {"limit": 100}
    if command.order_ids.get("stripe_payment_intent"):
        params["payment_intent"] = command.order_ids["stripe_payment_intent"]
    elif command.order_ids.get("stripe_charge"):
        params["charge"] = command.order_ids["stripe_charge"]
    else:
        raise _Refused(f"order {command.order_ref} has no Stripe payment id to look refunds up")
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
                        "amount": _major(refund.amount, refund.currency),
                    },
                )
        if not page.has_more or not page.data:
            break
        params["starting_after"] = page.data[-1].id
    return OutsideAnswer(accepted=False, message=f"Stripe has no refund made under intent {intent}")


def _evidence(params: Mapping[str, Any]) -> dict[str, str]:
    evidence = params.get("evidence")
    if not isinstance(evidence, Mapping) or not evidence:
        raise _Refused("dispute evidence without evidence (params.evidence: field name -> text)")
    unknown = sorted(str(name) for name in evidence if name not in EVIDENCE_TEXT_FIELDS)
    if unknown:
        raise _Refused(
            f"unknown or unsupported Stripe evidence fields: {', '.join(unknown)} "
            f"(text fields: {', '.join(sorted(EVIDENCE_TEXT_FIELDS))})",
            unknown_fields=unknown,
        )
    not_text = sorted(str(name) for name, value in evidence.items() if not isinstance(value, str))
    if not_text:
        raise _Refused(f"dispute evidence fields that are not text: {', '.join(not_text)}")
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
        raise _Refused(
            f"order {command.order_ref} has no Stripe dispute id (params.dispute) nor payment id "
            "to find it (order ids: stripe_payment_intent or stripe_charge)"
        )
    disputes = client.v1.disputes.list(params).data
    if not disputes:
        raise _Refused(f"Stripe has no dispute on the payment of order {command.order_ref}")
    return max(disputes, key=lambda d: d.created).id


def _dispute_evidence(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    evidence = _evidence(command.params)
    submit = command.params.get("submit", False)
    if not isinstance(submit, bool):
        raise _Refused(f"submit must be true or false, not {submit!r}")
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


# -- playbook actions: retry a declined payment, check (and capture) an authorization --------------

_PAID = frozenset({"succeeded", "requires_capture"})
_RETRYABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})


def _named_intent(command: OutsideCommand) -> str:
    given = command.params.get("payment_intent")
    return str(given) if given else _intent_id(command)


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
        facts["amount"] = _major(int(intent["amount"]), str(intent["currency"]))
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
    raise _Refused(
        f"PaymentIntent {intent.id} has no payment method to retry with (params.payment_method)",
        stripe_status=intent.status,
    )


def _retry_payment(client: stripe.StripeClient, command: OutsideCommand) -> OutsideAnswer:
    intent_id = _named_intent(command)
    intent = client.v1.payment_intents.retrieve(intent_id)
    if intent.status in _PAID:
        facts = _payment_facts(intent.to_dict()) | {"already_paid": True}
        return OutsideAnswer(accepted=True, reference=intent.id, facts=facts)
    if intent.status not in _RETRYABLE:
        raise _Refused(
            f"PaymentIntent {intent_id} is {intent.status}: only a payment that waits for a "
            "payment method can be retried",
            stripe_status=intent.status,
        )
    off_session = command.params.get("off_session", True)
    if not isinstance(off_session, bool):
        raise _Refused(f"off_session must be true or false, not {off_session!r}")
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
        "amount_capturable": _major(intent.amount_capturable, currency),
        "capture_before": None,
        "hours_left": None,
        "expired": False,
        "captured": _major(intent.amount_received, currency) if intent.amount_received else None,
    }
    if isinstance(until, int):
        moment = datetime.fromtimestamp(until, UTC)
        left = (moment - now).total_seconds() / 3600
        facts["capture_before"] = moment.isoformat().replace("+00:00", "Z")
        facts["hours_left"] = round(max(left, 0.0), 2)
        facts["expired"] = intent.status == "requires_capture" and left <= 0
    return facts


def _capture_check(
    client: stripe.StripeClient, command: OutsideCommand, now: datetime
) -> OutsideAnswer:
    intent_id = _named_intent(command)
    capture = command.params.get("capture", False)
    if not isinstance(capture, bool):
        raise _Refused(f"capture must be true or false, not {capture!r}")
    intent = client.v1.payment_intents.retrieve(intent_id, {"expand": ["latest_charge"]})
    facts = _authorization_facts(intent, now)
    if capture and intent.status == "requires_capture" and not facts["expired"]:
        captured = client.v1.payment_intents.capture(
            intent_id, {}, {"idempotency_key": command.key}
        )
        facts |= {
            "status": captured.status,
            "amount_capturable": _major(captured.amount_capturable, captured.currency),
            "captured": _major(captured.amount_received, captured.currency),
        }
    return OutsideAnswer(accepted=True, reference=intent.id, facts=facts)


_TIMED_ACTIONS: dict[
    str, Callable[[stripe.StripeClient, OutsideCommand, datetime], OutsideAnswer]
] = {"capture_check": _capture_check}

_ACTIONS: dict[str, Callable[[stripe.StripeClient, OutsideCommand], OutsideAnswer]] = {
    "void": _void,
    "refund": _refund,
    "reduce_authorization": _reduce_authorization,
    "refund_lookup": _refund_lookup,
    "dispute_evidence": _dispute_evidence,
    "retry_payment": _retry_payment,
}
