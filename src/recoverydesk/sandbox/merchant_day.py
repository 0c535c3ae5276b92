"""The sandbox merchant plays its day through the vendors.

``traffic.generate_orders`` says what happens to the merchant's orders as canonical events. Fed to
the desk directly, they arrive already digested. A ``MerchantDay`` instead *does* each of them in
the emulator of the system that owns that fact, so the desk learns it as in production: a signed
webhook in the vendor's own shape, read by that vendor's normalizer.

``ROUTES`` is the whole mapping, by the traffic event's source and type (anything else is
ingested directly, as before):

==========================================  ====================================================
traffic event                               what the merchant does (the desk then receives)
==========================================  ====================================================
shopify ``order.placed``                    Shopify ``add_order``: the order is known by the
                                            Shopify order id from now on (``orders/create``);
                                            the facts Shopify cannot carry (fulfilment type,
                                            ship-by, promised-by, customer tier) go directly,
                                            as an ``order.updated`` from ``import``
any ``order.placed``                        a Stripe PaymentIntent awaiting payment (web
                                            orders), ``metadata[order_ref]`` the desk's ref; the
                                            3PL's copy of a warehouse order (nothing is sent)
shopify ``order.updated`` (a new address)   Shopify ``orderUpdate`` (``orders/updated``)
shopify ``hold.placed`` (fraud, address)    Shopify ``place_hold`` (``.../placed_on_hold``)
shopify ``hold.released``                   Shopify ``fulfillmentOrderReleaseHold``
shopify ``order.cancelled``                 Shopify ``orderCancel`` (``orders/cancelled``)
psp ``payment.authorized`` / ``.failed``    Stripe ``confirm_payment`` / ``fail_payment``
psp ``payment.captured|voided|refunded``    Stripe API capture / cancel / refund
psp ``dispute.opened``                      Stripe ``open_dispute`` (``charge.dispute.created``)
wms ``fulfillment.released ... shipped``    3PL ``set_status`` (the 3PL's ``wms`` webhook)
wms ``fulfillment.shipped``                 also an AfterShip tracking, scripted with what the
                                            traffic's carrier later says of that parcel
carrier ``delivery.exception|delivered``    nothing: the tracking's script plays it, at its time
==========================================  ====================================================

A vendor that cannot do it (an order placed before the day, so unknown to Shopify; a
PaymentIntent not in a state for it; a parcel shipped before the day) leaves the event to be
ingested directly. Payments are Stripe's only: Shopify's own transaction topics are not
subscribed. Zendesk gets nothing: its normalizer reads a ticket as ``ticket.created``, never as a
cancel request, so a customer's ``cancel.requested`` goes directly.

Time: the emulators run on a ``DayClock`` that reads the event's time while the merchant does it,
so the vendors' facts carry the traffic's times. Before each event, every webhook due by its time
is delivered, so the desk receives the day in the traffic's order.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import structlog

from recoverydesk.sandbox.aftership_emulator import (
    DAMAGED,
    DELIVERED,
    FAILED_ATTEMPT,
    LOST,
    RETURNED,
    Step,
)
from recoverydesk.sandbox.threepl_emulator import STATUSES, AckBehaviour
from recoverydesk.sandbox.vendors import DayClock, Delivered, VendorRefused, Vendors
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent

__all__ = ["ROUTES", "MerchantDay", "Tally"]

log = structlog.get_logger("recoverydesk.merchant_day")
HOLD_REASONS = {"fraud": "HIGH_RISK_OF_FRAUD", "address": "INCORRECT_ADDRESS"}
CANCEL_REASONS = {"fraud": "FRAUD", "customer_request": "CUSTOMER", "payment_declined": "DECLINED"}
CANCEL_REASONS |= {"stockout": "INVENTORY", "duplicate_order": "STAFF", "price_error": "STAFF"}
DECLINES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}
DISPUTE_REASONS = {"not_as_described": "product_unacceptable"}  # Stripe's word for it
CARRIER_STEPS = {  # the step each carrier fact is in the emulator's scripts (timed by the traffic)
    "delivered": DELIVERED[-1],
    "lost": LOST[-1],
    "damaged": DAMAGED[-1],
    "returned_to_sender": RETURNED[-1],
    "failed_attempt": FAILED_ATTEMPT[-1],
    "delay": Step(timedelta(0), "Exception", "Exception_005", "Delayed by external factors"),
}
IN_TRANSIT = DELIVERED[:3]  # information received, picked up, departed
PROMISE = ("fulfillment_type", "ship_by", "promised_by")  # the merchant's facts Shopify lacks
WAREHOUSED = ("3pl", "in_house")  # fulfilment types whose orders the warehouse holds


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))


def _cents(amount: object) -> int:
    return int(Decimal(str(amount)) * 100)


@dataclass
class _Order:
    """What the vendors hold of one of the traffic's orders."""

    ref: str  # the desk's: the Shopify order id for a Shopify order, else the traffic's
    in_shopify: bool = False
    intent: str | None = None  # its Stripe PaymentIntent
    at_warehouse: bool = False  # the 3PL has it, under ``ref``


