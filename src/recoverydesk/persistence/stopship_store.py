"""Stop-ship workflows, the refund ledger and the outbound call log, in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from recoverydesk.domain.errors import Conflict
from recoverydesk.domain.ledger import EntryKind, EntryStatus, LedgerEntry
from recoverydesk.domain.stopship import Cancellation, Stage
from recoverydesk.persistence.tables import cancellations, ledger_entries, orders, outbound_calls
from recoverydesk.services.views import cancellation_from_dict, cancellation_to_dict


class StaleWorkflow(Conflict):
    code = "stale_workflow"


class SqlCancellationStore:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def open_for_order(self, merchant_id: int, ref: str) -> Cancellation | None:
        row = self._db.execute(
            select(cancellations.c.state)
            .where(
                cancellations.c.merchant_id == merchant_id,
                cancellations.c.order_ref == ref,
                cancellations.c.stage != Stage.DONE.value,
            )
            .with_for_update()
        ).first()
        return cancellation_from_dict(row.state) if row else None

    def open_for_orders(self, merchant_id: int, refs: Sequence[str]) -> dict[str, Cancellation]:
        if not refs:
            return {}
        rows = self._db.execute(
            select(cancellations.c.state)
            .where(
                cancellations.c.merchant_id == merchant_id,
                cancellations.c.order_ref.in_(list(refs)),
                cancellations.c.stage != Stage.DONE.value,
            )
            .order_by(cancellations.c.id)
            .with_for_update()
        ).all()
        found = [cancellation_from_dict(row.state) for row in rows]
        return {c.order_ref: c for c in found}

    def get(self, merchant_id: int, cancellation_id: int) -> Cancellation | None:
        row = self._db.execute(
            select(cancellations.c.state).where(
                cancellations.c.merchant_id == merchant_id,
                cancellations.c.id == cancellation_id,
            )
        ).first()
        return cancellation_from_dict(row.state) if row else None

    def lock(self, merchant_id: int, cancellation_id: int) -> Cancellation | None:
        row = self._db.execute(
            select(cancellations.c.state)
            .where(
                cancellations.c.merchant_id == merchant_id,
                cancellations.c.id == cancellation_id,
            )
            .with_for_update()
        ).first()
        return cancellation_from_dict(row.state) if row else None

    def for_case(self, merchant_id: int, case_id: int) -> list[Cancellation]:
        rows = self._db.execute(
            select(cancellations.c.state)
            .where(cancellations.c.merchant_id == merchant_id, cancellations.c.case_id == case_id)
            .order_by(cancellations.c.id)
        ).all()
        return [cancellation_from_dict(row.state) for row in rows]

    def for_order(self, merchant_id: int, ref: str) -> list[Cancellation]:
        rows = self._db.execute(
            select(cancellations.c.state)
            .where(cancellations.c.merchant_id == merchant_id, cancellations.c.order_ref == ref)
            .order_by(cancellations.c.id)
        ).all()
        return [cancellation_from_dict(row.state) for row in rows]

    def all(self, merchant_id: int) -> list[Cancellation]:
        rows = self._db.execute(
            select(cancellations.c.state)
            .where(cancellations.c.merchant_id == merchant_id)
            .order_by(cancellations.c.id)
        ).all()
        return [cancellation_from_dict(row.state) for row in rows]

    def save(self, merchant_id: int, c: Cancellation, *, now: datetime) -> None:
        """Insert a new workflow (assigning its id) or update one, checking its version."""
        if c.id is None:
            c.id = self._db.execute(
                insert(cancellations)
                .values({**_row(merchant_id, c, now), "created_at": now, "state": {}})
                .returning(cancellations.c.id)
            ).scalar_one()
            self._db.execute(
                update(cancellations)
                .where(cancellations.c.id == c.id)
                .values(state=cancellation_to_dict(c))
            )
            return
        version = c.version
        c.version += 1
        done = self._db.execute(
            update(cancellations)
            .where(
                and_(
                    cancellations.c.merchant_id == merchant_id,
                    cancellations.c.id == c.id,
                    cancellations.c.version == version,
                )
            )
            .values({**_row(merchant_id, c, now), "state": cancellation_to_dict(c)})
        ).rowcount
        if done != 1:
            c.version = version
            raise StaleWorkflow(f"cancellation {c.id} changed meanwhile; try again")


def _row(merchant_id: int, c: Cancellation, now: datetime) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "order_ref": c.order_ref,
        "case_id": c.case_id,
        "stage": c.stage.value,
        "outcome": c.outcome.value if c.outcome else None,
        "requested_by": c.requested_by.value,
        "requested_at": c.requested_at,
        "final_outcome_at": c.times.get("final_outcome_at"),
        "version": c.version,
        "updated_at": now,
    }


class DuplicateIntent(Conflict):
    code = "duplicate_intent"


class SqlLedger:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def for_order(self, merchant_id: int, ref: str) -> list[LedgerEntry]:
        rows = self._db.execute(
            select(ledger_entries)
            .where(ledger_entries.c.merchant_id == merchant_id, ledger_entries.c.order_ref == ref)
            .order_by(ledger_entries.c.id)
        ).all()
        return [_entry(row) for row in rows]

    def by_key(self, merchant_id: int, key: str) -> LedgerEntry | None:
        row = self._db.execute(
            select(ledger_entries).where(
                ledger_entries.c.merchant_id == merchant_id, ledger_entries.c.key == key
            )
        ).first()
        return _entry(row) if row else None

    def reserve(self, merchant_id: int, entry: LedgerEntry) -> LedgerEntry:
        """Insert a pending entry. The unique key makes a second insert of the same intent fail
        (``DuplicateIntent``) even when two transactions race past the caller's own check."""
        nested = self._db.begin_nested()
        try:
            entry.id = self._db.execute(
                insert(ledger_entries)
                .values(_entry_row(merchant_id, entry, entry.created_at))
                .returning(ledger_entries.c.id)
            ).scalar_one()
        except IntegrityError:
            nested.rollback()
            raise DuplicateIntent(f"the intent {entry.key} was already recorded") from None
        nested.commit()
        return entry

    def update(self, merchant_id: int, entries: Sequence[LedgerEntry], *, now: datetime) -> None:
        for entry in entries:
            self._db.execute(
                update(ledger_entries)
                .where(ledger_entries.c.merchant_id == merchant_id, ledger_entries.c.id == entry.id)
                .values(
                    status=entry.status.value,
                    reference=entry.reference,
                    confirmed_by=entry.confirmed_by,
                    detail=dict(entry.detail),
                    updated_at=now,
                )
            )

    def all(self, merchant_id: int) -> list[LedgerEntry]:
        rows = self._db.execute(
            select(ledger_entries)
            .where(ledger_entries.c.merchant_id == merchant_id)
            .order_by(ledger_entries.c.id)
        ).all()
        return [_entry(row) for row in rows]

    def concessions(
        self,
        merchant_id: int,
        *,
        since: datetime,
        customer_id: str | None = None,
        customer_email: str | None = None,
    ) -> list[LedgerEntry]:
        """One query: the concession refunds holding money since ``since``, joined to the
        orders' snapshots when a customer is named."""
        holding = [s.value for s in EntryStatus if s.holds_money]
        query = select(ledger_entries).where(
            ledger_entries.c.merchant_id == merchant_id,
            ledger_entries.c.kind == EntryKind.REFUND.value,
            ledger_entries.c.status.in_(holding),
            ledger_entries.c.created_at >= since,
            ledger_entries.c.detail["concession"].as_string() == "yes",
        )
        if customer_id is not None or customer_email is not None:
            field, value = (
                ("id", customer_id) if customer_id is not None else ("email", customer_email)
            )
            query = query.join(
                orders,
                and_(
                    orders.c.merchant_id == ledger_entries.c.merchant_id,
                    orders.c.ref == ledger_entries.c.order_ref,
                ),
            ).where(orders.c.snapshot[("customer", field)].as_string() == value)
        rows = self._db.execute(query.order_by(ledger_entries.c.id)).all()
        return [_entry(row) for row in rows]


