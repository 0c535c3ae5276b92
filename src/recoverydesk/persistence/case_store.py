"""Cases and their timelines; every change writes its timeline rows in the same transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, exists, func, insert, select, update

from recoverydesk.domain.cases import Case, CaseStatus, Outcome, ReasonCode, category_of
from recoverydesk.domain.sla import SlaClock
from recoverydesk.persistence.tables import case_timeline, cases, is_open, orders

# Each case's copy of its order's columns (``tables.cases``), by the order's column name.
ORDER_COPIES = {
    "channel": "order_channel",
    "fulfillment_type": "order_fulfillment_type",
    "value": "order_value",
    "currency": "order_currency",
}


def copy_order_columns(db: Connection, merchant_id: int, refs: Collection[str]) -> None:
    """The cases of these orders get their order's segment and value (NULL for an order the
    desk does not have); set-based, and only the cases whose copy differs are written."""
    if not refs:
        return
    same_order = and_(
        orders.c.merchant_id == cases.c.merchant_id, orders.c.ref == cases.c.order_ref
    )
    up_to_date = exists().where(
        same_order,
        *(
            orders.c[name].is_not_distinct_from(cases.c[copy])
            for name, copy in ORDER_COPIES.items()
        ),
    )
    stale = and_(*(cases.c[copy].is_(None) for copy in ORDER_COPIES.values()))
    missing = ~exists().where(same_order)
    db.execute(
        update(cases)
        .where(cases.c.merchant_id == merchant_id, cases.c.order_ref.in_(sorted(set(refs))))
        .where(~up_to_date, ~and_(missing, stale))
        .values(
            {
                copy: select(orders.c[name]).where(same_order).scalar_subquery()
                for name, copy in ORDER_COPIES.items()
            }
        )
    )


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: str | None = None
    queue: str | None = None
    priority: str | None = None
    category: str | None = None
    order_ref: str | None = None
    open_only: bool = False
    owner: str | None = None
    sort: str = "priority"  # priority | opened
    limit: int = 100
    offset: int = 0


class SqlCaseStore:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def for_orders(
        self, merchant_id: int, refs: Collection[str], *, open_only: bool
    ) -> dict[str, list[Case]]:
        found: dict[str, list[Case]] = defaultdict(list)
        if not refs:
            return found
        query = select(cases).where(
            cases.c.merchant_id == merchant_id, cases.c.order_ref.in_(list(refs))
        )
        if open_only:
            query = query.where(is_open(cases.c.status))
        for row in self._db.execute(query.order_by(cases.c.id)):
            found[row.order_ref].append(_case(row))
        return found

    def save(self, merchant_id: int, changed: Sequence[Case]) -> None:
        known = [case for case in changed if case.id is not None]
        new = [case for case in changed if case.id is None]
        if known:  # updates first: a case closing frees the slot for a new open one
            stmt = (
                update(cases)
                .where(
                    and_(
                        cases.c.id == bindparam("c_id"),
                        cases.c.merchant_id == bindparam("c_merchant"),
                    )
                )
                .values({name: bindparam(name) for name in _MUTABLE})
            )
            rows = []
            for case in known:
                row = {
                    name: value
                    for name, value in _row(merchant_id, case).items()
                    if name in _MUTABLE
                }
                rows.append({**row, "c_id": case.id, "c_merchant": merchant_id})
            self._db.execute(stmt, rows)
        if new:
            adding = insert(cases).returning(cases.c.id, sort_by_parameter_order=True)
            ids = self._db.execute(adding, [_row(merchant_id, case) for case in new]).scalars()
            for case, case_id in zip(new, ids, strict=True):
                case.id = case_id
            copy_order_columns(self._db, merchant_id, {case.order_ref for case in new})
        self._write_timeline(merchant_id, changed)

    def _write_timeline(self, merchant_id: int, changed: Sequence[Case]) -> None:
        rows = [
            {
                "merchant_id": merchant_id,
                "case_id": case.id,
                "at": entry.at,
                "kind": entry.kind,
                "actor": entry.actor,
                "event_id": entry.event_id,
                "detail": entry.detail,
            }
            for case in changed
            for entry in case.pending
        ]
        if rows:
            self._db.execute(insert(case_timeline), rows)
        for case in changed:
            case.pending.clear()
            case.dirty = False

    def get(self, merchant_id: int, case_id: int) -> Case | None:
        row = self._db.execute(
            select(cases).where(cases.c.merchant_id == merchant_id, cases.c.id == case_id)
        ).first()
        return _case(row) if row else None

    def move(self, merchant_id: int, moving: Sequence[Case], *, to_ref: str) -> None:
        """Saved first: a case closed as a duplicate frees its open slot before it moves."""
        if not moving:
            return
        self.save(merchant_id, [case for case in moving if case.dirty])
        stmt = update(cases).where(
            cases.c.merchant_id == merchant_id,
            cases.c.id.in_(sorted(case.id for case in moving if case.id is not None)),
        )
        self._db.execute(stmt.values(order_ref=to_ref))
        copy_order_columns(self._db, merchant_id, [to_ref])
        for case in moving:
            case.order_ref = to_ref

    def timeline(self, merchant_id: int, case_id: int) -> list[dict[str, Any]]:
        query = (
            select(
                case_timeline.c.at,
                case_timeline.c.kind,
                case_timeline.c.actor,
                case_timeline.c.event_id,
                case_timeline.c.detail,
            )
            .where(case_timeline.c.merchant_id == merchant_id, case_timeline.c.case_id == case_id)
            .order_by(case_timeline.c.id)
        )
        return [dict(row._mapping) for row in self._db.execute(query)]

    def search(self, merchant_id: int, filters: CaseFilter) -> tuple[list[Case], int]:
        query = select(cases).where(cases.c.merchant_id == merchant_id)
        for name, column in (
            ("status", cases.c.status),
            ("queue", cases.c.queue),
            ("priority", cases.c.priority),
            ("category", cases.c.category),
            ("order_ref", cases.c.order_ref),
            ("owner", cases.c.owner),
        ):
            value = getattr(filters, name)
            if value is not None:
                query = query.where(column == value)
        if filters.open_only:
            query = query.where(is_open(cases.c.status))
        total = self._db.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        page = query.order_by(*_ORDER[filters.sort]).limit(filters.limit)
        rows = self._db.execute(page.offset(filters.offset))
        return [_case(row) for row in rows], int(total)

    def lock(self, merchant_id: int, case_id: int) -> Case | None:
        """A case read for change (row lock on PostgreSQL; SQLite writers are serialised)."""
        query = select(cases).where(cases.c.merchant_id == merchant_id, cases.c.id == case_id)
        row = self._db.execute(query.with_for_update()).first()
        return _case(row) if row else None

    def assignment_state(self, merchant_id: int, queue: str) -> tuple[dict[str, int], str | None]:
        """Open cases per owner in a queue, and who got the latest assignment there."""
        open_in_queue = and_(
            cases.c.merchant_id == merchant_id,
            cases.c.queue == queue,
            is_open(cases.c.status),
        )
        load = self._db.execute(
            select(cases.c.owner, func.count())
            .where(open_in_queue, cases.c.owner.is_not(None))
            .group_by(cases.c.owner)
        )
        last = self._db.execute(
            select(cases.c.owner)
            .where(cases.c.merchant_id == merchant_id, cases.c.queue == queue)
            .where(cases.c.owner.is_not(None))
            .order_by(cases.c.id.desc())
            .limit(1)
        ).scalar()
        return {str(owner): int(count) for owner, count in load}, last

    def open_counts(self) -> list[tuple[int, str, int]]:
        """Open cases by merchant and category, for the metrics endpoint."""
        query = (
            select(cases.c.merchant_id, cases.c.category, func.count())
            .where(is_open(cases.c.status))
            .group_by(cases.c.merchant_id, cases.c.category)
        )
        return [(int(m), str(c), int(n)) for m, c, n in self._db.execute(query)]


_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)

_ORDER = {
    "priority": (
        cases.c.priority,
        cases.c.due_sort,
        cases.c.risk_cents.desc(),
        cases.c.opened_at,
        cases.c.id,
    ),
    "opened": (cases.c.opened_at, cases.c.id),
}

_MUTABLE = (
    "data",
    "owner",
    "config_version",
    "deadline",
    "due_sort",
    "revenue_at_risk",
    "risk_cents",
    "first_touched_at",
    "clocks",
    "escalations",
    "status",
    "classification",
    "priority",
    "queue",
    "outcome",
    "reason_code",
    "root_cause",
    "opened_at",
    "closed_at",
    "opened_by",
    "event_ids",
    "updated_at",
    "hold_type",
)


def _row(merchant_id: int, case: Case) -> dict[str, Any]:
    latest = case.pending[-1].at if case.pending else case.opened_at
    return {
        "merchant_id": merchant_id,
        "order_ref": case.order_ref,
        "category": str(case.category),
        "status": case.status.value,
        "hold_type": case.hold_type,
        "classification": case.classification,
        "priority": case.priority,
        "queue": case.queue,
        "outcome": case.outcome.value if case.outcome else None,
        "reason_code": case.reason_code.value if case.reason_code else None,
        "root_cause": case.root_cause,
        "opened_at": case.opened_at,
        "closed_at": case.closed_at,
        "opened_by": case.opened_by,
        "event_ids": list(case.event_ids),
        "created_at": latest,
        "updated_at": latest,
        "rule": case.rule,
        "data": case.data,
        "owner": case.owner,
        "config_version": case.config_version,
        "deadline": case.deadline,
        "due_sort": case.deadline or _FAR_FUTURE,
        "revenue_at_risk": case.revenue_at_risk or Decimal("0.00"),
        "risk_cents": int((case.revenue_at_risk or Decimal(0)) * 100),
        "first_touched_at": case.first_touched_at,
        "clocks": {name: clock.to_dict() for name, clock in case.clocks.items()},
        "escalations": case.escalations,
    }


def _case(row: Row[Any]) -> Case:
    return Case(
        id=row.id,
        order_ref=row.order_ref,
        category=category_of(row.category),
        status=CaseStatus(row.status),
        hold_type=row.hold_type,
        classification=row.classification,
        priority=row.priority,
        queue=row.queue,
        outcome=Outcome(row.outcome) if row.outcome else None,
        reason_code=ReasonCode(row.reason_code) if row.reason_code else None,
        root_cause=row.root_cause,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        opened_by=row.opened_by,
        event_ids=list(row.event_ids),
        rule=row.rule,
        data=dict(row.data),
        owner=row.owner,
        config_version=row.config_version,
        deadline=row.deadline,
        revenue_at_risk=row.revenue_at_risk,
        first_touched_at=row.first_touched_at,
        clocks={name: SlaClock.from_dict(body) for name, body in row.clocks.items()},
        escalations=list(row.escalations),
    )
