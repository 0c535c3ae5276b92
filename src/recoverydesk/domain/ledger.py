"""The refund ledger: what the desk may still refund or void on an order, and why not.

The money rules of STOPSHIP.md, as pure functions over the order 360 (captures and refunds the
source systems reported, by capture and refund id) and the desk's own ledger entries:

- refunds never exceed captures: a request reserves its amount (``pending``) before it is sent,
  and the balance a second request sees is what was captured, less every refund reported, less
  every desk refund sent and not yet reported, less every pending reservation;
- one intent, one refund: an entry's ``key`` is derived from the intent (case or cancellation,
  action, amount) and is unique in the database; a second request for the same intent gets the
  entry that exists;
- a refund made elsewhere (storefront admin, helpdesk app, PSP dashboard) is learned from its
  ``payment.refunded`` event; ``reconcile`` matches each reported refund to the desk entry it
  confirms (by the provider's reference, or by the idempotency key in ``data.intent``) and
  counts the rest as refunded elsewhere, so the desk never refunds that amount again. A report
  that names neither is never taken for the desk's own on its amount alone: counting a refund
  twice makes the desk refund too little (visible, fixable), counting it once when it happened
  twice would make it refund too much;
- void only an uncaptured authorization, refund only a captured payment.

Persistence adds what a pure function cannot: the unique key, and a lock on the order row held
while a reservation is checked and written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from recoverydesk.domain.errors import Conflict
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.orders import OrderView


class EntryKind(StrEnum):
    REFUND = "refund"
    VOID = "void"
    REDUCE_AUTHORIZATION = "reduce_authorization"


class EntryStatus(StrEnum):
    PENDING = "pending"  # reserved, not yet answered by the provider
    SENT = "sent"  # the provider accepted it; no event has reported it yet
    CONFIRMED = "confirmed"  # an event from the source system reported it
    REFUSED = "refused"  # the provider refused it; the reservation is released
    SKIPPED = "skipped"  # not sent: the money was refunded elsewhere before it went out

    @property
    def holds_money(self) -> bool:
        return self in (EntryStatus.PENDING, EntryStatus.SENT, EntryStatus.CONFIRMED)


class LedgerRefusal(Conflict):
    """The ledger forbids the payment action; ``code`` says which rule."""


@dataclass(slots=True)
class LedgerEntry:
    order_ref: str
    kind: EntryKind
    key: str
    amount: Decimal
    currency: str
    actor: str
    created_at: datetime
    status: EntryStatus = EntryStatus.PENDING
    case_id: int | None = None
    cancellation_id: int | None = None
    reference: str | None = None  # the provider's id (a refund id)
    confirmed_by: str | None = None  # the refund id of the event that reported it
    detail: dict[str, str] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """A refund the source systems reported (``payment.refunded``), by refund id."""

    refund_id: str
    amount: Decimal
    intent: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """The order's money as the ledger sees it after ``reconcile``."""

    authorized: Decimal
    captured: Decimal
    voided: bool
    refunded_reported: Decimal  # every refund an event reported (desk's and elsewhere)
    refunded_elsewhere: Decimal
    elsewhere: tuple[Reported, ...]
    sent_unreported: Decimal  # desk refunds the provider accepted, not yet reported
    pending: Decimal  # reservations not yet answered

    @property
    def refunded(self) -> Decimal:
        return self.refunded_reported + self.sent_unreported

    @property
    def refundable(self) -> Decimal:
        """What a new refund may still take: captured less refunded less reserved."""
        return max(self.captured - self.refunded - self.pending, ZERO)

    @property
    def voidable(self) -> bool:
        return self.authorized > ZERO and self.captured == ZERO and not self.voided


def reported_refunds(order: OrderView) -> list[Reported]:
    seen = order.evidence.refunds
    return [
        Reported(refund_id, amount, seen[refund_id].intent if refund_id in seen else None)
        for refund_id, amount in sorted(order.payment.refunds.items())
    ]