def _entry_row(merchant_id: int, e: LedgerEntry, now: datetime) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "order_ref": e.order_ref,
        "kind": e.kind.value,
        "key": e.key,
        "amount": e.amount,
        "currency": e.currency,
        "status": e.status.value,
        "actor": e.actor,
        "case_id": e.case_id,
        "cancellation_id": e.cancellation_id,
        "reference": e.reference,
        "confirmed_by": e.confirmed_by,
        "detail": dict(e.detail),
        "created_at": e.created_at,
        "updated_at": now,
    }


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        order_ref=row.order_ref,
        kind=EntryKind(row.kind),
        key=row.key,
        amount=row.amount,
        currency=row.currency,
        actor=row.actor,
        created_at=row.created_at,
        status=EntryStatus(row.status),
        case_id=row.case_id,
        cancellation_id=row.cancellation_id,
        reference=row.reference,
        confirmed_by=row.confirmed_by,
        detail=dict(row.detail),
        id=row.id,
    )


class SqlOutboundLog:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

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
    ) -> None:
        self._db.execute(
            insert(outbound_calls).values(
                merchant_id=merchant_id,
                order_ref=order_ref,
                system=system,
                action=action,
                key=key,
                params=params,
                result=result,
                answer=answer,
                at=at,
            )
        )

    def for_order(self, merchant_id: int, ref: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            select(outbound_calls)
            .where(outbound_calls.c.merchant_id == merchant_id, outbound_calls.c.order_ref == ref)
            .order_by(outbound_calls.c.id)
        ).all()
        return [
            {
                "at": row.at.isoformat(),
                "system": row.system,
                "action": row.action,
                "idempotency_key": row.key,
                "params": row.params,
                "result": row.result,
                "answer": row.answer,
            }
            for row in rows
        ]
