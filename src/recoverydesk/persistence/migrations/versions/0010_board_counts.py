"""board counts: the queue board's counts of open cases by queue, priority and SLA state are
read from one partial index of the open cases holding every column the count reads (queue,
priority, operational due time and status), so neither database visits the cases' rows
(``entrypoints.web.board_query``)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-17
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_open_case = "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"


def upgrade() -> None:
    op.create_index(
        "ix_cases_open_counts",
        "cases",
        ["merchant_id", "queue", "priority", "due_sort", "status"],
        sqlite_where=sa.text(_open_case),
        postgresql_where=sa.text(_open_case),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_open_counts", table_name="cases")