@dataclass
class Tally:
    """How the day went: event types done in a vendor or ingested directly, the ones a vendor
    could not take, and the webhooks the desk took (2xx) or not, by provider."""

    through: Counter[str] = field(default_factory=Counter)
    direct: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    refused: deque[Delivered] = field(default_factory=lambda: deque(maxlen=100))  # the latest


Route = Callable[["MerchantDay", dict[str, Any]], bool]


class MerchantDay:
    """Plays the traffic's events in the vendors (``ROUTES``) or directly (``ingest``).

    ``stream`` is the whole traffic, read ahead for what a carrier will say of each parcel (an
    AfterShip tracking is scripted when it is created) and for which orders the warehouse
    ships (besides its own fulfilment types); ``answers`` are the 3PL's stop-ship answers by
    the traffic's order ref."""

    def __init__(
        self,
        vendors: Vendors,
        *,
        clock: DayClock,
        stream: Sequence[dict[str, Any]],
        ingest: Callable[[list[IncomingEvent]], object],
        answers: Mapping[str, AckBehaviour] | None = None,
    ) -> None:
        self.vendors, self.clock, self.tally = vendors, clock, Tally()
        self._ingest, self._answers = ingest, dict(answers or {})
        self._orders: dict[str, _Order] = {}
        self._tracked: set[str] = set()
        self._stories: dict[str, list[dict[str, Any]]] = {}
        for event in stream:
            if event["source"] == "carrier" and event.get("data", {}).get("tracking"):
                self._stories.setdefault(str(event["data"]["tracking"]), []).append(event)
        self._warehoused = {str(e["order"]["ref"]) for e in stream if e["source"] == "wms"}
        self._lock = threading.RLock()

    def desk_ref(self, ref: str) -> str:
        """The ref the desk knows the traffic's order ``ref`` by."""
        order = self._orders.get(ref)
        return order.ref if order is not None else ref

    def adopt(self, ref: str, *, intent: str | None = None, at_warehouse: bool = False) -> None:
        """An order placed before the day (the desk knows it by the traffic's ref) whose
        PaymentIntent and warehouse copy the sandbox seeded."""
        self._orders[ref] = _Order(ref, intent=intent, at_warehouse=at_warehouse)

    def play(self, events: Iterable[dict[str, Any]]) -> None:
        """Each event, in time order, done in its vendor or ingested directly; the webhooks due
        by its time are delivered first."""
        with self._lock:
            for event in events:
                at = _at(event)
                self._deliver(at)
                self._do(event, at)

    def deliver_due(self, now: datetime | None = None) -> None:
        """Send every vendor's due webhooks (the demo's pump)."""
        with self._lock:
            self._deliver(now or self.clock.now())

    def _do(self, event: dict[str, Any], at: datetime) -> None:
        route = ROUTES.get((str(event["source"]), str(event["type"])))
        done = False
        try:
            with self.clock.at(at):
                done = route is not None and route(self, event)
        except (VendorRefused, ValueError, httpx.HTTPError) as error:
            log.warning("vendor did not take it", event_id=event["id"], error=str(error))
            self.tally.fallbacks[str(event["type"])] += 1
        if done:
            self.tally.through[str(event["type"])] += 1
        else:
            self._direct(event)

    def _direct(self, event: dict[str, Any]) -> None:
        self.tally.direct[str(event["type"])] += 1
        ref = self.desk_ref(str(event["order"]["ref"]))
        moved = {**event, "order": {**event["order"], "ref": ref}}
        self._ingest([IncomingEvent(parse_event(moved), json.dumps(moved))])

    def _deliver(self, now: datetime) -> None:
        for provider, results in self.vendors.deliver_due(now).items():
            for result in results:
                if result.ok:
                    self.tally.delivered[provider] += 1
                else:
                    self.tally.refused.append(result)
                    log.warning("desk refused a webhook", provider=provider, result=str(result))

    def _order(self, event: Mapping[str, Any]) -> _Order | None:
        return self._orders.get(str(event["order"]["ref"]))

    # -- orders ---------------------------------------------------------------------------------

    def _open(self, event: dict[str, Any], ref: str) -> _Order:
        """The order's PaymentIntent (web orders pay through Stripe) and warehouse copy."""
        facts = event["order"]
        order = self._orders[str(facts["ref"])] = _Order(ref)
        if facts.get("channel") != "amazon":
            intent = self.vendors.stripe.emulator.create_payment_intent(
                _cents(facts["value"]),
                str(facts.get("currency") or "USD").lower(),
                capture=False,
                confirm=False,
                metadata={"order_ref": ref},
            )
            order.intent = str(intent["id"])
        warehouse, kind = self.vendors.warehouse, facts.get("fulfillment_type")
        if warehouse is not None and (kind in WAREHOUSED or facts["ref"] in self._warehoused):
            lines: dict[str, int] = {}
            for line in facts.get("lines") or []:
                lines[str(line["sku"])] = lines.get(str(line["sku"]), 0) + int(line["qty"])
            answer = self._answers.get(str(facts["ref"]))
            warehouse.add_order(ref, status="not_released", lines=lines, ack=answer)
            order.at_warehouse = True
        return order

    def _place_in_shopify(self, event: dict[str, Any]) -> bool:
        facts = event["order"]
        lines = [(str(ln["sku"]), int(ln["qty"]), str(ln["price"])) for ln in facts["lines"]]
        number = self.vendors.shopify.emulator.add_order(
            paid=str(facts["value"]),
            currency=str(facts.get("currency") or "USD"),
            lines=lines,
            email=str(facts.get("customer", {}).get("email") or "customer@example.com"),
        )
        self._open(event, number).in_shopify = True
        self._deliver(_at(event))  # orders/create, then what Shopify cannot say
        promise = {k: facts[k] for k in PROMISE if facts.get(k)}
        if facts.get("customer", {}).get("tier"):
            promise["customer"] = {"tier": facts["customer"]["tier"]}
        if promise:
            self._direct(
                {
                    **event,
                    "id": f"import:{event['id']}:promise",
                    "source": "import",
                    "type": "order.updated",
                    "order": {"ref": facts["ref"], **promise},
                    "data": {},
                }
            )
        return True

    def _place_elsewhere(self, event: dict[str, Any]) -> bool:
        self._open(event, str(event["order"]["ref"]))
        return False  # the channel itself is ingested directly

    def _readdress(self, event: dict[str, Any]) -> bool:
        order, address = self._order(event), event["order"].get("shipping_address")
        if order is None or not order.in_shopify or not address:
            return False
        given = {
            "address1": address.get("line1"),
            "city": address.get("city"),
            "provinceCode": address.get("region"),
            "zip": address.get("postal_code"),
            "countryCode": address.get("country"),
        }
        self.vendors.shopify_graphql(
            ORDER_UPDATE, {"input": {"id": _gid(order.ref), "shippingAddress": given}}
        )
        return True

    def _hold(self, event: dict[str, Any]) -> bool:
        order, reason = self._order(event), HOLD_REASONS.get(str(event["data"]["hold_type"]))
        if order is None or not order.in_shopify or reason is None:
            return False
        notes = event["data"].get("reason")
        return bool(self.vendors.shopify.emulator.place_hold(order.ref, reason, notes=notes))

    def _release(self, event: dict[str, Any]) -> bool:
        order = self._order(event)
        if order is None or not order.in_shopify:
            return False
        held = [
            fo.id
            for fo in self.vendors.shopify.emulator.fulfillment_orders_of(order.ref)
            if fo.status == "ON_HOLD"
        ]
        for fo_id in held:
            self.vendors.shopify_graphql(RELEASE_HOLD, {"id": fo_id})
        return bool(held)

    def _cancel(self, event: dict[str, Any]) -> bool:
        order = self._order(event)
        if order is None or not order.in_shopify:
            return False
        reason = CANCEL_REASONS.get(str(event["data"].get("reason")), "OTHER")
        variables = {"orderId": _gid(order.ref), "reason": reason, "refund": False}
        self.vendors.shopify_graphql(ORDER_CANCEL, {**variables, "restock": True})
        return True

    # -- payments -------------------------------------------------------------------------------

    def _intent(self, event: Mapping[str, Any]) -> str | None:
        order = self._order(event)
        return order.intent if order is not None else None

    def _authorize(self, event: dict[str, Any]) -> bool:
        intent = self._intent(event)
        if intent is not None:
            self.vendors.stripe.emulator.confirm_payment(intent)
        return intent is not None

    def _decline(self, event: dict[str, Any]) -> bool:
        intent, why = self._intent(event), str(event["data"].get("reason") or "card_declined")
        if intent is not None:
            message = DECLINES.get(why, "Your card was declined.")
            self.vendors.stripe.emulator.fail_payment(intent, decline_code=why, message=message)
        return intent is not None

    def _capture(self, event: dict[str, Any]) -> bool:
        intent = self._intent(event)
        if intent is not None:
            self.vendors.stripe_post(f"/v1/payment_intents/{intent}/capture")
        return intent is not None

    def _void(self, event: dict[str, Any]) -> bool:
        intent = self._intent(event)
        if intent is not None:
            self.vendors.stripe_post(f"/v1/payment_intents/{intent}/cancel")
        return intent is not None

    def _refund(self, event: dict[str, Any]) -> bool:
        intent, ref = self._intent(event), self.desk_ref(str(event["order"]["ref"]))
        if intent is not None:
            amount = str(_cents(event["data"]["amount"]))
            refund = {"payment_intent": intent, "amount": amount, "metadata[order_ref]": ref}
            self.vendors.stripe_post("/v1/refunds", refund)
        return intent is not None

    def _dispute(self, event: dict[str, Any]) -> bool:
        intent, claim = self._intent(event), event["data"]
        if intent is None:
            return False
        due = _at({"occurred_at": claim.get("due_by") or event["occurred_at"]})
        self.vendors.stripe.emulator.open_dispute(
            intent,
            reason=DISPUTE_REASONS.get(str(claim["reason"]), str(claim["reason"])),
            amount=_cents(claim["amount"]),
            due_in_days=max((due - _at(event)).days, 0),  # Stripe: the end of that day
            metadata={"order_ref": self.desk_ref(str(event["order"]["ref"]))},
        )
        return True

    # -- the warehouse and the carrier -----------------------------------------------------------

    def _progress(self, event: dict[str, Any]) -> bool:
        """The 3PL moves its copy on (and says so), unless it is there already or stopped (a
        hold or cancel the desk sent it holds)."""
        order, warehouse = self._order(event), self.vendors.warehouse
        if order is None or not order.at_warehouse or warehouse is None:
            return False
        status, there = str(event["type"]).split(".", 1)[1], warehouse.order(order.ref)
        if there is None or there["held"] or there["cancelled"]:
            return False
        if STATUSES.index(status) <= STATUSES.index(str(there["status"])):
            return False
        warehouse.set_status(order.ref, status)
        return True

    def _ship(self, event: dict[str, Any]) -> bool:
        tracking, carrier = event["data"].get("tracking"), event["data"].get("carrier")
        if tracking and carrier and str(tracking) not in self._tracked:
            story = self._stories.get(str(tracking), [])
            self.vendors.aftership.emulator.add_tracking(
                str(tracking),
                str(carrier),
                order_id=self.desk_ref(str(event["order"]["ref"])),
                script=_script(_at(event), story),
            )
            self._tracked.add(str(tracking))
        return self._progress(event)

    def _scripted(self, event: dict[str, Any]) -> bool:
        """A carrier fact of a parcel AfterShip tracks: its script plays it."""
        return str(event["data"].get("tracking")) in self._tracked


