"""The sandbox merchant's vendor accounts: Shopify, Stripe, AfterShip and Zendesk emulators served
on loopback ports, on one clock, their webhooks aimed at the merchant on a desk (with the
merchant's 3PL emulator, when it has one). ``merchant_day`` plays the traffic through them.

Each account is subscribed to the webhooks the desk reads: Shopify's order, fulfilment-order and
hold topics but not its transactions (the merchant's payments are Stripe's, and a second report
of the same money under another id would count it twice). A ``Subscription`` can be paused: what
a vendor does meanwhile sends nothing (the sandbox seeding a past the desk ingests directly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from recoverydesk.sandbox import threepl_emulator
from recoverydesk.sandbox.aftership_emulator import (
    AfterShipEmulator,
    RunningAfterShip,
    running_aftership_emulator,
)
from recoverydesk.sandbox.shopify_emulator import (
    TEST_TOKEN,
    RunningShopify,
    running_shopify_emulator,
)
from recoverydesk.sandbox.stripe_emulator import TEST_KEY, RunningEmulator, running_stripe_emulator
from recoverydesk.sandbox.threepl_emulator import ThreePLEmulator
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox
from recoverydesk.sandbox.zendesk_emulator import RunningZendesk, ZendeskEmulator, serve_zendesk

__all__ = ["PROVIDERS", "DayClock", "Delivered", "VendorRefused", "Vendors", "serve_vendors"]

PROVIDERS = ("shopify", "stripe", "aftership", "zendesk", "wms")  # the desk's webhook secrets
SHOPIFY_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/cancelled",
        "fulfillment_orders/placed_on_hold",
        "fulfillment_orders/hold_released",
        "fulfillment_orders/cancellation_request_accepted",
        "fulfillment_orders/cancellation_request_rejected",
    }
)
GRAPHQL = "/admin/api/2026-01/graphql.json"
Delivered = DeliveryResult | threepl_emulator.DeliveryResult


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class VendorRefused(Exception):
    """A vendor's API said no (an error status, Shopify ``userErrors``)."""


class DayClock:
    """The vendors' clock: the time of the fact being played (``at``), else ``fallback``."""

    def __init__(self, fallback: Callable[[], datetime] = _wall_clock) -> None:
        self._fallback = fallback
        self._at: datetime | None = None

    def now(self) -> datetime:
        moment = self._at
        return moment if moment is not None else self._fallback()

    @contextmanager
    def at(self, moment: datetime) -> Iterator[None]:
        self._at = moment
        try:
            yield
        finally:
            self._at = None


class Subscription(WebhookOutbox):
    """A vendor's webhook subscription to the desk; while ``paused`` nothing is queued."""

    paused = False

    def put(
        self,
        delivery_id: str,
        topic: str,
        body: Mapping[str, Any] | bytes,
        *,
        due_at: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not self.paused:
            super().put(delivery_id, topic, body, due_at=due_at, headers=headers)


@dataclass(frozen=True)
class Vendors:
    """The running accounts, and the two API calls the merchant makes over HTTP."""

    shopify: RunningShopify
    stripe: RunningEmulator
    aftership: RunningAfterShip
    zendesk: RunningZendesk
    subscriptions: tuple[Subscription, ...]
    http: httpx.Client
    warehouse: ThreePLEmulator | None = None

    def urls(self) -> dict[str, str]:
        return {
            "Shopify": self.shopify.base_url,
            "Stripe": self.stripe.base_url,
            "AfterShip": self.aftership.base_url,
            "Zendesk": self.zendesk.base_url,
        }

    def deliver_due(self, now: datetime) -> dict[str, list[Delivered]]:
        """Every account's webhooks due by ``now``, sent to the desk; the results by provider."""
        sent: dict[str, list[Delivered]] = {
            "shopify": list(self.shopify.emulator.deliver_due(now)),
            "stripe": list(self.stripe.emulator.deliver_due(now)),
        }
        if self.warehouse is not None:
            sent["wms"] = list(self.warehouse.deliver_due(now))
        sent["aftership"] = list(self.aftership.emulator.deliver_due(now))
        sent["zendesk"] = list(self.zendesk.emulator.deliver_due(now))
        return sent

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """What Shopify, Stripe and Zendesk do inside the block sends no webhook."""
        for subscription in self.subscriptions:
            subscription.paused = True
        try:
            yield
        finally:
            for subscription in self.subscriptions:
                subscription.paused = False

    def shopify_graphql(self, query: str, variables: dict[str, Any]) -> None:
        """One Admin GraphQL mutation; ``VendorRefused`` on errors or ``userErrors``."""
        answer = self.http.post(
            self.shopify.base_url + GRAPHQL,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": TEST_TOKEN},
        )
        body: dict[str, Any] = answer.json() if answer.is_success else {"errors": answer.text}
        payload: dict[str, Any] = next(iter((body.get("data") or {}).values()), {}) or {}
        if body.get("errors") or payload.get("userErrors"):
            raise VendorRefused(f"Shopify: {body.get('errors') or payload['userErrors']}")

    def stripe_post(self, path: str, data: dict[str, str] | None = None) -> None:
        """One Stripe API call (form-encoded); ``VendorRefused`` unless it succeeds."""
        answer = self.http.post(
            self.stripe.base_url + path,
            data=data,
            headers={"Authorization": f"Bearer {TEST_KEY}"},
        )
        if not answer.is_success:
            raise VendorRefused(f"Stripe {path}: {answer.status_code} {answer.text[:200]}")


@contextmanager
def serve_vendors(
    *,
    desk_url: str,
    merchant: str,
    secrets: Mapping[str, str],
    clock: DayClock,
    warehouse: ThreePLEmulator | None = None,
    http: httpx.Client | None = None,
) -> Iterator[Vendors]:
    """The accounts on ``clock``, served while the block runs, their webhooks aimed at
    ``merchant`` on the desk (``secrets`` by provider); ``warehouse`` (a 3PL emulator the caller
    serves and aims) joins them. ``http`` is the client every webhook and API call shares (one is
    made when not given: a client per call costs a TLS context each)."""
    with ExitStack() as stack:
        client = http or stack.enter_context(httpx.Client(timeout=10.0))
        outboxes = {
            name: Subscription(name, clock=clock.now, http=client)
            for name in ("shopify", "stripe", "zendesk")
        }
        for name, outbox in outboxes.items():
            outbox.aim(desk_url, merchant, secrets[name])
        carrier = AfterShipEmulator(
            desk_url=desk_url,
            merchant=merchant,
            secret=secrets["aftership"],
            clock=clock.now,
            http=client,
        )
        shop = stack.enter_context(
            running_shopify_emulator(webhooks=outboxes["shopify"], clock=clock.now)
        )
        shop.emulator.topics = set(SHOPIFY_TOPICS)
        psp = stack.enter_context(
            running_stripe_emulator(outbox=outboxes["stripe"], clock=clock.now)
        )
        helpdesk = ZendeskEmulator(outbox=outboxes["zendesk"], clock=clock.now)
        yield Vendors(
            shopify=shop,
            stripe=psp,
            aftership=stack.enter_context(running_aftership_emulator(carrier)),
            zendesk=stack.enter_context(serve_zendesk(helpdesk)),
            subscriptions=tuple(outboxes.values()),
            http=client,
            warehouse=warehouse,
        )
