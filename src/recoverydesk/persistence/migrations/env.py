"""Alembic environment: runs against the URL the desk was given (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

from recoverydesk.persistence.database import make_engine
from recoverydesk.persistence.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "recoverydesk passes the database URL to Alembic"

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