def reconcile(
    order: OrderView, entries: Sequence[LedgerEntry]
) -> tuple[Balance, list[LedgerEntry]]:
    """Match reported refunds to desk entries; return the money and the entries that changed.

    The matching is done afresh every time: the provider's reference or the intent key
    (whatever the desk thought of the entry: a report proves that a reservation whose answer a
    crash lost, or a refund the desk took for refused, was made), then what an earlier reconcile
    settled. An entry whose earlier match no report backs any more goes back to ``sent``."""
    refunds = [e for e in entries if e.kind is EntryKind.REFUND]
    reported = reported_refunds(order)
    bound: dict[str, LedgerEntry] = {}
    free = list(refunds)
    for test in (_names, _settled):
        for item in reported:
            if item.refund_id in bound:
                continue
            entry = next((e for e in _oldest(free) if test(item, e)), None)
            if entry is not None:
                bound[item.refund_id] = entry
                free.remove(entry)
    changed: list[LedgerEntry] = []
    for refund_id, entry in bound.items():
        if entry.status is not EntryStatus.CONFIRMED or entry.confirmed_by != refund_id:
            entry.status, entry.confirmed_by = EntryStatus.CONFIRMED, refund_id
            changed.append(entry)
    for entry in free:
        if entry.status is EntryStatus.CONFIRMED:
            entry.status, entry.confirmed_by = EntryStatus.SENT, None
            changed.append(entry)
    elsewhere = [item for item in reported if item.refund_id not in bound]
    pay = order.payment
    released = sum(
        (
            e.amount
            for e in entries
            if e.kind is EntryKind.REDUCE_AUTHORIZATION and e.status.holds_money
        ),
        ZERO,
    )
    money = Balance(
        authorized=max(pay.authorized - released, ZERO),
        captured=pay.captured,
        voided=pay.voided or _voided(entries),
        refunded_reported=pay.refunded,
        refunded_elsewhere=sum((r.amount for r in elsewhere), ZERO),
        elsewhere=tuple(elsewhere),
        sent_unreported=_total(refunds, EntryStatus.SENT),
        pending=_total(refunds, EntryStatus.PENDING),
    )
    return money, changed


def _names(item: Reported, entry: LedgerEntry) -> bool:
    """The report names the entry: by the provider's reference or by the intent key."""
    by_reference = entry.reference is not None and entry.reference == item.refund_id
    return by_reference or (item.intent is not None and entry.key == item.intent)


def _settled(item: Reported, entry: LedgerEntry) -> bool:
    return entry.status.holds_money and entry.confirmed_by == item.refund_id


def _oldest(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    return sorted(entries, key=lambda e: (e.created_at, e.key))


def _voided(entries: Iterable[LedgerEntry]) -> bool:
    return any(
        e.kind is EntryKind.VOID and e.status in (EntryStatus.SENT, EntryStatus.CONFIRMED)
        for e in entries
    )


def _total(entries: Iterable[LedgerEntry], status: EntryStatus) -> Decimal:
    return sum((e.amount for e in entries if e.status is status), ZERO)


def check_refund(money: Balance, amount: Decimal) -> None:
    """Refuse a refund the ledger forbids, with the rule's code."""
    if amount <= ZERO:
        raise LedgerRefusal(f"a refund must be positive, got {amount}", code="invalid_amount")
    if money.captured == ZERO:
        what = "void the authorization" if money.voidable else "there is nothing to refund"
        raise LedgerRefusal(f"nothing was captured on this order: {what}", code="nothing_captured")
    if amount > money.refundable:
        raise LedgerRefusal(
            f"a refund of {amount} exceeds what is left to refund ({money.refundable}: "
            f"captured {money.captured}, refunded {money.refunded}, reserved {money.pending})",
            code="refund_exceeds_captured",
        )


def check_void(money: Balance) -> None:
    if money.captured > ZERO:
        raise LedgerRefusal(
            f"{money.captured} was captured: a captured payment is refunded, never voided",
            code="payment_captured",
        )
    if money.voided:
        raise LedgerRefusal("the authorization is already voided", code="already_voided")
    if money.authorized == ZERO:
        raise LedgerRefusal("there is no authorization to void", code="nothing_to_void")


def intent_key(merchant: str, scope: str, kind: EntryKind, amount: Decimal) -> str:
    """The idempotency key of one business intent: who asked (a case or a cancellation), the
    action and the amount. The same intent always gives the same key."""
    return f"rd:{merchant}:{scope}:{kind.value}:{amount.normalize():f}"
