"""``POST /webhooks/{provider}/{merchant}``: a vendor's own payload and headers.

The signature is checked with the merchant's secrets for that provider over the raw bytes,
exactly as the vendor specifies (``connectors.signatures``); a bad or stale signature is a 401
and nothing is stored. The payload is then normalised into canonical events
(``connectors.normalize``), which are stored (with the raw body kept for audit) and folded like
any other event before the 2xx goes back. A repeated delivery is answered 2xx and stored once:
canonical ids are the vendor's own ids for each fact. A retry the vendor marks as fired long ago
(Shopify's ``X-Shopify-Triggered-At`` ...) is flagged ``stale_retry``; the fold does not depend on
arrival order, so it is stored like any other.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from recoverydesk.bootstrap import Desk
from recoverydesk.connectors import normalize as vendors
from recoverydesk.connectors.signatures import Delivery, verify
from recoverydesk.domain.errors import InvalidEvent, NotFound, PayloadTooLarge, Unauthorized
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.merchants import WEBHOOK_PROVIDERS, connectors_of
from recoverydesk.services.ports import IncomingEvent, Merchant

log = structlog.get_logger("recoverydesk.webhooks")
router = APIRouter()
STALE_AFTER = timedelta(hours=1)


@router.post(
    "/webhooks/{provider}/{merchant}",
    tags=["webhooks"],
    summary="A vendor's webhook, verified with the merchant's secret for that provider",
)
async def receive(request: Request, provider: str, merchant: str) -> dict[str, Any]:
    desk: Desk = request.app.state.desk
    if provider not in WEBHOOK_PROVIDERS:
        raise NotFound(f"no webhook provider {provider!r}", code="unknown_provider")
    body = await request.body()
    if len(body) > desk.settings.max_body_bytes:
        raise PayloadTooLarge(f"request body larger than {desk.settings.max_body_bytes} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    now = desk.clock.now()
    keys: SecretCache = request.app.state.webhook_secrets
    owner, delivery = await keys.verified(merchant, provider, headers=headers, body=body, now=now)
    payload = _decode(body)
    normalized = vendors.normalize(provider, payload, headers=headers, received_at=now)
    items = [_incoming(raw, owner, body) for raw in normalized.events]
    stale = delivery.triggered_at is not None and now - delivery.triggered_at > STALE_AFTER
    answer: dict[str, Any] = {
        "provider": provider,
        "delivery": delivery.delivery_id,
        "stale_retry": stale,
    }
    if not items:
        log.info("webhook without an order exception", provider=provider, merchant=merchant)
        return {**answer, "stored": 0, "duplicates": 0, "reason": normalized.not_an_exception}
    report = await asyncio.wrap_future(desk.ingest_grouped(owner, items))
    if stale:
        log.info("stale webhook retry", provider=provider, delivery=delivery.delivery_id)
    return {**answer, "stored": report.stored, "duplicates": report.duplicates}


class SecretCache:
    """The merchants' webhook secrets, read at most every ``ttl`` seconds per merchant and
    provider, so a delivery costs no database read before its signature is checked. A delivery
    that fails against cached secrets is checked once more against freshly read ones, so a secret
    rotated a moment ago is accepted at once; a revoked one stops working within ``ttl``."""

    def __init__(self, desk: Desk, ttl: float = 5.0) -> None:
        self._desk = desk
        self._ttl = ttl
        self._known: dict[tuple[str, str], tuple[float, _Keys]] = {}

    async def verified(
        self, merchant: str, provider: str, *, headers: dict[str, str], body: bytes, now: datetime
    ) -> tuple[Merchant, Delivery]:
        cached = self._known.get((merchant, provider))
        fresh = cached is None or time.monotonic() - cached[0] > self._ttl
        keys = await self._read(merchant, provider) if fresh or cached is None else cached[1]
        try:
            return keys[0], _verify(provider, keys, headers, body, now)
        except Unauthorized:
            if fresh:
                raise
        keys = await self._read(merchant, provider)
        return keys[0], _verify(provider, keys, headers, body, now)

    async def _read(self, merchant: str, provider: str) -> _Keys:
        self._known.pop((merchant, provider), None)
        keys = await run_in_threadpool(_secrets_of, self._desk, merchant, provider)
        self._known[(merchant, provider)] = (time.monotonic(), keys)
        return keys


_Keys = tuple[Merchant, list[str], timedelta]


def _verify(
    provider: str, keys: _Keys, headers: dict[str, str], body: bytes, now: datetime
) -> Delivery:
    _, secrets, tolerance = keys
    return verify(
        provider, headers=headers, body=body, secrets=secrets, now=now, tolerance=tolerance
    )


def _secrets_of(desk: Desk, name: str, provider: str) -> _Keys:
    """The merchant and its secrets for the provider. An unknown merchant and a provider it has
    no secret for are both 401: nothing is stored without a signature the desk can check."""
    with desk.reader() as uow:
        merchant = uow.merchants.by_name(name)
        if merchant is None:
            raise Unauthorized(f"no merchant {name!r} takes webhooks here", code="unknown_merchant")
        source = connectors_of(uow, merchant).webhooks.get(provider)
    secrets = source.secret_values(os.environ) if source else []
    if source is None or not secrets:
        raise Unauthorized(
            f"merchant {name!r} has no {provider} webhook secret configured",
            code="no_webhook_secret",
        )
    return merchant, secrets, source.tolerance


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as error:
        raise InvalidEvent(f"body: not JSON ({error})") from None


def _incoming(raw: dict[str, Any], merchant: Merchant, body: bytes) -> IncomingEvent:
    event = parse_event({**raw, "merchant": merchant.name})
    return IncomingEvent(event, body.decode("utf-8", errors="replace"))
