"""The Adyen payments connector over real HTTP, against the Adyen emulator on loopback.

The emulator (``sandbox.adyen_emulator``) answers as Adyen's Checkout API does: JSON bodies,
``X-API-Key`` auth, 201 ``{"status": "received"}`` for a modification, Idempotency-Key replays and
Adyen's error bodies (``status``, ``errorCode``, ``message``, ``errorType``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recoverydesk.bootstrap import CONNECTORS
from recoverydesk.connectors.adyen_payments import AdyenPayments
from recoverydesk.sandbox.adyen_emulator import (
    TEST_KEY,
    TEST_MERCHANT,
    RunningAdyenEmulator,
    running_adyen_emulator,
)
from recoverydesk.sandbox.serving import free_port
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable


@pytest.fixture
def adyen_api() -> Iterator[RunningAdyenEmulator]:
    with running_adyen_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[AdyenPayments]:
    payments = AdyenPayments(timeout=5.0)
    yield payments
    payments.close()


def _command(
    base_url: str,
    action: str,
    key: str,
    *,
    psp: str | None = None,
    api_key: str = TEST_KEY,
    merchant_account: str = TEST_MERCHANT,
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
        connection={
            "kind": "adyen",
            "base_url": base_url,
            "api_key": api_key,
            "merchant_account": merchant_account,
        },
        order_ids={"adyen_psp_reference": psp} if psp else {},
    )


def test_the_desk_knows_the_adyen_connector() -> None:
    assert isinstance(CONNECTORS["adyen"], AdyenPayments)


def test_void_cancels_the_payment(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000, capture=False)
    answer = connector.send(_command(adyen_api.base_url, "void", "rd:void:1", psp=psp))
    assert answer.accepted is True, answer.message
    assert answer.facts == {"status": "received", "payment": psp}
    [cancel] = adyen_api.emulator.modifications("cancels")
    assert answer.reference == cancel["answer"]["pspReference"] != psp
    assert cancel["request"] == {"merchantAccount": TEST_MERCHANT, "reference": "rd:void:1"}
    assert adyen_api.emulator.payment(psp)["status"] == "cancelled"
    assert ("POST", f"/checkout/v71/payments/{psp}/cancels", "rd:void:1") in (
        adyen_api.emulator.requests
    )


def test_a_captured_payment_is_not_voided(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    answer = connector.send(_command(adyen_api.base_url, "void", "rd:void:2", psp=psp))
    assert answer.accepted is False
    assert answer.message is not None
    assert answer.message.startswith("Adyen refused void [emu-captured]: Payment already captured")
    assert answer.facts["http_status"] == 422
    assert adyen_api.emulator.payment(psp)["status"] == "captured"


def test_a_refund_carries_the_desks_key_as_reference_and_idempotency_key(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    key = "rd:1:cancellation-7:1:refund:40.00"
    answer = connector.send(
        _command(adyen_api.base_url, "refund", key, psp=psp, amount="40.00", currency="EUR")
    )
    assert answer.accepted is True, answer.message
    [refund] = adyen_api.emulator.modifications("refunds")
    assert refund["request"] == {
        "merchantAccount": TEST_MERCHANT,
        "reference": key,
        "amount": {"value": 4000, "currency": "EUR"},
    }
    assert refund["idempotency_key"] == key
    assert answer.reference == refund["answer"]["pspReference"]
    assert answer.facts == {"status": "received", "payment": psp, "amount": "40.00"}
    assert adyen_api.emulator.payment(psp)["refunded"] == 4000
    assert ("POST", f"/checkout/v71/payments/{psp}/refunds", key) in adyen_api.emulator.requests


def test_the_same_refund_twice_is_one_refund(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    refund = _command(
        adyen_api.base_url, "refund", "rd:r:1", psp=psp, amount="150.00", currency="EUR"
    )
    first, again = connector.send(refund), connector.send(refund)
    assert (first.accepted, again.accepted) == (True, True)
    assert first.reference == again.reference
    assert len(adyen_api.emulator.modifications("refunds")) == 1
    assert adyen_api.emulator.payment(psp)["refunded"] == 15000
    # the same key with another amount is refused, nothing more refunded
    other = connector.send(
        _command(adyen_api.base_url, "refund", "rd:r:1", psp=psp, amount="10.00", currency="EUR")
    )
    assert other.accepted is False
    assert other.message == ("Adyen refused refund [704]: request already processed or in progress")
    assert len(adyen_api.emulator.modifications("refunds")) == 1


def test_a_refund_beyond_the_captured_amount_is_refused(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    base = adyen_api.base_url
    assert connector.send(
        _command(base, "refund", "rd:r:a", psp=psp, amount="100.00", currency="EUR")
    ).accepted
    answer = connector.send(
        _command(base, "refund", "rd:r:b", psp=psp, amount="60.00", currency="EUR")
    )
    assert answer.accepted is False
    assert answer.message == (
        "Adyen refused refund [137]: Invalid amount specified: the refund (60.00 EUR) is greater "
        "than the unrefunded captured amount (50.00 EUR)"
    )
    assert answer.facts["http_status"] == 422
    assert answer.facts["adyen_code"] == "137"
    assert answer.facts["adyen_type"] == "validation"
    assert adyen_api.emulator.payment(psp)["refunded"] == 10000


def test_commands_the_connector_refuses_before_calling_adyen(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    base = adyen_api.base_url
    cases = {
        "amount 10.005 EUR is not a positive amount": _command(
            base, "refund", "k1", psp=psp, amount="10.005", currency="EUR"
        ),
        "refund without a currency": _command(base, "refund", "k2", psp=psp, amount="1.00"),
        "order 1001 has no Adyen PSP reference": _command(
            base, "refund", "k3", amount="10.00", currency="EUR"
        ),
        "needs api_key": _command(
            base, "refund", "k4", psp=psp, api_key="", amount="1.00", currency="EUR"
        ),
        "needs merchant_account": _command(
            base, "void", "k5", psp=psp, merchant_account="", amount="1.00", currency="EUR"
        ),
        "does not do payments.capture": _command(base, "capture", "k6", psp=psp),
    }
    for expected, command in cases.items():
        answer = connector.send(command)
        assert answer.accepted is False
        assert answer.message is not None
        assert expected in answer.message, answer.message
    assert adyen_api.emulator.requests == []


def test_reduce_authorization_updates_the_amount(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000, capture=False)
    base = adyen_api.base_url
    unknown = connector.send(
        _command(base, "reduce_authorization", "rd:ra:0", psp=psp, amount="50.00", currency="EUR")
    )
    assert unknown.accepted is False
    assert unknown.message is not None
    assert "params.authorized" in unknown.message
    everything = connector.send(
        _command(
            base,
            "reduce_authorization",
            "rd:ra:1",
            psp=psp,
            amount="150.00",
            currency="EUR",
            authorized="150.00",
        )
    )
    assert everything.accepted is False
    assert everything.message is not None
    assert "void the payment instead" in everything.message
    answer = connector.send(
        _command(
            base,
            "reduce_authorization",
            "rd:ra:2",
            psp=psp,
            amount="50.00",
            currency="EUR",
            authorized="150.00",
        )
    )
    assert answer.accepted is True, answer.message
    assert (answer.facts["authorized"], answer.facts["released"]) == ("100.00", "50.00")
    [update] = adyen_api.emulator.modifications("amountUpdates")
    assert update["request"]["amount"] == {"value": 10000, "currency": "EUR"}
    assert adyen_api.emulator.payment(psp)["authorised"] == 10000


def test_the_lookup_says_adyen_confirms_refunds_by_webhook(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    answer = connector.send(
        _command(adyen_api.base_url, "refund_lookup", "lookup:rd:x", psp=psp, intent="rd:x")
    )
    assert answer.accepted is False
    assert answer.reference is None
    assert answer.message is not None
    assert "no refund search" in answer.message
    assert "REFUND webhook" in answer.message
    assert "merchantReference" in answer.message
    assert adyen_api.emulator.requests == []


def test_adyen_down_or_busy_is_retried_later(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    refund = _command(
        adyen_api.base_url, "refund", "rd:r:down", psp=psp, amount="20.00", currency="EUR"
    )
    for status in (500, 503, 429):
        adyen_api.emulator.fail_with(status)
        with pytest.raises(OutsideUnavailable, match=f"HTTP {status}"):
            connector.send(refund)
    adyen_api.emulator.fail_with(None)
    assert adyen_api.emulator.modifications() == []
    # when Adyen is back, the retried command makes the one refund
    assert connector.send(refund).accepted is True
    assert connector.send(refund).accepted is True
    assert len(adyen_api.emulator.modifications("refunds")) == 1
    assert adyen_api.emulator.payment(psp)["refunded"] == 2000


def test_no_connection_is_retried_later(connector: AdyenPayments) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    command = _command(nowhere, "refund", "rd:r:x", psp="PSP1", amount="1.00", currency="EUR")
    with pytest.raises(OutsideUnavailable, match="ConnectError"):
        connector.send(command)


def test_a_wrong_api_key_is_refused_with_a_clear_message(
    adyen_api: RunningAdyenEmulator, connector: AdyenPayments
) -> None:
    psp = adyen_api.emulator.create_payment(15000)
    wrong = "AQE_wrong_key_0123456789"
    answer = connector.send(
        _command(
            adyen_api.base_url,
            "refund",
            "rd:r:k",
            psp=psp,
            api_key=wrong,
            amount="1.00",
            currency="EUR",
        )
    )
    assert answer.accepted is False
    assert answer.message == (
        "Adyen refused refund [000]: the API key was rejected "
        "(check connectors.outbound.payments.api_key): HTTP Status Response - Unauthorized"
    )
    assert wrong not in answer.message
    assert (answer.facts["http_status"], answer.facts["adyen_type"]) == (401, "security")
    # another merchant account than the key's is refused too
    other = connector.send(
        _command(
            adyen_api.base_url,
            "refund",
            "rd:r:m",
            psp=psp,
            merchant_account="SomeoneElse",
            amount="1.00",
            currency="EUR",
        )
    )
    assert other.accepted is False
    assert other.facts["http_status"] == 403
    assert adyen_api.emulator.modifications() == []
