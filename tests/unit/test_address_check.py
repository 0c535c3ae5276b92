"""The address check of the address-fix playbook (F11): real-looking addresses as the
storefronts send them, the carrier rules for post office boxes and military addresses, and the
playbook step kind ``address_step`` on a real case and order 360.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from recoverydesk.domain.cases import Case
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.address_check import (
    AddressRules,
    AddressVerdict,
    address_step,
    check_address,
)
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext
from recoverydesk.services.policy import Policy

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RULES = AddressRules()

MOUNTAIN_VIEW = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address1": "1600 Amphitheatre Pkwy",
    "city": "Mountain View",
    "province_code": "CA",
    "zip": "94043",
    "country_code": "US",
}


def check(
    address: dict[str, str] | None, carrier: str | None = None, **rules: Any
) -> AddressVerdict:
    return check_address(address, carrier=carrier, rules=AddressRules(**rules))


def us_box(line1: str) -> dict[str, str]:
    return {"address1": line1, "city": "Springfield", "province_code": "IL", "zip": "62701"} | {
        "country_code": "US"
    }


# --- addresses that are fine as they are -------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(MOUNTAIN_VIEW, id="shopify-us"),
        pytest.param(
            {"address_1": "969 Market", "city": "San Francisco", "state": "CA"}
            | {"postcode": "94103", "country": "US"},
            id="woocommerce-us",
        ),
        pytest.param(
            {"AddressLine1": "1 Cross St.", "City": "Canton", "StateOrRegion": "MI"}
            | {"PostalCode": "48817", "CountryCode": "US"},
            id="amazon-us",
        ),
        pytest.param(
            {"address1": "10 Downing Street", "city": "London", "zip": "SW1A 2AA"}
            | {"country_code": "GB"},
            id="uk",
        ),
        pytest.param(
            {"address1": "111 Wellington St", "city": "Ottawa", "province_code": "ON"}
            | {"zip": "K1A 0A9", "country_code": "CA"},
            id="canada",
        ),
        pytest.param(
            {"address1": "Unter den Linden 1", "city": "Berlin", "zip": "10117"}
            | {"country_code": "DE"},
            id="germany",
        ),
        pytest.param(
            {"address1": "Marienplatz 1", "city": "München", "zip": "80331", "province": "BY"}
            | {"country_code": "DE"},
            id="germany-with-land",
        ),
        pytest.param(
            {"address1": "1 MG Road", "city": "Mumbai", "province": "Maharashtra"}
            | {"zip": "400001", "country_code": "IN"},
            id="india",
        ),
        pytest.param(
            {"address1": "1 George St", "city": "Sydney", "province_code": "NSW", "zip": "2000"}
            | {"country_code": "AU"},
            id="australia",
        ),
        pytest.param(
            {"address1": "1 rue de Rivoli", "city": "Paris", "zip": "75001", "country_code": "FR"},
            id="france",
        ),
    ],
)
def test_a_deliverable_address_is_valid_as_it_is(address: dict[str, str]) -> None:
    # given an address the carrier can deliver to, written the way its country writes it
    # when it is checked
    verdict = check(address, "ups")
    # then there is nothing to fix and nothing to ask
    assert verdict.valid, verdict.problems
    assert verdict.problems == ()
    assert verdict.corrected is None
    assert not verdict.needs_customer
    assert not verdict.po_box


# --- formatting the desk corrects by itself ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "corrected"),
    [
        pytest.param({"zip": "sw1a1aa", "country_code": "GB", "province_code": ""}, "SW1A 1AA"),
        pytest.param({"zip": " k1a0a9 ", "country_code": "CA", "province_code": "on"}, "K1A 0A9"),
        pytest.param({"zip": "400 001", "country_code": "IN", "province_code": "MH"}, "400001"),
        pytest.param(
            {"zip": "01310100", "country_code": "BR", "province_code": "SP", "city": "São Paulo"},
            "01310-100",
        ),
        pytest.param({"zip": "940431234"}, "94043-1234"),
    ],
)
def test_a_postal_code_written_loosely_is_corrected(
    changes: dict[str, str], corrected: str
) -> None:
    # given a postal code typed without its space or dash, or in lower case
    address = MOUNTAIN_VIEW | changes
    # when it is checked
    verdict = check(address)
    # then it is valid once written the way the country writes it, and nothing needs the customer
    assert verdict.valid, verdict.problems
    assert verdict.corrected is not None
    assert verdict.corrected["zip"] == corrected
    assert not verdict.needs_customer


def test_state_names_case_and_spaces_are_normalised_for_the_storefront() -> None:
    # given a US address with a state name, a lower-case country name and stray spaces
    address = {
        "address1": "  1600   Amphitheatre Pkwy ",
        "city": "Mountain View",
        "province": "california",
        "zip": "94043",
        "country": "United States",
        "phone": "+1 650 253 0000",
    }
    # when it is checked
    verdict = check(address)
    # then the corrected form is in the storefront's fields, with the state and country codes
    assert verdict.valid
    assert verdict.corrected == {
        "address1": "1600 Amphitheatre Pkwy",
        "city": "Mountain View",
        "province_code": "CA",
        "zip": "94043",
        "country_code": "US",
        "phone": "+1 650 253 0000",
    }


def test_an_old_state_abbreviation_is_read_when_the_zip_code_agrees() -> None:
    # given "Calif." with a California ZIP code, and "Calif." with a Texas one
    calif = MOUNTAIN_VIEW | {"province_code": "Calif."}
    texan = calif | {"city": "Austin", "zip": "78701"}
    # when they are checked
    fixed, wrong = check(calif), check(texan)
    # then the first is corrected to CA; the second's ZIP code is not one of California's
    assert fixed.corrected is not None
    assert fixed.corrected["province_code"] == "CA"
    assert wrong.codes == ["bad_postal_code"]
    assert wrong.corrected is None


def test_magento_region_name_becomes_a_code() -> None:
    # given Magento's shipping address as the normaliser keeps it
    address = {"firstname": "Jane", "lastname": "Doe", "street": "123 Oak Ave"} | {
        "city": "Purchase",
        "region": "New York",
        "postcode": "10577",
        "country_id": "US",
    }
    # when it is checked
    verdict = check(address)
    # then the storefront gets the state code and keeps the names
    assert verdict.corrected is not None
    assert verdict.corrected["province_code"] == "NY"
    assert verdict.corrected["first_name"] == "Jane"
    assert verdict.corrected["address1"] == "123 Oak Ave"


# --- what only the customer can answer ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        pytest.param({"zip": "SW1A 1AAX", "country_code": "GB"}, "bad_postal_code", id="uk-long"),
        pytest.param({"zip": "1234", "country_code": "DE"}, "bad_postal_code", id="de-short"),
        pytest.param({"zip": "4000011", "country_code": "IN"}, "bad_postal_code", id="in-pin"),
        pytest.param({"zip": "74043"}, "bad_postal_code", id="zip-of-another-state"),
        pytest.param({"province_code": "ZZ"}, "unknown_region", id="no-such-state"),
        pytest.param({"country_code": "DE", "zip": "10117"}, "unknown_region", id="us-state-de"),
        pytest.param({"country_code": "XX"}, "unknown_country", id="unknown-country"),
        pytest.param({"country_code": "Atlantis"}, "unknown_country", id="made-up-country"),
    ],
)
def test_a_wrong_part_needs_the_customer(changes: dict[str, str], code: str) -> None:
    # given an address with a part that is not what its country uses
    # when it is checked
    verdict = check(MOUNTAIN_VIEW | changes)
    # then the problem is named, nothing is corrected and the customer is asked
    assert code in verdict.codes
    assert not verdict.valid
    assert verdict.needs_customer
    assert verdict.corrected is None
    assert all(problem.message for problem in verdict.problems)


def test_missing_parts_are_each_named() -> None:
    # given a US address with only a street line
    address = {"address1": "1 Main St", "country_code": "US"}
    # when it is checked
    verdict = check(address)
    # then every part the US requires is asked for
    assert set(verdict.codes) == {"missing_city", "missing_region", "missing_postal_code"}
    assert verdict.needs_customer


def test_a_missing_country_is_asked_for() -> None:
    verdict = check({"address1": "1 Main St", "zip": "62701"})
    assert set(verdict.codes) == {"missing_country", "missing_city"}


def test_a_city_the_country_lists_must_be_one_of_its_cities() -> None:
    # given a Brazilian address in São Paulo state whose city is not a city of that state
    address = {"address1": "Rua das Flores, 123", "province_code": "SP", "zip": "01234-567"}
    # when it is checked with a real city and with a made-up one
    real = check(address | {"city": "São Paulo", "country_code": "BR"})
    made_up = check(address | {"city": "Mountain View", "country_code": "BR"})
    # then only the made-up city is a problem
    assert real.valid, real.problems
    assert made_up.codes == ["unknown_city"]


def test_a_country_without_postal_codes_needs_none() -> None:
    # given an address in Hong Kong, where there are no postal codes
    address = {"address1": "1 Queen's Road Central", "city": "Central", "province": "Hong Kong"}
    # when it is checked
    verdict = check(address | {"country_code": "HK"})
    # then no postal code is asked for
    assert "missing_postal_code" not in verdict.codes


@pytest.mark.parametrize(
    ("address", "code"),
    [
        pytest.param(None, "missing_address", id="none"),
        pytest.param({}, "missing_address", id="empty"),
        pytest.param({"first_name": "Kim", "latitude": "45.4"}, "unparseable", id="no-place"),
    ],
)
def test_no_address_at_all(address: dict[str, str] | None, code: str) -> None:
    verdict = check(address)
    assert verdict.codes == [code]
    assert verdict.needs_customer


# --- post office boxes, military addresses and carriers -----------------------------------


@pytest.mark.parametrize(
    "line1",
    [
        "PO Box 123",
        "P.O. Box 123",
        "p.o. box 123",
        "Post Office Box 123",
        "PO BOX 778",
        "POBox 3",
        "Box 55",
        "Caller Box 100",
    ],
)
def test_us_post_office_boxes_are_recognised(line1: str) -> None:
    # when a US PO box is checked for a parcel with USPS
    verdict = check(us_box(line1), "usps")
    # then it is a box, and fine for the postal service
    assert verdict.po_box
    assert verdict.valid


@pytest.mark.parametrize(
    "line1", ["12 Box Elder Ct", "1 Boxwood Ln", "PMB 12, 100 Main St", "1 Post Office Sq"]
)
def test_street_addresses_that_mention_boxes_are_not_boxes(line1: str) -> None:
    verdict = check(us_box(line1), "ups")
    assert not verdict.po_box
    assert verdict.valid


def test_a_po_box_on_the_second_line_counts() -> None:
    verdict = check(us_box("100 Main St") | {"address2": "PO Box 12"}, "fedex")
    assert verdict.po_box
    assert verdict.codes == ["po_box_with_carrier"]


def test_a_po_box_is_refused_for_ups_and_fine_for_usps() -> None:
    # given a PO box
    address = us_box("P.O. Box 4511")
    # when it is checked for UPS and for USPS
    ups, usps = check(address, "UPS"), check(address, "usps")
    # then UPS cannot deliver it: the customer gives a street address
    assert ups.codes == ["po_box_with_carrier"]
    assert "ups" in ups.problems[0].message
    assert ups.needs_customer
    assert not ups.valid
    # and the postal service can
    assert usps.valid
    assert usps.po_box


def test_the_default_carrier_applies_when_the_order_names_none() -> None:
    address = us_box("PO Box 9")
    assert check(address, None).valid
    assert check(address, None, default_carrier="DHL").codes == ["po_box_with_carrier"]


def test_a_merchant_may_allow_boxes_for_every_carrier() -> None:
    verdict = check(us_box("PO Box 9"), "ups", po_box_forbidden_carriers=[])
    assert verdict.valid
    assert verdict.po_box


@pytest.mark.parametrize(
    "box",
    [
        {"address1": "Postfach 10 01 01", "city": "Berlin", "zip": "10001", "country_code": "DE"},
        {"address1": "Locked Bag 5", "city": "Sydney", "province_code": "NSW", "zip": "2001"}
        | {"country_code": "AU"},
        {"address1": "GPO Box 1234", "city": "Sydney", "province_code": "NSW", "zip": "2001"}
        | {"country_code": "AU"},
        {"address1": "PO Box 456", "city": "Toronto", "province_code": "ON", "zip": "M5W 1E6"}
        | {"country_code": "CA"},
    ],
)
def test_boxes_abroad_are_refused_for_dhl(box: dict[str, str]) -> None:
    verdict = check(box, "dhl")
    assert verdict.po_box
    assert verdict.codes == ["po_box_with_carrier"]


@pytest.mark.parametrize(
    "address",
    [
        {"address1": "Unit 2050 Box 4190", "city": "APO", "province_code": "AE", "zip": "09012"},
        {"address1": "PSC 802 Box 74", "city": "APO", "province_code": "AE", "zip": "09499"},
        {"address1": "USS Nimitz CVN 68", "city": "FPO", "province_code": "AP", "zip": "96620"},
    ],
)
def test_military_addresses_go_by_the_postal_service_only(address: dict[str, str]) -> None:
    # given an APO/FPO address
    military = address | {"country_code": "US"}
    # when it is checked for FedEx and for USPS
    fedex, usps = check(military, "fedex"), check(military, "usps")
    # then FedEx cannot take it, USPS can; a military address is not a PO box
    assert fedex.codes == ["military_with_carrier"]
    assert fedex.military
    assert not fedex.po_box
    assert usps.valid


def test_a_country_the_merchant_does_not_ship_to() -> None:
    verdict = check(MOUNTAIN_VIEW, "ups", ship_to_countries=["ca", "GB"])
    assert verdict.codes == ["country_not_shipped"]
    assert "US" in verdict.problems[0].message


def test_a_phone_is_required_for_a_named_carrier_or_country() -> None:
    by_carrier = check(MOUNTAIN_VIEW, "dhl", require_phone_for=["dhl"])
    by_country = check(MOUNTAIN_VIEW, "ups", require_phone_for=["US"])
    with_phone = check(
        MOUNTAIN_VIEW | {"phone": "+1 650 253 0000"}, "dhl", require_phone_for=["dhl"]
    )
    assert by_carrier.codes == ["missing_phone"]
    assert by_country.codes == ["missing_phone"]
    assert with_phone.valid


def test_rules_refuse_a_country_that_is_not_an_iso_code() -> None:
    with pytest.raises(ValueError, match="USA"):
        AddressRules(ship_to_countries=["USA"])


# --- the playbook step kind ---------------------------------------------------------------


def context(
    address: dict[str, str] | None,
    *,
    carrier: str | None = None,
    params: dict[str, Any] | None = None,
    policy: object | None = None,
) -> StepContext:
    case = Case.open(
        order_ref="1001",
        category="address_invalid",
        opened_at=NOW,
        opened_by="evt-1",
        hold_type="address",
        recorded_at=NOW,
    )
    order = OrderView(ref="1001", shipping_address=address, carrier=carrier)
    return StepContext(
        uow=cast(Any, None),  # the step never touches the unit of work
        merchant=cast(Any, None),
        policy=cast(Policy, policy if policy is not None else SimpleNamespace()),
        case=case,
        order=order,
        step="validate_address",
        params=params or {},
        key="playbook:1:7:validate_address:1",
        actor="playbook:address_fix@1",
        now=NOW,
    )


def test_step_sends_the_corrected_address_to_the_storefront() -> None:
    # given an order whose UK postcode was typed without its space
    address = {"address1": "10 Downing Street", "city": "London", "zip": "sw1a2aa"} | {
        "country_code": "gb"
    }
    # when the address step runs
    outcome = address_step(context(address))
    # then the storefront is asked to update the address in the fields its connector reads
    assert outcome.blocked is None
    assert outcome.calls == (
        OutsideCall(
            system="storefront",
            action="address_update",
            params={
                "address": {
                    "address1": "10 Downing Street",
                    "city": "London",
                    "zip": "SW1A 2AA",
                    "country_code": "GB",
                }
            },
        ),
    )
    # and the facts say the address is valid once corrected
    assert outcome.facts["valid"] is True
    assert outcome.facts["needs_customer"] is False
    assert outcome.facts["corrected"]["zip"] == "SW1A 2AA"


def test_step_on_a_po_box_shipped_with_ups_asks_the_customer() -> None:
    # given an order with a PO box that UPS is to carry
    outcome = address_step(context(us_box("PO Box 12"), carrier="ups"))
    # then nothing is sent and the facts say why the customer is needed
    assert outcome.calls == ()
    assert outcome.facts["po_box"] is True
    assert outcome.facts["needs_customer"] is True
    assert outcome.facts["problems"][0]["code"] == "po_box_with_carrier"


def test_step_facts_are_plain_json() -> None:
    import json

    outcome = address_step(context(MOUNTAIN_VIEW | {"zip": "7404"}))
    facts = json.loads(json.dumps(outcome.facts))
    assert facts == outcome.facts
    assert facts["valid"] is False
    assert facts["corrected"] is None


def test_step_is_blocked_without_an_address() -> None:
    outcome = address_step(context(None))
    assert outcome.blocked == "the order has no shipping address"
    assert outcome.calls == ()


def test_step_params_override_the_merchants_rules() -> None:
    # given a merchant whose policy lets UPS take PO boxes, and a step that forbids it again
    policy = SimpleNamespace(address=AddressRules(po_box_forbidden_carriers=[]))
    address = us_box("PO Box 12")
    # when the step runs with and without its own params
    merchant_only = address_step(context(address, carrier="ups", policy=policy))
    overridden = address_step(
        context(
            address, carrier="ups", policy=policy, params={"po_box_forbidden_carriers": ["ups"]}
        )
    )
    # then the step's params win
    assert merchant_only.facts["valid"] is True
    assert overridden.facts["problems"][0]["code"] == "po_box_with_carrier"


def test_step_with_invalid_params_is_blocked() -> None:
    outcome = address_step(context(MOUNTAIN_VIEW, params={"po_box_forbiden_carriers": ["ups"]}))
    assert outcome.blocked is not None
    assert "po_box_forbiden_carriers" in outcome.blocked
