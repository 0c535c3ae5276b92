"""Ports: what the use cases need from storage and the outside, as Protocols.

Adapters in ``persistence`` (and later ``connectors``) implement them; ``bootstrap`` chooses which.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import DeskError
from recoverydesk.domain.events import CanonicalEvent
from recoverydesk.domain.ledger import LedgerEntry
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.stopship import Cancellation


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A validated event with the raw payload it came from (kept for audit)."""

    event: CanonicalEvent
    raw: str


@dataclass(frozen=True, slots=True)
class JobRequest:
    merchant_id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    merchant_id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    due_at: datetime
    worker: str


@dataclass(frozen=True, slots=True)
class Merchant:
    id: int
    name: str
    time_zone: str
    config_version: int


# The order's ids in outside systems that name one order, and by which an event that knows no
# order reference reaches its order: ``(kind, key)``, the kind being the ``order.ids`` name (a
# parcel's tracking number also comes from a fulfilment event's ``data.tracking``). An event whose
# ``order.ref`` equals ``order.ids[kind]`` for one of these kinds knows only that id: its ref is a
# stand-in, which intake replaces by the order that knows the key (``OrderStore.by_keys``).
TRACKING_NUMBER = "tracking_number"
LINK_KEYS = frozenset(
    {TRACKING_NUMBER, "stripe_payment_intent", "stripe_charge", "adyen_psp_reference"}
)
OrderKey = tuple[str, str]  # (kind, key)


def linkable_keys(order: OrderView) -> set[OrderKey]:
    """The linkable keys an order knows: its tracking numbers and its ids of ``LINK_KEYS``;
    none for an order whose ref is itself one of them (a stand-in's events, which no order
    claimed yet)."""
    keys = {(TRACKING_NUMBER, code) for code in order.tracking}
    keys |= {(kind, key) for kind, key in order.system_ids.items() if kind in LINK_KEYS}
    if any(key == order.ref for _, key in keys):
        return set()
    return {(kind, key) for kind, key in keys if key}


class EventStore(Protocol):
    def add_new(
        self, merchant_id: int, events: Sequence[IncomingEvent], *, received_at: datetime
    ) -> set[str]:
        """Store events not seen before for this merchant; return the ids that were new."""

    def history(self, merchant_id: int, refs: Collection[str]) -> dict[str, list[CanonicalEvent]]:
        """Every stored event of these orders."""

    def relink(
        self, merchant_id: int, links: Mapping[OrderKey, str]
    ) -> dict[str, list[CanonicalEvent]]:
        """Move the events stored under a stand-in ref to the order that now knows the key:
        for each ``(kind, key) -> ref``, every event stored under order ref ``key`` whose
        ``order.ids[kind]`` is ``key`` (its ``order_ref`` and its payload's ``order.ref``).
        Returns the moved events, as they read now, by the stand-in ref they left."""


class OrderStore(Protocol):
    def lock(self, merchant_id: int, refs: Collection[str]) -> dict[str, OrderView]:
        """Create missing orders, lock them for this unit of work, return their snapshots."""

    def save(
        self, merchant_id: int, orders: Sequence[OrderView], *, at: datetime
    ) -> dict[OrderKey, str]:
        """Write the snapshots and record each order's ``linkable_keys`` (the first order saved
        with a key keeps it); return the keys recorded now for the first time, with their
        order's ref."""

    def get(self, merchant_id: int, ref: str) -> OrderView | None: ...

    def by_keys(self, merchant_id: int, pairs: Collection[OrderKey]) -> dict[OrderKey, str]:
        """The order (ref) that each of these keys the desk knows belongs to."""

    def remove(self, merchant_id: int, refs: Collection[str]) -> None:
        """Delete these (locked) orders' rows: stand-ins whose events moved to their order."""


class CaseStore(Protocol):
    def for_orders(
        self, merchant_id: int, refs: Collection[str], *, open_only: bool
    ) -> dict[str, list[Case]]: ...

    def save(self, merchant_id: int, cases: Sequence[Case]) -> None:
        """Insert new cases (assigning ids), update changed ones, write pending timeline rows."""

    def get(self, merchant_id: int, case_id: int) -> Case | None: ...

    def move(self, merchant_id: int, cases: Sequence[Case], *, to_ref: str) -> None:
        """These cases now belong to order ``to_ref`` (a stand-in's cases moving to the order
        its events moved to); their changes and pending timeline rows are saved first."""

    def lock(self, merchant_id: int, case_id: int) -> Case | None: ...

    def assignment_state(
        self, merchant_id: int, queue: str
    ) -> tuple[dict[str, int], str | None]: ...


