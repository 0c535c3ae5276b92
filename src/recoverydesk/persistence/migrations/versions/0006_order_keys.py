"""order keys: the order that each outside-system key (tracking number, payment id) names

The table is filled from the orders already stored: each snapshot's tracking numbers
(``fulfillment.tracking``, kind ``tracking_number``) and its ``system_ids`` of the linkable kinds.
A stand-in order (named after one of its own keys: events that found no order) gets none, and
when two orders have the same key the one that shipped first (then the first by ref) keeps it.
The snapshots are read in Python, the same on both databases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# As ``services.ports`` has them when this revision was written (a migration does not follow
# later changes of the code).
TRACKING_NUMBER = "tracking_number"
LINK_KEYS = frozenset(
    {TRACKING_NUMBER, "stripe_payment_intent", "stripe_charge", "adyen_psp_reference"}
)
_CHUNK = 1000

_ORDERS = sa.text(
    "SELECT merchant_id, ref, snapshot FROM orders "
    "ORDER BY merchant_id, shipped_at IS NULL, shipped_at, ref"
)
_ORDER_KEYS = sa.table(
    "order_keys",
    sa.column("merchant_id"),
    sa.column("kind"),
    sa.column("key"),
    sa.column("order_ref"),
)


def upgrade() -> None:
    op.create_table(
        "order_keys",
        sa.Column("merchant_id", Id, sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("order_ref", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "kind", "key", name="pk_order_keys"),
    )
    db = op.get_bind()
    rows = _first_orders(db.execute(_ORDERS))  # read to the end before writing
    for start in range(0, len(rows), _CHUNK):
        db.execute(sa.insert(_ORDER_KEYS), rows[start : start + _CHUNK])


def _first_orders(orders: Iterable[Any]) -> list[dict[str, Any]]:
    """Each key under the first order that has it (in shipping order); stand-ins have none."""
    taken: set[tuple[int, str, str]] = set()
    rows = []
    for merchant_id, ref, snapshot in orders:
        doc = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
        for kind, key in sorted(_keys(ref, doc or {})):
            if (merchant_id, kind, key) not in taken:
                taken.add((merchant_id, kind, key))
                rows.append(
                    {"merchant_id": merchant_id, "kind": kind, "key": key, "order_ref": ref}
                )
    return rows


def _keys(ref: str, doc: Mapping[str, Any]) -> set[tuple[str, str]]:
    tracking = (doc.get("fulfillment") or {}).get("tracking") or []
    ids = doc.get("system_ids") or {}
    keys = {(TRACKING_NUMBER, str(code)) for code in tracking if code}
    keys |= {(kind, str(key)) for kind, key in ids.items() if kind in LINK_KEYS and key}
    return set() if any(key == ref for _, key in keys) else keys


def downgrade() -> None:
    op.drop_table("order_keys")
