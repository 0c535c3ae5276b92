"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import recoverydesk.persistence.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("config_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("name", name=op.f("uq_merchants_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoked_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_api_tokens_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "cases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("order_ref", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("hold_type", sa.String(length=30), nullable=True),
        sa.Column("classification", sa.String(length=40), nullable=True),
        sa.Column("priority", sa.String(length=4), nullable=True),
        sa.Column("queue", sa.String(length=60), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column("reason_code", sa.String(length=30), nullable=True),
        sa.Column("root_cause", sa.String(length=60), nullable=True),
        sa.Column(
            "opened_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "closed_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column(
            "event_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_cases_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index("ix_cases_order", ["merchant_id", "order_ref"], unique=False)
        batch_op.create_index(
            "ix_cases_status", ["merchant_id", "status", "opened_at"], unique=False
        )
        batch_op.create_index(
            "uq_cases_one_open_per_category",
            ["merchant_id", "order_ref", "category"],
            unique=True,
            sqlite_where=sa.text(
                "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"
            ),
            postgresql_where=sa.text(
                "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"
            ),
        )

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("order_ref", sa.String(length=200), nullable=False),
        sa.Column(
            "occurred_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "received_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_events_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("merchant_id", "event_id", name="uq_events_merchant_event"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_order", ["merchant_id", "order_ref", "occurred_at"], unique=False
        )

    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column(
            "due_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="8", nullable=False),
        sa.Column(
            "lease_until", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_jobs_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("merchant_id", "key", name="uq_jobs_merchant_key"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_due", ["status", "due_at"], unique=False)

    op.create_table(
        "merchant_configs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "applied_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_configs_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_configs")),
        sa.UniqueConstraint("merchant_id", "version", name="uq_merchant_configs_version"),
    )
    op.create_table(
        "orders",
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=50), nullable=True),
        sa.Column("fulfillment_type", sa.String(length=20), nullable=True),
        sa.Column("value", recoverydesk.persistence.types.Amount(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("customer_tier", sa.String(length=20), nullable=True),
        sa.Column(
            "placed_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "ship_by", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "promised_by", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "fulfillment_status",
            sa.String(length=20),
            server_default="not_released",
            nullable=False,
        ),
        sa.Column("payment_status", sa.String(length=20), server_default="none", nullable=False),
        sa.Column("captured", recoverydesk.persistence.types.Amount(), nullable=True),
        sa.Column("refunded", recoverydesk.persistence.types.Amount(), nullable=True),
        sa.Column("cancelled", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column(
            "partially_cancelled", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.Column(
            "cancelled_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "shipped_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "delivered_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("event_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "last_event_at",
            recoverydesk.persistence.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("last_event_id", sa.String(length=200), nullable=True),
        sa.Column(
            "snapshot",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_orders_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "ref", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_placed", ["merchant_id", "placed_at"], unique=False)

    op.create_table(
        "case_timeline",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_timeline_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_case_timeline_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_timeline")),
    )
    with op.batch_alter_table("case_timeline", schema=None) as batch_op:
        batch_op.create_index("ix_case_timeline_case", ["case_id", "id"], unique=False)

    op.create_table(
        "job_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=False),
        sa.Column(
            "started_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "finished_at", recoverydesk.persistence.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("result", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_attempts_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_job_attempts_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_attempts")),
        sa.UniqueConstraint("job_id", "attempt", name="uq_job_attempts_attempt"),
    )


def downgrade() -> None:
    op.drop_table("job_attempts")
    with op.batch_alter_table("case_timeline", schema=None) as batch_op:
        batch_op.drop_index("ix_case_timeline_case")

    op.drop_table("case_timeline")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_placed")

    op.drop_table("orders")
    op.drop_table("merchant_configs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_due")

    op.drop_table("jobs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_order")

    op.drop_table("events")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_cases_one_open_per_category",
            sqlite_where=sa.text(
                "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"
            ),
            postgresql_where=sa.text(
                "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"
            ),
        )
        batch_op.drop_index("ix_cases_status")
        batch_op.drop_index("ix_cases_order")

    op.drop_table("cases")
    op.drop_table("api_tokens")
    op.drop_table("merchants")
