"""triage: rule, data, owner, config version, deadline, revenue at risk, clocks, escalations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recoverydesk.persistence.tables import _open_case
from recoverydesk.persistence.types import Amount, JSONDoc, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FAR_FUTURE = "9999-12-31T00:00:00.000000Z"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("rule", sa.String(60), nullable=False, server_default=""))
        batch.add_column(sa.Column("data", JSONDoc, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("owner", sa.String(60)))
        batch.add_column(sa.Column("config_version", sa.Integer()))
        batch.add_column(sa.Column("deadline", UTCDateTime(timezone=True)))
        batch.add_column(
            sa.Column(
                "due_sort", UTCDateTime(timezone=True), nullable=False, server_default=FAR_FUTURE
            )
        )
        batch.add_column(sa.Column("revenue_at_risk", Amount(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("risk_cents", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("first_touched_at", UTCDateTime(timezone=True)))
        batch.add_column(sa.Column("clocks", JSONDoc, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("escalations", JSONDoc, nullable=False, server_default="[]"))
    op.drop_index("uq_cases_one_open_per_category", table_name="cases")
    op.create_index(
        "uq_cases_one_open_per_category",
        "cases",
        ["merchant_id", "order_ref", "category", "rule"],
        unique=True,
        sqlite_where=sa.text(_open_case),
        postgresql_where=sa.text(_open_case),
    )
    op.create_index(
        "ix_cases_queue_page",
        "cases",
        [
            "merchant_id",
            "queue",
            "priority",
            "due_sort",
            sa.text("risk_cents DESC"),
            "opened_at",
            "id",
        ],
        sqlite_where=sa.text(_open_case),
        postgresql_where=sa.text(_open_case),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_queue_page", table_name="cases")
    op.drop_index("uq_cases_one_open_per_category", table_name="cases")
    op.create_index(
        "uq_cases_one_open_per_category",
        "cases",
        ["merchant_id", "order_ref", "category"],
        unique=True,
        sqlite_where=sa.text(_open_case),
        postgresql_where=sa.text(_open_case),
    )
    with op.batch_alter_table("cases") as batch:
        for name in (
            "escalations",
            "clocks",
            "first_touched_at",
            "risk_cents",
            "revenue_at_risk",
            "due_sort",
            "deadline",
            "config_version",
            "owner",
            "data",
            "rule",
        ):
            batch.drop_column(name)
