"""Order 360 snapshots, one row per order, locked per order while events fold in."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from recoverydesk.domain.orders import FulfillmentStatus, OrderView
from recoverydesk.persistence.case_store import copy_order_columns
from recoverydesk.persistence.database import upsert_insert
from recoverydesk.persistence.tables import order_keys, orders
from recoverydesk.services.ports import OrderKey, linkable_keys
from recoverydesk.services.views import order_from_dict, order_to_dict


class SqlOrderStore:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def _select(self, merchant_id: int, refs: list[str], *, lock: bool) -> dict[str, OrderView]:
        query = (
            select(orders.c.ref, orders.c.snapshot)
            .where(orders.c.merchant_id == merchant_id, orders.c.ref.in_(sorted(refs)))
            .order_by(orders.c.ref)
        )
        if lock:
            query = query.with_for_update()
        return {
            ref: order_from_dict(doc) if doc else OrderView(ref=ref)
            for ref, doc in self._db.execute(query)
        }

    def lock(self, merchant_id: int, refs: Collection[str]) -> dict[str, OrderView]:
        wanted = sorted(refs)
        found = self._select(merchant_id, wanted, lock=True)
        missing = [ref for ref in wanted if ref not in found]
        if missing:
            stmt = (
                upsert_insert(self._db, orders)
                .on_conflict_do_nothing(index_elements=["merchant_id", "ref"])
                .returning(orders.c.ref)
            )
            inserted = set(
                self._db.execute(
                    stmt, [_placeholder(merchant_id, ref) for ref in missing]
                ).scalars()
            )
            found.update({ref: OrderView(ref=ref) for ref in inserted})
            raced = [ref for ref in missing if ref not in inserted]
            if raced:  # another transaction created them meanwhile: wait for it and read them
                found.update(self._select(merchant_id, raced, lock=True))
        return found

    def save(
        self, merchant_id: int, views: Sequence[OrderView], *, at: datetime
    ) -> dict[OrderKey, str]:
        if not views:
            return {}
        stmt = (
            update(orders)
            .where(
                and_(orders.c.merchant_id == bindparam("m_id"), orders.c.ref == bindparam("m_ref"))
            )
            .values({name: bindparam(name) for name in _COLUMNS})
        )
        rows = []
        for view in views:
            row = _row(merchant_id, view, at)
            row["m_id"], row["m_ref"] = row.pop("merchant_id"), row.pop("ref")
            rows.append(row)
        self._db.execute(stmt, rows)
        copy_order_columns(self._db, merchant_id, [view.ref for view in views])
        return self._record_keys(merchant_id, views)

    def _record_keys(self, merchant_id: int, views: Sequence[OrderView]) -> dict[OrderKey, str]:
        """Each order's linkable keys under it, unless an order has them already (the first of
        ``views`` in ref order, when two have the same new key); returns those recorded now."""
        wanted: dict[OrderKey, str] = {}
        for view in sorted(views, key=lambda v: v.ref):
            for pair in sorted(linkable_keys(view)):
                wanted.setdefault(pair, view.ref)
        if not wanted:
            return {}
        stmt = (
            upsert_insert(self._db, order_keys)
            .on_conflict_do_nothing(index_elements=["merchant_id", "kind", "key"])
            .returning(order_keys.c.kind, order_keys.c.key)
        )
        rows = [
            {"merchant_id": merchant_id, "kind": kind, "key": key, "order_ref": ref}
            for (kind, key), ref in sorted(wanted.items())
        ]
        return {(kind, key): wanted[kind, key] for kind, key in self._db.execute(stmt, rows)}

    def by_keys(self, merchant_id: int, pairs: Collection[OrderKey]) -> dict[OrderKey, str]:
        if not pairs:
            return {}
        query = select(order_keys.c.kind, order_keys.c.key, order_keys.c.order_ref).where(
            order_keys.c.merchant_id == merchant_id,
            order_keys.c.kind.in_(sorted({kind for kind, _ in pairs})),
            order_keys.c.key.in_(sorted({key for _, key in pairs})),
        )
        wanted = set(pairs)
        return {
            (row.kind, row.key): row.order_ref
            for row in self._db.execute(query)
            if (row.kind, row.key) in wanted
        }

    def remove(self, merchant_id: int, refs: Collection[str]) -> None:
        if refs:
            self._db.execute(
                delete(orders).where(
                    orders.c.merchant_id == merchant_id, orders.c.ref.in_(sorted(refs))
                )
            )
            copy_order_columns(self._db, merchant_id, refs)

    def get(self, merchant_id: int, ref: str) -> OrderView | None:
        return self._select(merchant_id, [ref], lock=False).get(ref)


_COLUMNS = (
    "channel",
    "fulfillment_type",
    "value",
    "currency",
    "customer_tier",
    "placed_at",
    "ship_by",
    "promised_by",
    "fulfillment_status",
    "payment_status",
    "captured",
    "refunded",
    "cancelled",
    "partially_cancelled",
    "cancelled_at",
    "shipped_at",
    "delivered_at",
    "event_count",
    "last_event_at",
    "last_event_id",
    "snapshot",
    "updated_at",
)


def _placeholder(merchant_id: int, ref: str) -> dict[str, Any]:
    """A new order's row, locked until ``save`` fills it in the same transaction."""
    return {"merchant_id": merchant_id, "ref": ref, "snapshot": {}, "updated_at": _EPOCH}


def _row(merchant_id: int, view: OrderView, at: datetime | None) -> dict[str, Any]:
    times = view.fulfillment_times
    return {
        "merchant_id": merchant_id,
        "ref": view.ref,
        "channel": view.channel,
        "fulfillment_type": view.fulfillment_type,
        "value": view.value,
        "currency": view.currency,
        "customer_tier": view.customer_tier,
        "placed_at": view.placed_at,
        "ship_by": view.ship_by,
        "promised_by": view.promised_by,
        "fulfillment_status": view.fulfillment.value,
        "payment_status": view.payment.status.value,
        "captured": view.payment.captured,
        "refunded": view.payment.refunded,
        "cancelled": view.cancelled,
        "partially_cancelled": view.partially_cancelled,
        "cancelled_at": view.cancelled_at,
        "shipped_at": times.get(FulfillmentStatus.SHIPPED.value),
        "delivered_at": times.get(FulfillmentStatus.DELIVERED.value),
        "event_count": view.event_count,
        "last_event_at": view.last_key[0] if view.last_key else None,
        "last_event_id": view.last_key[1] if view.last_key else None,
        "snapshot": order_to_dict(view),
        "updated_at": at or view.placed_at or _EPOCH,
    }


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
