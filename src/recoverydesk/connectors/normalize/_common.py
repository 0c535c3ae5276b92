"""Shared helpers of the vendor normalizers: strict reading of untrusted JSON, money, times."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from recoverydesk.domain.errors import InvalidEvent


@dataclass(frozen=True, slots=True)
class Normalized:
    """What one vendor payload becomes: canonical event dicts, or why it is no order exception."""

    events: list[dict[str, Any]] = field(default_factory=list)
    not_an_exception: str | None = None  # the reason, in one sentence, when ``events`` is empty


def skip(reason: str) -> Normalized:
    return Normalized(events=[], not_an_exception=reason)


def as_map(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def as_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidEvent(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def text(value: object) -> str | None:
    """A non-empty string form of a scalar (ids arrive as numbers or strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, int | Decimal | float):
        return str(value)
    return None


def need(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = text(obj.get(key))
    if value is None:
        raise InvalidEvent(f"{what}: missing {key!r}")
    return value


def money(value: object, what: str) -> str:
    """A decimal string in major units from a vendor's string or number."""
    if isinstance(value, bool) or value is None:
        raise InvalidEvent(f"{what}: missing amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidEvent(f"{what}: {value!r} is not an amount") from None
    if not amount.is_finite():
        raise InvalidEvent(f"{what}: {value!r} is not an amount")
    return f"{abs(amount):f}"


# ISO 4217 currencies whose minor unit is not 1/100 (Stripe and Adyen send minor units).
_ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
_THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])


def minor_units(value: object, currency: str, what: str) -> str:
    """Minor units (an integer) to a decimal string in major units, e.g. 1099 USD -> 10.99."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{what}: the amount must be an integer of minor units")
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    return f"{abs(Decimal(value).scaleb(-exponent)):f}"


def currency(value: object) -> str | None:
    code = text(value)
    return code.upper() if code and re.fullmatch(r"[A-Za-z]{3}", code) else None


def iso(value: object, what: str, *, naive_is_utc: bool = False) -> str:
    """An ISO 8601 time with a zone from an ISO string or a Unix timestamp."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    raw = text(value)
    if raw is None:
        raise InvalidEvent(f"{what}: missing time")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{what}: {raw!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise InvalidEvent(f"{what}: {raw!r} has no time zone")
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def aware(value: object) -> str | None:
    """An ISO time when ``value`` is one with a zone, else None (for optional facts)."""
    try:
        return iso(value, "time")
    except InvalidEvent:
        return None


RECEIVED = "received"  # stands for the moment the payload was received (``normalize`` fills it)


def now_iso() -> str:
    """The time of a fact the payload does not date: when the desk received it. The caller of
    ``normalize`` says when that was (the desk's injected clock), so the vendor modules never
    read the wall clock."""
    return RECEIVED


def compact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None, empty strings and empty containers (canonical events omit unknown facts)."""
    return {k: v for k, v in obj.items() if v is not None and v not in ("", [], {})}


def event(
    *,
    id: str,
    source: str,
    type: str,
    occurred_at: str,
    order: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "source": source,
        "type": type,
        "occurred_at": occurred_at,
        "order": compact(order),
        "data": compact(data or {}),
    }


def clip(value: str | None, limit: int = 200) -> str | None:
    return value[:limit] if value else value
