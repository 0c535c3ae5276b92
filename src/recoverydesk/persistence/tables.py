"""The schema. Every row carries its merchant; every query is scoped by it."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    text,
)

from recoverydesk.persistence.types import Amount, JSONDoc, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer(), "sqlite")

merchants = Table(
    "merchants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("config_version", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
)

merchant_configs = Table(
    "merchant_configs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", String(500), nullable=False),
    Column("content", Text, nullable=False),
    Column("settings", JSONDoc, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "version", name="uq_merchant_configs_version"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("source", String(20), nullable=False),
    Column("type", String(40), nullable=False),
    Column("order_ref", String(200), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("payload", JSONDoc, nullable=False),
    Column("raw", Text, nullable=False),
    UniqueConstraint("merchant_id", "event_id", name="uq_events_merchant_event"),
    Index("ix_events_order", "merchant_id", "order_ref", "occurred_at"),
    Index("ix_events_type", "merchant_id", "type", "occurred_at"),  # KPIs: disputes, captures
)

orders = Table(
    "orders",
    metadata,
    Column("merchant_id", ForeignKey("merchants.id"), primary_key=True),
    Column("ref", String(200), primary_key=True),
    Column("channel", String(50)),
    Column("fulfillment_type", String(20)),
    Column("value", Amount),
    Column("currency", String(3)),
    Column("customer_tier", String(20)),
    Column("placed_at", UTCDateTime),
    Column("ship_by", UTCDateTime),
    Column("promised_by", UTCDateTime),
    Column("fulfillment_status", String(20), nullable=False, server_default="not_released"),
    Column("payment_status", String(20), nullable=False, server_default="none"),
    Column("captured", Amount),
    Column("refunded", Amount),
    Column("cancelled", Boolean, nullable=False, server_default=text("false")),
    Column("partially_cancelled", Boolean, nullable=False, server_default=text("false")),
    Column("cancelled_at", UTCDateTime),
    Column("shipped_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("event_count", Integer, nullable=False, server_default="0"),
    Column("last_event_at", UTCDateTime),
    Column("last_event_id", String(200)),
    Column("snapshot", JSONDoc, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_orders_placed", "merchant_id", "placed_at"),
)

# The keys in outside systems that name an order (``services.ports.LINK_KEYS``: its parcels'
# tracking numbers, its payment intent ...), recorded when an order is saved, so that an event
# knowing only such a key reaches its order (``services.intake``). The first order saved with a
# key keeps it; a stand-in order (named after its own key) records none.
order_keys = Table(
    "order_keys",
    metadata,
    Column("merchant_id", ForeignKey("merchants.id"), primary_key=True),
    Column("kind", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("order_ref", String(200), nullable=False),
)

FAR_FUTURE = "9999-12-31T00:00:00.000000Z"  # the sort key of a case with no operational deadline
OPEN_STATUSES = ("new", "triaged", "in_progress", "waiting_customer", "waiting_partner")


def is_open(status: Any) -> ColumnElement[bool]:
    """``status IN (...)`` with the statuses written into the SQL, not bound: SQLite uses a
    partial index only when it can see that the query implies the index's own condition."""
    return cast(
        "ColumnElement[bool]",
        status.in_(
            bindparam("open_statuses", list(OPEN_STATUSES), expanding=True, literal_execute=True)
        ),
    )


_open_case = "status IN ('new', 'triaged', 'in_progress', 'waiting_customer', 'waiting_partner')"

