"""stop-ship: cancellation workflows, the refund ledger and the log of outbound calls

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recoverydesk.persistence.types import Amount, JSONDoc, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", Id, primary_key=True, autoincrement=True)


def _merchant() -> sa.Column[int]:
    return sa.Column("merchant_id", Id, sa.ForeignKey("merchants.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "cancellations",
        _id(),
        _merchant(),
        sa.Column("order_ref", sa.String(200), nullable=False),
        sa.Column("case_id", Id, sa.ForeignKey("cases.id")),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(30)),
        sa.Column("requested_by", sa.String(10), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("final_outcome_at", UTCDateTime()),
        sa.Column("state", JSONDoc, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cancellations_order", "cancellations", ["merchant_id", "order_ref"])
    op.create_index("ix_cancellations_case", "cancellations", ["merchant_id", "case_id"])
    op.create_index(
        "uq_cancellations_one_open_per_order",
        "cancellations",
        ["merchant_id", "order_ref"],
        unique=True,
        sqlite_where=sa.text("stage <> 'done'"),
        postgresql_where=sa.text("stage <> 'done'"),
    )
    op.create_table(
        "ledger_entries",
        _id(),
        _merchant(),
        sa.Column("order_ref", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("amount", Amount(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("case_id", Id, sa.ForeignKey("cases.id")),
        sa.Column("cancellation_id", Id, sa.ForeignKey("cancellations.id")),
        sa.Column("reference", sa.String(200)),
        sa.Column("confirmed_by", sa.String(200)),
        sa.Column("detail", JSONDoc, nullable=False, server_default="{}"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("merchant_id", "key", name="uq_ledger_entries_key"),
    )
    op.create_index("ix_ledger_entries_order", "ledger_entries", ["merchant_id", "order_ref"])
    op.create_table(
        "outbound_calls",
        _id(),
        _merchant(),
        sa.Column("order_ref", sa.String(200)),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("params", JSONDoc, nullable=False),
        sa.Column("result", sa.String(12), nullable=False),
        sa.Column("answer", JSONDoc, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_outbound_calls_order", "outbound_calls", ["merchant_id", "order_ref", "id"])
    op.create_index("ix_outbound_calls_key", "outbound_calls", ["merchant_id", "key"])


def downgrade() -> None:
    for table in ("outbound_calls", "ledger_entries", "cancellations"):
        op.drop_table(table)