def _script(shipped_at: datetime, story: Sequence[dict[str, Any]]) -> tuple[Step, ...]:
    """A tracking's carrier scans: in transit, then each of the traffic's carrier facts of the
    parcel at its time (an exception, a delivery)."""
    steps = [
        replace(
            CARRIER_STEPS[
                "delivered" if e["type"] == "fulfillment.delivered" else e["data"]["kind"]
            ],
            after=_at(e) - shipped_at,
        )
        for e in story
        if _at(e) > shipped_at
    ]
    first = steps[0].after if steps else None
    return (*(s for s in IN_TRANSIT if first is None or s.after < first), *steps)


def _gid(number: str) -> str:
    return f"gid://shopify/Order/{number}"


ORDER_UPDATE = """mutation Update($input: OrderInput!) {
  orderUpdate(input: $input) { order { id } userErrors { field message } } }"""
RELEASE_HOLD = """mutation Release($id: ID!) {
  fulfillmentOrderReleaseHold(id: $id) { fulfillmentOrder { id } userErrors { field message } } }"""
ORDER_CANCEL = """mutation Cancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!,
    $restock: Boolean!) {
  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock) {
    job { id } orderCancelUserErrors { field message code } } }"""

ROUTES: dict[tuple[str, str], Route] = {
    ("shopify", "order.placed"): MerchantDay._place_in_shopify,
    ("woocommerce", "order.placed"): MerchantDay._place_elsewhere,
    ("amazon", "order.placed"): MerchantDay._place_elsewhere,
    ("shopify", "order.updated"): MerchantDay._readdress,
    ("shopify", "hold.placed"): MerchantDay._hold,
    ("shopify", "hold.released"): MerchantDay._release,
    ("shopify", "order.cancelled"): MerchantDay._cancel,
    ("psp", "payment.authorized"): MerchantDay._authorize,
    ("psp", "payment.failed"): MerchantDay._decline,
    ("psp", "payment.captured"): MerchantDay._capture,
    ("psp", "payment.voided"): MerchantDay._void,
    ("psp", "payment.refunded"): MerchantDay._refund,
    ("psp", "dispute.opened"): MerchantDay._dispute,
    ("wms", "fulfillment.released"): MerchantDay._progress,
    ("wms", "fulfillment.picking"): MerchantDay._progress,
    ("wms", "fulfillment.packed"): MerchantDay._progress,
    ("wms", "fulfillment.shipped"): MerchantDay._ship,
    ("carrier", "fulfillment.delivered"): MerchantDay._scripted,
    ("carrier", "delivery.exception"): MerchantDay._scripted,
}
