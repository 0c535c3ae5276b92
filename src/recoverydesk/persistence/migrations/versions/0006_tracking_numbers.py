"""tracking numbers: the order each parcel's tracking number belongs to

The table is filled from the tracking numbers already in the orders' snapshots
(``fulfillment.tracking``), in one statement per database; an order named after its own
tracking number (carrier events that found no order) gets none, and when two orders have the
same number the one that shipped first keeps it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_BACKFILL = {
    "postgresql": """
        INSERT INTO tracking_numbers (merchant_id, tracking, order_ref)
        SELECT o.merchant_id, t.code, o.ref
        FROM orders AS o,
             jsonb_array_elements_text(o.snapshot -> 'fulfillment' -> 'tracking') AS t(code)
        WHERE jsonb_typeof(o.snapshot -> 'fulfillment' -> 'tracking') = 'array'
          AND t.code <> o.ref
        ORDER BY o.shipped_at NULLS LAST, o.ref
        ON CONFLICT (merchant_id, tracking) DO NOTHING
    """,
    "sqlite": """
        INSERT INTO tracking_numbers (merchant_id, tracking, order_ref)
        SELECT o.merchant_id, t.value, o.ref
        FROM orders AS o, json_each(o.snapshot, '$.fulfillment.tracking') AS t
        WHERE json_type(o.snapshot, '$.fulfillment.tracking') = 'array'
          AND t.value <> o.ref
        ORDER BY o.shipped_at IS NULL, o.shipped_at, o.ref
        ON CONFLICT (merchant_id, tracking) DO NOTHING
    """,
}


def upgrade() -> None:
    op.create_table(
        "tracking_numbers",
        sa.Column("merchant_id", Id, sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("tracking", sa.String(200), nullable=False),
        sa.Column("order_ref", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "tracking", name="pk_tracking_numbers"),
    )
    op.execute(_BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_table("tracking_numbers")
