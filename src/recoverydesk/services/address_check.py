"""Address check for the address-fix playbook (F11): is the shipping address one a carrier can
deliver to, what only the customer can answer, and what the desk may correct by itself.

The rules of each country (Google's address data, ISO 3166, ``usaddress`` for the street lines)
and their checks are in ``services.address_formats``; this module reads the storefront's
address, adds the carrier's and the merchant's rules and gives the verdict.

A private mailbox ("PMB 12, 100 Main St") is a street address that every carrier serves: it
is no post office box. A military address (APO/FPO/DPO, "states" AA/AE/AP) is reached through
the US postal service only.

Formatting the desk can fix (spaces, case, "sw1a1aa" to "SW1A 1AA", "california" to "CA",
"Calif." to "CA" when the postal code is one of California's, "United States" to "US") is no
problem: the verdict carries the ``corrected`` address. Every problem is one that only the
customer (or a person) can answer, so ``needs_customer`` is true whenever there is one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recoverydesk.services.address_formats import (
    AddressProblem,
    AddressProblemCode,
    is_military,
    is_po_box,
    iso_country,
    place_problems,
)

if TYPE_CHECKING:  # at run time, imported where used: ``services.policy`` may import this module
    from recoverydesk.services.playbook_kinds import StepContext, StepOutcome

__all__ = [
    "CARRIERS_WITHOUT_BOXES",
    "STOREFRONT_FIELDS",
    "AddressProblem",
    "AddressProblemCode",
    "AddressRules",
    "AddressVerdict",
    "address_rules",
    "address_step",
    "check_address",
]


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    """``corrected`` is the address in the storefront's fields (``STOREFRONT_FIELDS``) when the
    desk changed its formatting and nothing needs the customer; else None."""

    valid: bool
    problems: tuple[AddressProblem, ...]
    po_box: bool
    military: bool
    corrected: dict[str, str] | None
    needs_customer: bool

    @property
    def codes(self) -> list[str]:
        return [problem.code.value for problem in self.problems]

    def as_facts(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "problems": [{"code": p.code.value, "message": p.message} for p in self.problems],
            "po_box": self.po_box,
            "military": self.military,
            "needs_customer": self.needs_customer,
            "corrected": dict(self.corrected) if self.corrected is not None else None,
        }


CARRIERS_WITHOUT_BOXES = ["ups", "fedex", "dhl"]


class AddressRules(BaseModel):
    """A merchant's address rules (``Policy.address``). Carriers are lower-case names as the
    order shows them (``OrderView.carrier``); countries are ISO 3166 alpha-2 codes.
    ``require_phone_for`` names carriers ("dhl") or destination countries ("BR") whose
    parcels need the recipient's phone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    po_box_forbidden_carriers: list[str] = Field(default_factory=lambda: [*CARRIERS_WITHOUT_BOXES])
    military_forbidden_carriers: list[str] = Field(
        default_factory=lambda: [*CARRIERS_WITHOUT_BOXES]
    )
    ship_to_countries: list[str] | None = None
    require_phone_for: list[str] = Field(default_factory=list)
    default_carrier: str | None = None  # the carrier when the order names none yet

    @field_validator("po_box_forbidden_carriers", "military_forbidden_carriers")
    @classmethod
    def _carriers(cls, names: list[str]) -> list[str]:
        return [name.strip().lower() for name in names]

    @field_validator("default_carrier")
    @classmethod
    def _carrier(cls, name: str | None) -> str | None:
        return (name or "").strip().lower() or None

    @field_validator("ship_to_countries")
    @classmethod
    def _countries(cls, codes: list[str] | None) -> list[str] | None:
        if codes is None:
            return None
        for code in codes:
            if iso_country(code) != code.strip().upper():
                raise ValueError(f"{code!r} is not an ISO 3166 alpha-2 country code")
        return [code.strip().upper() for code in codes]


# The parts the desk reads, each from the first of its spellings (lower-case, without "_" or
# "-") that an address has: Shopify, WooCommerce, Magento, Amazon and the desk's own sandbox.
# Codes come before names (Shopify sends ``province`` and ``province_code``).
# fmt: off
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "line1": ("address1", "line1", "addressline1", "street", "streetaddress"),
    "line2": ("address2", "line2", "addressline2"),
    "city": ("city", "town"),
    "region": ("provincecode", "regioncode", "statecode", "state", "province", "region",
               "stateorregion", "countryarea"),
    "postal_code": ("zip", "postcode", "postalcode", "zipcode"),
    "country": ("countrycode", "countrycodev2", "countryid", "country"),
    "first_name": ("firstname",), "last_name": ("lastname",),
    "company": ("company", "companyname"), "phone": ("phone", "telephone"),
}
# fmt: on
_PLACE_PARTS = ("line1", "city", "postal_code", "country")

# The fields of the storefront's ``address_update`` (``connectors.shopify_admin``).
# fmt: off
STOREFRONT_FIELDS = {
    "first_name": "first_name", "last_name": "last_name", "company": "company",
    "line1": "address1", "line2": "address2", "city": "city", "region": "province_code",
    "postal_code": "zip", "country": "country_code", "phone": "phone",
}
# fmt: on


