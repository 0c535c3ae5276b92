"""owner indexes: open cases per owner in a queue, and the latest assignment in a queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recoverydesk.persistence.tables import _open_case

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_cases_open_owner",
        "cases",
        ["merchant_id", "queue", "owner"],
        sqlite_where=sa.text(_open_case),
        postgresql_where=sa.text(_open_case),
    )
    op.create_index(
        "ix_cases_last_owner",
        "cases",
        ["merchant_id", "queue", "id"],
        sqlite_where=sa.text("owner IS NOT NULL"),
        postgresql_where=sa.text("owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_last_owner", table_name="cases")
    op.drop_index("ix_cases_open_owner", table_name="cases")
