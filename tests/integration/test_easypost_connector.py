"""The EasyPost carrier connector over real HTTP, against the EasyPost emulator on loopback.

The connector files insurance claims (``POST /v2/claims``) and traces parcels
(``POST /v2/trackers``) with HTTP Basic auth; the emulator (``sandbox.easypost_emulator``) keeps
the trackers, their scripted statuses, the insured parcels and the claims, with EasyPost's shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from recoverydesk.bootstrap import CONNECTORS
from recoverydesk.connectors.easypost import EasyPostCarrier
from recoverydesk.sandbox.easypost_emulator import (
    TEST_API_KEY,
    RunningEasyPost,
    TrackingStep,
    running_easypost_emulator,
)
from recoverydesk.sandbox.serving import free_port
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable


@pytest.fixture
def carrier() -> Iterator[RunningEasyPost]:
    with running_easypost_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[EasyPostCarrier]:
    easypost = EasyPostCarrier(timeout=5.0)
    yield easypost
    easypost.close()


def _command(
    base_url: str, action: str, key: str = "playbook:acme:7:carrier_claim:1", **params: Any
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref="7001",
        system="carrier",
        action=action,
        key=key,
        params=params,
        connection={
            "kind": "easypost",
            "base_url": base_url,
            "api_key": params.pop("api_key", TEST_API_KEY),
            "contact_email": "claims@acme.test",
            "timeout_seconds": 2,
        },
    )


def test_registered_in_the_composition_root() -> None:
    assert isinstance(CONNECTORS["easypost"], EasyPostCarrier)


def test_a_lost_parcel_is_claimed_at_easypost(
    carrier: RunningEasyPost, connector: EasyPostCarrier
) -> None:
    # given an insured parcel
    carrier.emulator.insure("1Z7001", "150.00")
    # when the desk files a claim for the lost parcel
    answer = connector.send(
        _command(carrier.base_url, "claim", tracking="1Z7001", carrier="ups", kind="lost",
                 amount="99.50")
    )  # fmt: skip
    # then EasyPost has a submitted loss claim for the order's value, naming the desk's key
    assert answer.accepted, answer.message
    [claim] = carrier.emulator.claims
    assert (claim["type"], claim["requested_amount"], claim["status"]) == (
        "loss",
        "99.50",
        "submitted",
    )
    assert "playbook:acme:7:carrier_claim:1" in claim["description"]
    assert claim["contact_email"] == "claims@acme.test"
    assert answer.reference == claim["id"]
    assert answer.facts["claim_id"] == claim["id"]
    assert answer.facts["status"] == "submitted"
    assert answer.facts["already_done"] is False


def test_a_retried_claim_is_not_filed_twice(
    carrier: RunningEasyPost, connector: EasyPostCarrier
) -> None:
    carrier.emulator.insure("1Z7002")
    command = _command(carrier.base_url, "claim", tracking="1Z7002", kind="damaged", amount="40")
    first = connector.send(command)
    # when the same command is sent again (a retry after a lost answer)
    again = connector.send(command)
    # then the claim already filed is the answer, and EasyPost still has one claim
    assert first.accepted, first.message
    assert again.accepted, again.message
    assert again.facts["already_done"] is True
    assert again.reference == first.reference
    assert len(carrier.emulator.claims) == 1
    posts = [r for r in carrier.emulator.requests if r["method"] == "POST"]
    assert len(posts) == 1


def test_an_open_claim_of_the_same_type_is_the_answer_to_another_key(
    carrier: RunningEasyPost, connector: EasyPostCarrier
) -> None:
    carrier.emulator.insure("1Z7003")
    first = connector.send(
        _command(carrier.base_url, "claim", "k-1", tracking="1Z7003", kind="lost", amount="10")
    )
    second = connector.send(
        _command(carrier.base_url, "claim", "k-2", tracking="1Z7003", kind="lost", amount="10")
    )
    assert second.accepted
    assert second.facts["already_done"] is True
    assert second.reference == first.reference
    # but once that claim was rejected, a new one is filed
    assert first.reference is not None
    carrier.emulator.decide(first.reference, "rejected", "No proof of value.")
    third = connector.send(
        _command(carrier.base_url, "claim", "k-3", tracking="1Z7003", kind="lost", amount="10")
    )
    assert third.accepted
    assert third.facts["already_done"] is False
    assert len(carrier.emulator.claims) == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tracking": "1Z9", "kind": "lost", "amount": "10"}, "No insurance found for 1Z9"),
        ({"tracking": "1Z8", "kind": "lost", "amount": "500"}, "exceeds the insured amount"),
        ({"tracking": "1Z8", "kind": "delay", "amount": "10"}, "no claim type for kind 'delay'"),
        ({"tracking": "1Z8", "kind": "lost"}, "amount None is not a number"),
        ({"kind": "lost", "amount": "10"}, "no tracking number"),
    ],
)
def test_a_claim_easypost_or_the_desk_cannot_file_is_refused_with_the_reason(
    carrier: RunningEasyPost, connector: EasyPostCarrier, params: dict[str, Any], expected: str
) -> None:
    carrier.emulator.insure("1Z8", "100.00")
    answer = connector.send(_command(carrier.base_url, "claim", **params))
    assert not answer.accepted
    assert expected in str(answer.message)
    assert carrier.emulator.claims == []


def test_a_trace_reports_the_trackers_status_estimate_and_last_scan(
    carrier: RunningEasyPost, connector: EasyPostCarrier
) -> None:
    carrier.emulator.script(
        "1Z5001",
        [
            TrackingStep("pre_transit", "Label created"),
            TrackingStep("in_transit", "Departed facility", "departed_facility", "RENO", "NV", 3),
        ],
    )
    first = connector.send(_command(carrier.base_url, "trace", tracking="1Z5001", carrier="ups"))
    assert first.accepted, first.message
    assert first.facts["status"] == "pre_transit"
    assert first.facts["carrier"] == "UPS"
    # when the parcel moves on and the desk traces it again
    carrier.emulator.advance("1Z5001")
    again = connector.send(_command(carrier.base_url, "trace", tracking="1Z5001", carrier="ups"))
    # then the same tracker answers with the new status and its newest scan
    assert again.reference == first.reference
    assert again.facts["status"] == "in_transit"
    assert again.facts["est_delivery_date"]
    assert again.facts["last_detail"]["message"] == "Departed facility"
    assert again.facts["last_detail"]["location"] == "RENO, NV"
    assert len(carrier.emulator.trackers) == 1


def test_easypost_test_tracking_codes_answer_their_status(
    carrier: RunningEasyPost, connector: EasyPostCarrier
) -> None:
    answer = connector.send(_command(carrier.base_url, "trace", tracking="EZ4000000004"))
    assert answer.accepted
    assert answer.facts["status"] == "delivered"


def test_a_bad_key_is_a_refusal(carrier: RunningEasyPost, connector: EasyPostCarrier) -> None:
    answer = connector.send(
        _command(carrier.base_url, "trace", tracking="EZ1000000001", api_key="wrong")
    )
    assert not answer.accepted
    assert "HTTP 401" in str(answer.message)
    assert answer.facts["code"] == "APIKEY.INACTIVE"
    assert "wrong" not in str(answer.message)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_later(
    carrier: RunningEasyPost, connector: EasyPostCarrier, status: int
) -> None:
    carrier.emulator.fail_next(status)
    with pytest.raises(OutsideUnavailable, match=f"HTTP {status}"):
        connector.send(_command(carrier.base_url, "trace", tracking="EZ1000000001"))


def test_timeout_and_unreachable_are_retried_later(carrier: RunningEasyPost) -> None:
    carrier.emulator.delay = 1.5
    slow = EasyPostCarrier()
    command = _command(carrier.base_url, "trace", tracking="EZ1000000001")
    quick = {**command.connection, "timeout_seconds": 0.3}
    try:
        with pytest.raises(OutsideUnavailable, match="timed out"):
            slow.send(replace(command, connection=quick))
        with pytest.raises(OutsideUnavailable):
            slow.send(_command(f"http://127.0.0.1:{free_port()}", "trace", tracking="EZ1"))
    finally:
        slow.close()


def test_unsupported_action_and_incomplete_connection(connector: EasyPostCarrier) -> None:
    unsupported = connector.send(_command("http://127.0.0.1:9", "refund"))
    assert not unsupported.accepted
    assert unsupported.facts["code"] == "unsupported_action"
    incomplete = connector.send(_command("http://127.0.0.1:9", "trace", api_key="", tracking="1"))
    assert not incomplete.accepted
    assert incomplete.facts["code"] == "connection_incomplete"
