"""kpi indexes: the weekly KPI queries read cases by close and first-touch time, cancel
requests by request time and events by type and time (``reports.kpis``)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_cases_closed", "cases", ["merchant_id", "closed_at"]),
    ("ix_cases_first_touch", "cases", ["merchant_id", "first_touched_at"]),
    ("ix_cancellations_requested", "cancellations", ["merchant_id", "requested_at"]),
    ("ix_events_type", "events", ["merchant_id", "type", "occurred_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
