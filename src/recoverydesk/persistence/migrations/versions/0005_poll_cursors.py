"""polling: one stored cursor per merchant and polled system

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recoverydesk.persistence.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "poll_cursors",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("merchant_id", Id, sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("cursor", sa.Text()),
        sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("due_at", UTCDateTime()),
        sa.Column("polled_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("merchant_id", "name", name="uq_poll_cursors_merchant_id"),
    )


def downgrade() -> None:
    op.drop_table("poll_cursors")
