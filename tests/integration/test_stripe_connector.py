"""The Stripe payments connector over real HTTP, against the Stripe emulator on loopback.

The connector uses the official SDK; the emulator (``sandbox.stripe_emulator``) answers as
Stripe does: form bodies, Bearer auth, Idempotency-Key replays, Stripe's error bodies. The last
test runs a whole desk whose merchant is configured with a Stripe connection: a cancellation of a
captured order ends as exactly one refund at the provider, carrying the desk's key.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import stripe
from stripe import _error as sdk_errors
from stripe import oauth_error

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.connectors.outbound import OutsideRouter
from recoverydesk.connectors.stripe_payments import (
    ERROR_VERDICTS,
    RETRY,
    StripePayments,
    answer_for,
    verdict,
)
from recoverydesk.domain.ledger import EntryKind, EntryStatus
from recoverydesk.sandbox.recorders import AcceptingOutside
from recoverydesk.sandbox.serving import free_port
from recoverydesk.sandbox.stripe_emulator import (
    TEST_KEY,
    RunningEmulator,
    running_stripe_emulator,
)
from recoverydesk.services import merchants as admin
from recoverydesk.services import stopship
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent, OutsideCommand, OutsideUnavailable


@pytest.fixture
def stripe_api() -> Iterator[RunningEmulator]:
    with running_stripe_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[StripePayments]:
    payments = StripePayments(timeout=5.0, connect_timeout=2.0, max_network_retries=1)
    yield payments
    payments.close()


def _command(
    base_url: str,
    action: str,
    key: str,
    *,
    payment_intent: str | None = None,
    api_key: str = TEST_KEY,
    order_ref: str = "1001",
    **params: Any,
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref=order_ref,
        system="payments",
        action=action,
        key=key,
        params=params,
        connection={"kind": "stripe", "base_url": base_url, "api_key": api_key},
        order_ids={"stripe_payment_intent": payment_intent} if payment_intent else {},
    )


# -- every SDK error has a verdict --------------------------------------------------------------


def _sdk_error_classes() -> set[type[stripe.StripeError]]:
    """Every error class of the installed SDK: the error modules' classes and, recursively,
    every subclass of ``StripeError`` defined anywhere in the SDK."""
    found: set[type[stripe.StripeError]] = set()
    modules: list[ModuleType] = [sdk_errors, oauth_error]
    for module in modules:
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, stripe.StripeError):
                found.add(value)
    pending = [stripe.StripeError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("stripe"):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def _instance(cls: type[stripe.StripeError]) -> stripe.StripeError:
    """An instance of any SDK error class, its required arguments filled with words."""
    required = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    ]
    return cls(*["something went wrong" for _ in required])


def test_every_error_class_of_the_sdk_is_mapped() -> None:
    classes = _sdk_error_classes()
    assert len(classes) >= 20  # the SDK's errors were found (not an empty iteration)
    assert {stripe.CardError, stripe.IdempotencyError, oauth_error.InvalidGrantError} <= classes
    unmapped = sorted(c.__qualname__ for c in classes if c not in ERROR_VERDICTS)
    assert unmapped == [], f"SDK error classes without a verdict: {unmapped}"
    for cls in classes:
        error = _instance(cls)
        if ERROR_VERDICTS[cls] == RETRY:
            with pytest.raises(OutsideUnavailable, match="Stripe is unavailable"):
                answer_for(error, "refund")
        else:
            answer = answer_for(error, "refund")
            assert answer.accepted is False, cls
            assert (answer.message or "").startswith("Stripe refused refund"), cls


def test_the_verdicts_follow_stripes_advice() -> None:
    expected = {
        stripe.APIConnectionError: "retry",
        stripe.APIError: "retry",
        stripe.RateLimitError: "retry",
        stripe.CardError: "refuse",
        stripe.InvalidRequestError: "refuse",
        stripe.IdempotencyError: "refuse",
        stripe.AuthenticationError: "refuse",
        stripe.PermissionError: "refuse",
        stripe.SignatureVerificationError: "refuse",
    }
    assert {cls: ERROR_VERDICTS[cls] for cls in expected} == expected
    # whatever the class, Stripe's "try later" statuses are retried
    busy = stripe.InvalidRequestError("lock timeout", None, "lock_timeout", http_status=409)
    assert verdict(busy) == "retry"
    assert verdict(stripe.StripeError("bad gateway", http_status=502)) == "retry"
    assert verdict(stripe.InvalidRequestError("no", "amount", http_status=400)) == "refuse"


# -- payments over HTTP -------------------------------------------------------------------------


def test_void_cancels_the_payment_intent_once(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    # given an authorized (uncaptured) payment
    intent = stripe_api.emulator.create_payment_intent(15000, capture=False)["id"]
    void = _command(stripe_api.base_url, "void", "rd:void:1", payment_intent=intent)
    # when the desk voids it, and a retry sends the same command again
    first, again = connector.send(void), connector.send(void)
    # then the PaymentIntent is canceled and both answers name it
    assert (first.accepted, first.reference) == (True, intent)
    assert (again.accepted, again.reference) == (True, intent)
    assert stripe_api.emulator.payment_intent(intent)["status"] == "canceled"
    assert ("POST", f"/v1/payment_intents/{intent}/cancel", "rd:void:1") in (
        stripe_api.emulator.requests
    )
    # and a void under another key finds it canceled already: done, not an error
    other = connector.send(
        _command(stripe_api.base_url, "void", "rd:void:2", payment_intent=intent)
    )
    assert other.accepted is True
    assert other.facts["already_canceled"] is True


def test_a_captured_payment_is_not_voided(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    answer = connector.send(
        _command(stripe_api.base_url, "void", "rd:void:3", payment_intent=intent)
    )
    assert answer.accepted is False
    assert answer.message is not None
    assert "succeeded" in answer.message
    assert "refunded, not voided" in answer.message
    assert stripe_api.emulator.payment_intent(intent)["status"] == "succeeded"


def test_a_refund_carries_the_desks_key_and_metadata(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    key = "rd:1:cancellation-7:1:refund:40.00"
    answer = connector.send(
        _command(
            stripe_api.base_url,
            "refund",
            key,
            payment_intent=intent,
            order_ref="1001",
            amount="40.00",
            currency="USD",
        )
    )
    assert answer.accepted is True, answer.message
    [refund] = stripe_api.emulator.refunds()
    assert answer.reference == refund["id"]
    assert (refund["amount"], refund["currency"], refund["payment_intent"]) == (4000, "usd", intent)
    assert refund["metadata"] == {"intent": key, "order_ref": "1001"}
    assert answer.facts["amount"] == "40.00"
    # the key went as Stripe's Idempotency-Key too
    assert ("POST", "/v1/refunds", key) in stripe_api.emulator.requests


def test_the_same_refund_twice_is_one_refund(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    refund = _command(
        stripe_api.base_url,
        "refund",
        "rd:r:1",
        payment_intent=intent,
        amount="150.00",
        currency="USD",
    )
    first, again = connector.send(refund), connector.send(refund)
    assert (first.accepted, again.accepted) == (True, True)
    assert first.reference == again.reference
    assert len(stripe_api.emulator.refunds()) == 1
    # the same key with another amount is Stripe's idempotency error: refused, nothing refunded
    other = connector.send(
        _command(
            stripe_api.base_url,
            "refund",
            "rd:r:1",
            payment_intent=intent,
            amount="10.00",
            currency="USD",
        )
    )
    assert other.accepted is False
    assert other.facts["stripe_error"] == "IdempotencyError"
    assert other.message is not None
    assert "same parameters" in other.message
    assert len(stripe_api.emulator.refunds()) == 1


def test_a_refund_beyond_the_captured_amount_is_refused(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    connector.send(
        _command(
            stripe_api.base_url,
            "refund",
            "rd:r:a",
            payment_intent=intent,
            amount="100.00",
            currency="USD",
        )
    )
    answer = connector.send(
        _command(
            stripe_api.base_url,
            "refund",
            "rd:r:b",
            payment_intent=intent,
            amount="60.00",
            currency="USD",
        )
    )
    assert answer.accepted is False
    assert answer.message == (
        "Stripe refused refund [amount_too_large]: Refund amount (60.00 USD) is greater than "
        "unrefunded amount on charge (50.00 USD)"
    )
    assert answer.facts["http_status"] == 400
    assert [r["amount"] for r in stripe_api.emulator.refunds()] == [10000]


def test_amounts_the_connector_refuses_before_calling_stripe(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    base = stripe_api.base_url
    cases = {
        "amount '10.005' USD is not a positive amount": _command(
            base, "refund", "k1", payment_intent=intent, amount="10.005", currency="USD"
        ),
        "the payment is in USD, the refund asked in EUR": _command(
            base, "refund", "k2", payment_intent=intent, amount="10.00", currency="EUR"
        ),
        "order 1001 has no Stripe payment id": _command(
            base, "refund", "k3", amount="10.00", currency="USD"
        ),
        "no Stripe API key": _command(
            base, "refund", "k4", payment_intent=intent, api_key="", amount="1.00", currency="USD"
        ),
        "does not do payments.capture": _command(base, "capture", "k5", payment_intent=intent),
    }
    for expected, command in cases.items():
        answer = connector.send(command)
        assert answer.accepted is False
        assert answer.message is not None
        assert expected.replace("'", "") in answer.message.replace("'", ""), answer.message
    assert stripe_api.emulator.refunds() == []


def test_reduce_authorization_captures_the_rest(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000, capture=False)["id"]
    everything = connector.send(
        _command(
            stripe_api.base_url,
            "reduce_authorization",
            "rd:ra:0",
            payment_intent=intent,
            amount="150.00",
            currency="USD",
        )
    )
    assert everything.accepted is False
    assert everything.message is not None
    assert "void the payment instead" in everything.message
    answer = connector.send(
        _command(
            stripe_api.base_url,
            "reduce_authorization",
            "rd:ra:1",
            payment_intent=intent,
            amount="50.00",
            currency="USD",
        )
    )
    assert answer.accepted is True, answer.message
    assert (answer.facts["captured"], answer.facts["released"]) == ("100.00", "50.00")
    found = stripe_api.emulator.payment_intent(intent)
    assert (found["status"], found["amount_received"]) == ("succeeded", 10000)


def test_the_lookup_finds_a_refund_by_its_intent(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(100_000)["id"]
    # 105 refunds: the one looked for is on the second page of Stripe's list (newest first)
    references = []
    for n in range(105):
        answer = connector.send(
            _command(
                stripe_api.base_url,
                "refund",
                f"rd:many:{n}",
                payment_intent=intent,
                amount="1.00",
                currency="USD",
            )
        )
        references.append(answer.reference)
    found = connector.send(
        _command(
            stripe_api.base_url,
            "refund_lookup",
            "lookup:rd:many:2",
            payment_intent=intent,
            intent="rd:many:2",
        )
    )
    assert (found.accepted, found.reference) == (True, references[2])
    missing = connector.send(
        _command(
            stripe_api.base_url,
            "refund_lookup",
            "lookup:rd:none",
            payment_intent=intent,
            intent="rd:none",
        )
    )
    assert missing.accepted is False
    assert missing.message == "Stripe has no refund made under intent rd:none"


def test_stripe_down_or_busy_is_retried_later(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    refund = _command(
        stripe_api.base_url,
        "refund",
        "rd:r:down",
        payment_intent=intent,
        amount="20.00",
        currency="USD",
    )
    for status in (500, 503, 429):
        stripe_api.emulator.fail_with(status)
        with pytest.raises(OutsideUnavailable, match=f"HTTP {status}"):
            connector.send(refund)
    stripe_api.emulator.fail_with(None)
    assert stripe_api.emulator.refunds() == []
    # when Stripe is back, the retried command makes the one refund
    assert connector.send(refund).accepted is True
    assert len(stripe_api.emulator.refunds()) == 1


def test_no_connection_is_retried_later(connector: StripePayments) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    command = _command(
        nowhere, "refund", "rd:r:x", payment_intent="pi_1", amount="1.00", currency="USD"
    )
    with pytest.raises(OutsideUnavailable, match="APIConnectionError"):
        connector.send(command)


def test_a_wrong_api_key_is_refused_with_a_clear_message(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    wrong = "sk_test_wrong_key_0123456789"
    answer = connector.send(
        _command(
            stripe_api.base_url,
            "refund",
            "rd:r:k",
            payment_intent=intent,
            api_key=wrong,
            amount="1.00",
            currency="USD",
        )
    )
    assert answer.accepted is False
    assert answer.message is not None
    assert answer.message.startswith(
        "Stripe refused refund: the API key was rejected "
        "(check connectors.outbound.payments.api_key): Invalid API Key provided: sk_test_"
    )
    assert wrong not in answer.message
    assert answer.facts["stripe_error"] == "AuthenticationError"
    assert stripe_api.emulator.refunds() == []


# -- a whole desk -------------------------------------------------------------------------------


def _doc(ref: str, kind: str, source: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{source}:{ref}:{kind}",
        "source": source,
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {"ref": ref},
        "data": data,
    }


def test_a_desk_cancels_a_captured_order_with_one_stripe_refund(
    stripe_api: RunningEmulator, tmp_path: Path
) -> None:
    payments = StripePayments(timeout=5.0, connect_timeout=2.0)
    outside = OutsideRouter({"stripe": payments}, AcceptingOutside())
    desk = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'desk.db'}"), outside=outside)
    try:
        desk.upgrade()
        # given a merchant whose payments go to Stripe (the emulator)
        config = tmp_path / "acme.yaml"
        config.write_text(
            "merchant: acme\n"
            "time_zone: UTC\n"
            "connectors:\n"
            "  outbound:\n"
            "    payments:\n"
            "      kind: stripe\n"
            f"      base_url: {stripe_api.base_url}\n"
            f"      api_key: {TEST_KEY}\n",
            encoding="utf-8",
        )
        with desk.uow() as uow:
            admin.add_merchant(uow, clock=desk.clock, name="acme")
            admin.apply_settings(uow, clock=desk.clock, name="acme", config=config)
            merchant = admin.require_merchant(uow, "acme")
            uow.commit()
        # and an order being picked, paid by a captured PaymentIntent
        intent = stripe_api.emulator.create_payment_intent(15000, metadata={"order_ref": "3001"})
        now = datetime.now(UTC)
        placed = now - timedelta(hours=2)
        order = {
            "ref": "3001",
            "channel": "shopify",
            "fulfillment_type": "3pl",
            "value": "150.00",
            "currency": "USD",
            "placed_at": placed.isoformat(),
            "customer": {"id": "c-1", "email": "kim@example.com"},
            "lines": [{"sku": "LAMP", "qty": 1, "price": "150.00"}],
        }
        captured = _doc("3001", "payment.captured", "psp", placed + timedelta(minutes=1))
        captured["order"]["ids"] = {"stripe_payment_intent": intent["id"]}
        captured["data"] = {"amount": "150.00", "currency": "USD"}
        docs = [
            {**_doc("3001", "order.placed", "shopify", placed), "order": order},
            captured,
            _doc("3001", "fulfillment.picking", "wms", now - timedelta(minutes=5)),
        ]

        def deliver(*items: dict[str, Any]) -> None:
            desk.ingest(
                merchant, [IncomingEvent(parse_event(doc), json.dumps(doc)) for doc in items]
            )

        def work() -> None:
            runner = desk.job_runner("test-worker")
            for _ in range(30):
                stats = runner.run_due(limit=50)
                assert stats.failed == 0
                if stats.done == 0:
                    return

        deliver(*docs)
        # when an agent cancels it, the warehouse acknowledges the stop, and the worker runs
        with desk.uow() as uow:
            stopship.request_cancellation(
                uow,
                merchant,
                "3001",
                stopship.CancelRequest(reason="changed_mind", request_id="tkt-1"),
                actor="ana",
                now=desk.clock.now(),
            )
            uow.commit()
        work()
        assert stripe_api.emulator.refunds() == []  # no refund before the stop is confirmed
        deliver(_doc("3001", "stopship.acknowledged", "wms", datetime.now(UTC)))
        work()
        deliver(*docs)  # a source delivering again changes nothing
        work()
        # then Stripe made exactly one refund of the captured amount, under the desk's key
        with desk.reader() as uow:
            entries = uow.ledger.for_order(merchant.id, "3001")
            calls = uow.outbound.for_order(merchant.id, "3001")
        [entry] = entries
        assert (entry.kind, entry.status, entry.amount) == (
            EntryKind.REFUND,
            EntryStatus.SENT,
            150,
        )
        [refund] = stripe_api.emulator.refunds()
        assert (refund["amount"], refund["payment_intent"]) == (15000, intent["id"])
        assert refund["metadata"] == {"intent": entry.key, "order_ref": "3001"}
        assert entry.reference == refund["id"]
        assert ("POST", "/v1/refunds", entry.key) in stripe_api.emulator.requests
        assert [(c["system"], c["action"]) for c in calls if c["system"] == "payments"] == [
            ("payments", "refund")
        ]
    finally:
        desk.close()
        payments.close()


# -- dispute evidence ---------------------------------------------------------------------------

_EVIDENCE = {
    "customer_name": "Ada Lovelace",
    "customer_email_address": "ada@example.com",
    "shipping_carrier": "UPS",
    "shipping_tracking_number": "1Z999AA10123456784",
    "uncategorized_text": "Delivered and signed for.",
}


def test_dispute_evidence_is_staged_without_submitting(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    emulator = stripe_api.emulator
    intent = emulator.create_payment_intent(15000)["id"]
    dispute = emulator.open_dispute(intent, reason="product_not_received")["id"]
    key = "rd:1:dispute-3:evidence:1"
    staged = _command(
        stripe_api.base_url, "dispute_evidence", key, payment_intent=intent, evidence=_EVIDENCE
    )
    answer = connector.send(staged)
    assert answer.accepted is True, answer.message
    assert answer.reference == dispute
    assert answer.facts["status"] == "needs_response"
    assert answer.facts["submitted"] is False
    stored = emulator.dispute(dispute)
    assert stored["status"] == "needs_response"
    assert stored["evidence"] == _EVIDENCE
    assert stored["evidence_details"]["has_evidence"] is True
    assert stored["evidence_details"]["submission_count"] == 0
    assert stored["metadata"] == {"intent": key, "order_ref": "1001"}
    assert ("POST", f"/v1/disputes/{dispute}", key) in emulator.requests
    updates = [e for e in emulator.events() if e["type"] == "charge.dispute.updated"]
    assert len(updates) == 1

    # the same command again is Stripe's replay: the same answer, not a second update
    again = connector.send(staged)
    assert (again.accepted, again.reference) == (True, dispute)
    assert len([e for e in emulator.events() if e["type"] == "charge.dispute.updated"]) == 1
    assert emulator.dispute(dispute) == stored


def test_dispute_evidence_is_submitted_once_then_refused(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    emulator = stripe_api.emulator
    intent = emulator.create_payment_intent(15000)["id"]
    dispute = emulator.open_dispute(intent)["id"]
    base = stripe_api.base_url
    staged = connector.send(
        _command(base, "dispute_evidence", "rd:e:1", dispute=dispute, evidence=_EVIDENCE)
    )
    assert staged.accepted is True, staged.message
    submitted = connector.send(
        _command(
            base,
            "dispute_evidence",
            "rd:e:2",
            dispute=dispute,
            evidence={"product_description": "A blue teapot."},
            submit=True,
        )
    )
    assert submitted.accepted is True, submitted.message
    assert submitted.facts["status"] == "under_review"
    stored = emulator.dispute(dispute)
    assert stored["status"] == "under_review"
    assert stored["evidence"] == {**_EVIDENCE, "product_description": "A blue teapot."}
    assert stored["evidence_details"]["submission_count"] == 1

    late = connector.send(
        _command(
            base,
            "dispute_evidence",
            "rd:e:3",
            dispute=dispute,
            evidence={"uncategorized_text": "One more thing."},
        )
    )
    assert late.accepted is False
    assert late.message is not None
    assert late.message.startswith("Stripe refused dispute_evidence: ")
    assert "already been submitted" in late.message
    assert late.facts["http_status"] == 400
    assert late.facts["stripe_error"] == "InvalidRequestError"
    assert emulator.dispute(dispute) == stored


def test_dispute_evidence_past_its_deadline_is_refused(
    connector: StripePayments,
) -> None:
    now = [datetime(2024, 5, 1, 12, tzinfo=UTC)]
    with running_stripe_emulator(clock=lambda: now[0]) as running:
        emulator = running.emulator
        intent = emulator.create_payment_intent(15000)["id"]
        dispute = emulator.open_dispute(intent, due_in_days=2)["id"]
        now[0] += timedelta(days=3)
        answer = connector.send(
            _command(
                running.base_url,
                "dispute_evidence",
                "rd:e:late",
                payment_intent=intent,
                evidence=_EVIDENCE,
            )
        )
        assert answer.accepted is False
        assert answer.facts["http_status"] == 400
        assert answer.message is not None
        assert "deadline" in answer.message
        assert emulator.dispute(dispute)["evidence"] == {}


def test_unknown_evidence_fields_are_refused_before_calling_stripe(
    stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    emulator = stripe_api.emulator
    intent = emulator.create_payment_intent(15000)["id"]
    dispute = emulator.open_dispute(intent)["id"]
    base = stripe_api.base_url
    cases = {
        "unknown or unsupported Stripe evidence fields: favourite_colour": {
            "customer_name": "Ada",
            "favourite_colour": "blue",
        },
        # a file field takes an uploaded file's id: the desk does not send those
        "unknown or unsupported Stripe evidence fields: customer_communication": {
            "customer_communication": "file_123",
        },
        "dispute evidence without evidence": {},
    }
    for expected, evidence in cases.items():
        answer = connector.send(
            _command(base, "dispute_evidence", "rd:e:x", dispute=dispute, evidence=evidence)
        )
        assert answer.accepted is False
        assert answer.message is not None
        assert expected in answer.message, answer.message
    not_bool = connector.send(
        _command(
            base, "dispute_evidence", "rd:e:y", dispute=dispute, evidence=_EVIDENCE, submit="yes"
        )
    )
    assert not_bool.accepted is False
    assert emulator.requests == []
    assert emulator.dispute(dispute)["evidence"] == {}
