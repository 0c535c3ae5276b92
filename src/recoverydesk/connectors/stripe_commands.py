"""What every command of the Stripe connector (``connectors.stripe_payments``) shares: how an
SDK error is answered, the refusal of a command before (or instead of) calling Stripe, the
order's PaymentIntent and amounts in Stripe's minor units.

At the boundary every SDK error becomes either a refusal (``OutsideAnswer(accepted=False)``, with
Stripe's message and code) or ``OutsideUnavailable`` (retried later): ``ERROR_VERDICTS`` maps
every error class of the SDK; whatever the class, a 409, a 429 or a 5xx is retried."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import stripe
from stripe import oauth_error

from recoverydesk.connectors.normalize._common import minor_units
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


class Refused(Exception):
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
        raise Refused(f"amount {amount!r} is not a number") from None
    minor = value.scaleb(exponent)
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise Refused(f"amount {amount} {code} is not a positive amount in {code}'s units")
    return int(minor)


def major(minor: int, currency: str) -> str:
    """Stripe's integer minor units to a major-unit decimal string (1099 USD -> "10.99")."""
    return minor_units(minor, currency.upper(), "amount")


def order_intent(command: OutsideCommand) -> str:
    """The order's PaymentIntent id; refused when the order has none."""
    intent = command.order_ids.get("stripe_payment_intent")
    if not intent:
        raise Refused(
            f"order {command.order_ref} has no Stripe PaymentIntent id "
            "(order ids: stripe_payment_intent)"
        )
    return intent
