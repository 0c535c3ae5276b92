"""case segments: each case carries its order's channel, fulfilment type, value and currency
(``order_channel`` ...), kept equal to the order's by the case and order stores, so the KPI
figures by segment read cases without joining each to its order (``reports.kpi_cases``);
the columns are backfilled from the orders; and the cases' close-time index gets their open
time, so the cases open at a past moment (opened by then, closed after) are found in the index;
and the cases opened in a period are read by their open time; the open backlog by segment,
category and age is read from an index of the open cases alone

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-17
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recoverydesk.persistence.types import Amount

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    ("order_channel", "channel", sa.String(50)),
    ("order_fulfillment_type", "fulfillment_type", sa.String(20)),
    ("order_value", "value", Amount()),
    ("order_currency", "currency", sa.String(3)),
)

OPEN = "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"
BACKLOG = ("order_ref", "order_value", "order_currency", "status")


def upgrade() -> None:
    for name, _, kind in COLUMNS:
        op.add_column("cases", sa.Column(name, kind))
    names = [name for name, _, _ in COLUMNS]
    sources = [source for _, source, _ in COLUMNS]
    cases = sa.table("cases", *(sa.column(n) for n in ["merchant_id", "order_ref", *names]))
    orders = sa.table("orders", *(sa.column(n) for n in ["merchant_id", "ref", *sources]))
    of_order = {
        name: sa.select(orders.c[source])
        .where(orders.c.merchant_id == cases.c.merchant_id, orders.c.ref == cases.c.order_ref)
        .scalar_subquery()
        for name, source, _ in COLUMNS
    }
    op.execute(sa.update(cases).values(of_order))
    op.create_index("ix_cases_closed_opened", "cases", ["merchant_id", "closed_at", "opened_at"])
    op.drop_index("ix_cases_closed", table_name="cases")
    op.create_index("ix_cases_opened", "cases", ["merchant_id", "opened_at"])
    op.create_index(
        "ix_cases_open_backlog",
        "cases",
        [
            *("merchant_id", "opened_at", "category", "order_channel", "order_fulfillment_type"),
            *BACKLOG,
        ],
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_open_backlog", table_name="cases")
    op.drop_index("ix_cases_opened", table_name="cases")
    op.create_index("ix_cases_closed", "cases", ["merchant_id", "closed_at"])
    op.drop_index("ix_cases_closed_opened", table_name="cases")
    for name, _, _ in reversed(COLUMNS):
        op.drop_column("cases", name)