def check_address(
    address: Mapping[str, str] | None, *, carrier: str | None, rules: AddressRules
) -> AddressVerdict:
    """The verdict on a shipping address for a parcel sent with ``carrier``."""
    if not address:
        problem = AddressProblem(
            AddressProblemCode.MISSING_ADDRESS, "the order has no shipping address"
        )
        return _verdict((problem,), {}, {}, po_box=False, military=False)
    given = _read_parts(address)
    if not any(given.get(part) for part in _PLACE_PARTS):
        names = ", ".join(sorted(address)) or "nothing"
        message = f"no street, city, postal code or country in the address (it has {names})"
        problem = AddressProblem(AddressProblemCode.UNPARSEABLE, message)
        return _verdict((problem,), given, {}, po_box=False, military=False)
    parts = {name: " ".join(value.split()) for name, value in given.items()}
    problems = place_problems(parts)
    military = is_military(parts)
    po_box = not military and is_po_box(parts)
    problems += _carrier_problems(parts, carrier or rules.default_carrier, rules, po_box, military)
    return _verdict(tuple(problems), given, parts, po_box=po_box, military=military)


def _verdict(
    problems: tuple[AddressProblem, ...],
    given: Mapping[str, str],
    parts: Mapping[str, str],
    *,
    po_box: bool,
    military: bool,
) -> AddressVerdict:
    changed = any(parts.get(name) != given.get(name) for name in parts)
    corrected = None
    if not problems and changed:
        corrected = {STOREFRONT_FIELDS[n]: v for n, v in parts.items() if n in STOREFRONT_FIELDS}
    return AddressVerdict(
        valid=not problems,
        problems=problems,
        po_box=po_box,
        military=military,
        corrected=corrected,
        needs_customer=bool(problems),
    )


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _read_parts(address: Mapping[str, str]) -> dict[str, str]:
    """The address's parts under the desk's names (``_SPELLINGS``); empty values are absent."""
    by_key: dict[str, str] = {}
    for name, value in address.items():
        if isinstance(value, str) and value.strip():
            by_key.setdefault(_key(str(name)), value)
    parts: dict[str, str] = {}
    for part, spellings in _SPELLINGS.items():
        found = next((by_key[s] for s in spellings if s in by_key), None)
        if found is not None:
            parts[part] = found
    return parts


def _carrier_problems(
    parts: Mapping[str, str],
    carrier: str | None,
    rules: AddressRules,
    po_box: bool,
    military: bool,
) -> list[AddressProblem]:
    problems = []
    name = carrier.strip().lower() if carrier else None
    if po_box and name in rules.po_box_forbidden_carriers:
        message = f"{name} does not deliver to a post office box: a street address is needed"
        problems.append(AddressProblem(AddressProblemCode.PO_BOX_WITH_CARRIER, message))
    if military and name in rules.military_forbidden_carriers:
        message = f"{name} does not deliver to APO/FPO/DPO addresses: the postal service does"
        problems.append(AddressProblem(AddressProblemCode.MILITARY_WITH_CARRIER, message))
    country = parts.get("country", "")
    shipped = rules.ship_to_countries
    if shipped is not None and len(country) == 2 and country not in shipped:
        message = f"the merchant does not ship to {country} (ships to {', '.join(shipped)})"
        problems.append(AddressProblem(AddressProblemCode.COUNTRY_NOT_SHIPPED, message))
    wanted = {entry.casefold() for entry in rules.require_phone_for}
    if not parts.get("phone") and wanted & {(name or "").casefold(), country.casefold()}:
        message = f"a parcel with {name or 'this carrier'} to {country} needs the phone number"
        problems.append(AddressProblem(AddressProblemCode.MISSING_PHONE, message))
    return problems


def address_rules(policy: object, params: Mapping[str, Any]) -> AddressRules:
    """The merchant's ``Policy.address`` (or the defaults) with the step's params over it."""
    base = getattr(policy, "address", None)
    rules = base if isinstance(base, AddressRules) else AddressRules()
    if not params:
        return rules
    return AddressRules.model_validate({**rules.model_dump(), **params})


def address_step(ctx: StepContext) -> StepOutcome:
    """Playbook step ``validate_address``: the verdict as the step's facts, and, when the desk
    could correct the formatting and nothing needs the customer, the corrected address sent to
    the storefront (``address_update``)."""
    from recoverydesk.services.playbook_kinds import OutsideCall, StepOutcome

    if not ctx.order.shipping_address:
        return StepOutcome(blocked="the order has no shipping address")
    try:
        rules = address_rules(ctx.policy, ctx.params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return StepOutcome(blocked=f"the step's address rules are invalid: {where}: {first['msg']}")
    verdict = check_address(ctx.order.shipping_address, carrier=ctx.order.carrier, rules=rules)
    calls: tuple[OutsideCall, ...] = ()
    if verdict.corrected is not None and not verdict.needs_customer:
        update = OutsideCall(
            system="storefront", action="address_update", params={"address": verdict.corrected}
        )
        calls = (update,)
    return StepOutcome(calls=calls, facts=verdict.as_facts())