cases = Table(
    "cases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("order_ref", String(200), nullable=False),
    Column("category", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("hold_type", String(30)),
    Column("classification", String(40)),
    Column("priority", String(4)),
    Column("queue", String(60)),
    Column("outcome", String(30)),
    Column("reason_code", String(30)),
    Column("root_cause", String(60)),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("opened_by", String(200), nullable=False),
    Column("event_ids", JSONDoc, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("rule", String(60), nullable=False, server_default=""),
    Column("data", JSONDoc, nullable=False, server_default="{}"),
    Column("owner", String(60)),
    Column("config_version", Integer),
    Column("deadline", UTCDateTime),
    Column("due_sort", UTCDateTime, nullable=False, server_default=FAR_FUTURE),
    Column("revenue_at_risk", Amount, nullable=False, server_default="0"),
    Column("risk_cents", BigInteger, nullable=False, server_default="0"),  # for ordering
    Column("first_touched_at", UTCDateTime),
    Column("clocks", JSONDoc, nullable=False, server_default="{}"),
    Column("escalations", JSONDoc, nullable=False, server_default="[]"),
    # The case's order's segment and value (NULL while the desk has no such order), kept equal
    # to the order's by the case and order stores: the KPI figures read cases without a join.
    Column("order_channel", String(50)),
    Column("order_fulfillment_type", String(20)),
    Column("order_value", Amount),
    Column("order_currency", String(3)),
    Index("ix_cases_order", "merchant_id", "order_ref"),
    Index("ix_cases_status", "merchant_id", "status", "opened_at"),
    # KPIs by close time; with the open time, the cases open at a past moment are found in it
    Index("ix_cases_closed_opened", "merchant_id", "closed_at", "opened_at"),
    Index("ix_cases_opened", "merchant_id", "opened_at"),  # KPIs: the cases opened in a period
    Index(  # KPIs: the open backlog by segment, category and age, from the index alone
        "ix_cases_open_backlog",
        *("merchant_id", "opened_at", "category", "order_channel", "order_fulfillment_type"),
        *("order_ref", "order_value", "order_currency", "status"),
        sqlite_where=text(_open_case),
        postgresql_where=text(_open_case),
    ),
    Index("ix_cases_first_touch", "merchant_id", "first_touched_at"),  # first-touch SLA
    Index(
        "ix_cases_queue_page",
        "merchant_id",
        "queue",
        "priority",
        "due_sort",
        text("risk_cents DESC"),
        "opened_at",
        "id",
        sqlite_where=text(_open_case),
        postgresql_where=text(_open_case),
    ),
    Index(  # the board's counts, read from the index alone (status makes it covering on SQLite)
        "ix_cases_open_counts",
        "merchant_id",
        "queue",
        "priority",
        "due_sort",
        "status",
        sqlite_where=text(_open_case),
        postgresql_where=text(_open_case),
    ),
    Index(
        "ix_cases_open_owner",
        "merchant_id",
        "queue",
        "owner",
        sqlite_where=text(_open_case),
        postgresql_where=text(_open_case),
    ),
    Index(
        "ix_cases_last_owner",
        "merchant_id",
        "queue",
        "id",
        sqlite_where=text("owner IS NOT NULL"),
        postgresql_where=text("owner IS NOT NULL"),
    ),
    Index(
        "uq_cases_one_open_per_category",
        "merchant_id",
        "order_ref",
        "category",
        "rule",
        unique=True,
        sqlite_where=text(_open_case),
        postgresql_where=text(_open_case),
    ),
)

case_timeline = Table(
    "case_timeline",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("case_id", ForeignKey("cases.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("event_id", String(200)),
    Column("detail", JSONDoc, nullable=False),
    Index("ix_case_timeline_case", "case_id", "id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("kind", String(60), nullable=False),
    Column("key", String(300), nullable=False),
    Column("payload", JSONDoc, nullable=False),
    Column("status", String(12), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="8"),
    Column("lease_until", UTCDateTime),
    Column("locked_by", String(100)),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    UniqueConstraint("merchant_id", "key", name="uq_jobs_merchant_key"),
    Index("ix_jobs_due", "status", "due_at"),
)

job_attempts = Table(
    "job_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("job_id", ForeignKey("jobs.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(100), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("result", String(20)),
    Column("error", Text),
    UniqueConstraint("job_id", "attempt", name="uq_job_attempts_attempt"),
)

# The stop-ship workflows (STOPSHIP.md). ``state`` is the whole workflow; the columns beside it
# are what queries and the one-open-workflow-per-order rule need.
cancellations = Table(
    "cancellations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("order_ref", String(200), nullable=False),
    Column("case_id", ForeignKey("cases.id")),
    Column("stage", String(20), nullable=False),
    Column("outcome", String(30)),
    Column("requested_by", String(10), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("final_outcome_at", UTCDateTime),
    Column("state", JSONDoc, nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_cancellations_order", "merchant_id", "order_ref"),
    Index("ix_cancellations_case", "merchant_id", "case_id"),
    Index("ix_cancellations_requested", "merchant_id", "requested_at"),  # time to cancel
    Index(
        "uq_cancellations_one_open_per_order",
        "merchant_id",
        "order_ref",
        unique=True,
        sqlite_where=text("stage <> 'done'"),
        postgresql_where=text("stage <> 'done'"),
    ),
)

# The refund ledger: every void, refund and authorization reduction the desk reserved or sent.
# ``key`` is the idempotency key of the intent: unique, so one intent is one refund.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("order_ref", String(200), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("key", String(300), nullable=False),
    Column("amount", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(12), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("case_id", ForeignKey("cases.id")),
    Column("cancellation_id", ForeignKey("cancellations.id")),
    Column("reference", String(200)),
    Column("confirmed_by", String(200)),
    Column("detail", JSONDoc, nullable=False, server_default="{}"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "key", name="uq_ledger_entries_key"),
    Index("ix_ledger_entries_order", "merchant_id", "order_ref"),
)

# Every command the desk sent to an outside system, with its idempotency key and answer.
outbound_calls = Table(
    "outbound_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("order_ref", String(200)),
    Column("system", String(20), nullable=False),
    Column("action", String(40), nullable=False),
    Column("key", String(300), nullable=False),
    Column("params", JSONDoc, nullable=False),
    Column("result", String(12), nullable=False),
    Column("answer", JSONDoc, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_outbound_calls_order", "merchant_id", "order_ref", "id"),
    Index("ix_outbound_calls_key", "merchant_id", "key"),
)

# Where each polled system of a merchant was read up to (``connectors.polling.<name>``):
# ``cursor`` moves only in the transaction that stores the events read before it; ``seq``
# counts the polls, and ``due_at`` is when the poll job ``seq`` is due (None: no chain runs).
poll_cursors = Table(
    "poll_cursors",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("merchant_id", ForeignKey("merchants.id"), nullable=False),
    Column("name", String(40), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("cursor", Text),
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("due_at", UTCDateTime),
    Column("polled_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "name", name="uq_poll_cursors_merchant_id"),
)

# People who log in to the web desk (``services.users``): a role, an argon2 password hash, and
# the merchants each may work (a provider's agent works several). Sessions are server-side:
# the cookie holds a random token whose hash is stored here, so logging out ends it everywhere.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(60), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(300), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
)

user_merchants = Table(
    "user_merchants",
    metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("merchant_id", ForeignKey("merchants.id"), primary_key=True),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
)

# Every human action: logins (and failed ones), logouts, users added, actions on cases.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("user", String(100), nullable=False),
    Column("merchant_id", ForeignKey("merchants.id")),
    Column("action", String(40), nullable=False),
    Column("target", String(200)),
    Column("detail", JSONDoc, nullable=False, server_default="{}"),
    Index("ix_audit_log_merchant", "merchant_id", "at"),
    Index("ix_audit_log_at", "at"),
)