class JobQueue(Protocol):
    def enqueue(self, jobs: Sequence[JobRequest], *, now: datetime) -> None:
        """Add jobs; a job whose (merchant, key) exists already is left as it is."""

    def claim(self, *, now: datetime, worker: str, lease: timedelta, limit: int) -> list[Job]: ...

    def complete(self, job: Job, *, now: datetime) -> bool:
        """Mark done if this worker still holds the lease; False means the lease was lost."""

    def fail(self, job: Job, *, now: datetime, error: str, retry_at: datetime | None) -> None: ...

    def next_due(self) -> datetime | None: ...


class MerchantStore(Protocol):
    def by_name(self, name: str) -> Merchant | None: ...

    def by_id(self, merchant_id: int) -> Merchant | None: ...

    def ensure(self, name: str, *, time_zone: str, now: datetime) -> Merchant: ...

    def add(self, name: str, *, time_zone: str, now: datetime) -> Merchant: ...

    def apply_config(
        self,
        merchant: Merchant,
        *,
        source: str,
        content: str,
        settings: dict[str, Any],
        time_zone: str,
        now: datetime,
    ) -> int: ...

    def config(self, merchant_id: int, version: int | None = None) -> dict[str, Any] | None: ...

    def add_token(
        self, merchant_id: int, *, role: str, token_hash: str, prefix: str, now: datetime
    ) -> None: ...

    def token_owner(self, token_hash: str) -> tuple[Merchant, str] | None: ...


class CancellationStore(Protocol):
    def open_for_order(self, merchant_id: int, ref: str) -> Cancellation | None:
        """The order's open workflow, locked for this unit of work."""

    def open_for_orders(self, merchant_id: int, refs: Sequence[str]) -> dict[str, Cancellation]: ...

    def get(self, merchant_id: int, cancellation_id: int) -> Cancellation | None: ...

    def lock(self, merchant_id: int, cancellation_id: int) -> Cancellation | None: ...

    def for_case(self, merchant_id: int, case_id: int) -> list[Cancellation]: ...

    def for_order(self, merchant_id: int, ref: str) -> list[Cancellation]: ...

    def save(self, merchant_id: int, c: Cancellation, *, now: datetime) -> None:
        """Insert (assigning the id) or update, refusing a stale version."""


class Ledger(Protocol):
    def for_order(self, merchant_id: int, ref: str) -> list[LedgerEntry]: ...

    def by_key(self, merchant_id: int, key: str) -> LedgerEntry | None: ...

    def reserve(self, merchant_id: int, entry: LedgerEntry) -> LedgerEntry:
        """Insert a pending entry; a second entry with the same key is refused."""

    def update(
        self, merchant_id: int, entries: Sequence[LedgerEntry], *, now: datetime
    ) -> None: ...

    def concessions(
        self,
        merchant_id: int,
        *,
        since: datetime,
        customer_id: str | None = None,
        customer_email: str | None = None,
    ) -> list[LedgerEntry]:
        """Concession refunds that hold money (pending, sent, confirmed) reserved at or after
        ``since``; given a customer, only those on that customer's orders (matched by the
        customer's id when given, else by email)."""


