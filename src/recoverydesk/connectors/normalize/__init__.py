"""Vendor payloads to canonical events: one module per vendor, one entry point.

``normalize(provider, payload, headers=…)`` turns what a vendor sends (a webhook body, or the
same resource as its API returns it) into canonical event dicts (CONTRACT.md), each already
checked with ``services.canonical.parse_event``, or says in one sentence why the payload means
nothing for an order desk. Each vendor module documents which field is the order reference and
how event ids are built (``<source>:<the vendor's stable id of the fact>``, so a redelivery
dedupes).

Errors: an unknown provider is ``NotFound(code="unknown_provider")``; a payload that is not what
the vendor sends is ``InvalidEvent`` (never a KeyError or TypeError).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import InvalidOperation
from typing import Any

from recoverydesk.connectors.normalize import (
    adyen,
    aftership,
    amazon,
    easypost,
    freshdesk,
    magento,
    shopify,
    stripe,
    wms,
    woocommerce,
    zendesk,
)
from recoverydesk.connectors.normalize._common import RECEIVED, Normalized
from recoverydesk.domain.errors import InvalidEvent, NotFound
from recoverydesk.services.canonical import parse_event

__all__ = ["PROVIDERS", "Normalized", "normalize"]

Normalizer = Callable[[Any, Mapping[str, str]], Normalized]
_NORMALIZERS: dict[str, Normalizer] = {
    "shopify": shopify.normalize,
    "woocommerce": woocommerce.normalize,
    "stripe": stripe.normalize,
    "adyen": adyen.normalize,
    "aftership": aftership.normalize,
    "easypost": easypost.normalize,
    "wms": wms.normalize,
    "magento": magento.normalize,
    "amazon": amazon.normalize,
    "zendesk": zendesk.normalize,
    "freshdesk": freshdesk.normalize,
}
PROVIDERS: frozenset[str] = frozenset(_NORMALIZERS)


def normalize(
    provider: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
) -> Normalized:
    """The canonical events one vendor payload becomes (nothing is stored). A fact the payload
    does not date is dated ``received_at`` (the wall clock when not given: the CLI)."""
    normalizer = _NORMALIZERS.get(provider)
    if normalizer is None:
        known = ", ".join(sorted(PROVIDERS))
        raise NotFound(f"unknown provider {provider!r}; known: {known}", code="unknown_provider")
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    try:
        result = normalizer(payload, lowered)
    except InvalidEvent:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, InvalidOperation) as error:
        raise InvalidEvent(f"{provider} payload not understood: {error!r}") from None
    stamp = (received_at or datetime.now(UTC)).isoformat()
    for item in result.events:
        if item.get("occurred_at") == RECEIVED:
            item["occurred_at"] = stamp
    for index, item in enumerate(result.events):
        try:
            parse_event(item)
        except InvalidEvent as error:
            raise InvalidEvent(f"{provider} payload, event {index}: {error.message}") from None
    if not result.events and not result.not_an_exception:
        return Normalized(events=[], not_an_exception=f"the {provider} payload holds no order fact")
    return result