class OutboundLog(Protocol):
    def record(
        self,
        merchant_id: int,
        *,
        order_ref: str | None,
        system: str,
        action: str,
        key: str,
        params: dict[str, Any],
        result: str,
        answer: dict[str, Any],
        at: datetime,
    ) -> None: ...

    def for_order(self, merchant_id: int, ref: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class OutsideCommand:
    """A command to a merchant's system: a warehouse hold, an ERP update, a refund ..."""

    merchant_id: int
    order_ref: str | None
    system: str
    action: str
    # The idempotency key: the same command sent twice is done once. A payment connector also
    # puts it in the provider's metadata, so the provider's own report of the refund names it
    # (``data.intent`` of ``payment.refunded``) and the ledger books it as the desk's.
    key: str
    params: dict[str, Any]
    # How to reach the merchant's system for this command (``connectors.outbound`` of its
    # configuration, secrets resolved): empty when none is configured. Never logged.
    connection: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The order's ids in the merchant's systems (a PSP's payment intent, the ERP's record ...).
    order_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutsideAnswer:
    accepted: bool
    reference: str | None = None  # the system's own id (a refund id, a ticket comment id)
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. the warehouse's order status
    message: str | None = None  # why it was refused


class OutsideSystems(Protocol):
    def send(self, command: OutsideCommand) -> OutsideAnswer:
        """Send one command; raise ``OutsideUnavailable`` when it should be retried later."""


@dataclass(frozen=True, slots=True)
class PollPage:
    """One page of what a polled system changed since a cursor."""

    events: list[dict[str, Any]]  # canonical event dicts (CONTRACT.md), deterministic ids
    cursor: str | None  # where the next poll starts; stored only with these events
    more: bool = False  # another page is ready now


class Poller(Protocol):
    """Reads a merchant's system that does not push (or does not retry): NetSuite sales
    orders changed since a cursor, WooCommerce orders, Amazon getOrders, the 3PL's statuses.
    ``connection`` is the merchant's ``connectors.polling.<name>`` with secrets resolved.
    Raise ``OutsideUnavailable`` to be retried later."""

    def poll(
        self, connection: Mapping[str, Any], cursor: str | None, *, now: datetime
    ) -> PollPage: ...


@dataclass(slots=True)
class PollCursor:
    """Where one polled system of a merchant was read up to (``connectors.polling.<name>``).

    ``seq`` counts the polls stored; the poll job that may store the next one carries it, and
    ``due_at`` is when that job is due (None: no poll is scheduled)."""

    merchant_id: int
    name: str
    kind: str
    cursor: str | None = None
    seq: int = 0
    due_at: datetime | None = None
    polled_at: datetime | None = None


class PollCursorStore(Protocol):
    def get(self, merchant_id: int, name: str) -> PollCursor | None: ...

    def lock(self, merchant_id: int, name: str, *, kind: str, now: datetime) -> PollCursor:
        """The cursor, created (empty) when missing, locked for this unit of work."""

    def save(self, cursor: PollCursor, *, now: datetime) -> None: ...

    def merchant_ids(self) -> list[int]:
        """Every merchant's id (the scheduler looks at each one's configured polls)."""


class OutsideUnavailable(DeskError):
    """The outside system could not be reached or answered with a temporary error."""

    code = "outside_unavailable"


class UnitOfWork(Protocol):
    @property
    def events(self) -> EventStore: ...

    @property
    def orders(self) -> OrderStore: ...

    @property
    def cases(self) -> CaseStore: ...

    @property
    def jobs(self) -> JobQueue: ...

    @property
    def merchants(self) -> MerchantStore: ...

    @property
    def cancellations(self) -> CancellationStore: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def outbound(self) -> OutboundLog: ...

    @property
    def polls(self) -> PollCursorStore: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class TransientConflict(Exception):
    """The database asked for the unit of work to be tried again (deadlock, busy)."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    """A person who logs in to the web desk: a role and the merchants they work (id -> name)."""

    id: int
    name: str
    role: str
    password_hash: str
    merchants: Mapping[int, str]
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One human action: who, for which merchant (None: the desk itself, e.g. a login)."""

    at: datetime
    user: str
    action: str
    merchant_id: int | None = None
    target: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class UserStore(Protocol):
    """Users, their merchants, their web sessions (stored by the hash of the cookie's token)
    and the audit log. Used in one transaction that the caller commits."""

    def add(
        self,
        name: str,
        *,
        role: str,
        password_hash: str,
        merchant_ids: Sequence[int],
        now: datetime,
    ) -> StoredUser: ...

    def by_name(self, name: str) -> StoredUser | None: ...

    def set_password_hash(self, user_id: int, password_hash: str) -> None: ...

    def start_session(
        self, user_id: int, *, token_hash: str, csrf: str, now: datetime, expires_at: datetime
    ) -> None: ...

    def session(self, token_hash: str, *, now: datetime) -> tuple[StoredUser, str] | None:
        """The user of a live session (not ended, not expired) and its CSRF token."""

    def end_session(self, token_hash: str, *, now: datetime) -> None: ...

    def audit(self, entry: AuditEntry) -> None: ...

    def audit_trail(self, *, merchant_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """The latest entries first."""

    def commit(self) -> None: ...
