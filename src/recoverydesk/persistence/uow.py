"""The unit of work: one transaction per message, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError, OperationalError

from recoverydesk.persistence.case_store import SqlCaseStore
from recoverydesk.persistence.event_store import SqlEventStore
from recoverydesk.persistence.job_queue import SqlJobQueue
from recoverydesk.persistence.merchant_store import SqlMerchantStore
from recoverydesk.persistence.order_store import SqlOrderStore
from recoverydesk.persistence.poll_store import SqlPollCursorStore
from recoverydesk.persistence.stopship_store import (
    SqlCancellationStore,
    SqlLedger,
    SqlOutboundLog,
)
from recoverydesk.services.ports import TransientConflict


class SqlUnitOfWork:
    events: SqlEventStore
    orders: SqlOrderStore
    cases: SqlCaseStore
    jobs: SqlJobQueue
    merchants: SqlMerchantStore
    cancellations: SqlCancellationStore
    ledger: SqlLedger
    outbound: SqlOutboundLog
    polls: SqlPollCursorStore

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine, self._read_only = engine, read_only
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> Self:
        connection = self._engine.connect()
        if self._read_only:
            connection = connection.execution_options(sqlite_begin="DEFERRED")
        self._connection = connection
        self._transaction = connection.begin()
        self.events = SqlEventStore(connection)
        self.orders = SqlOrderStore(connection)
        self.cases = SqlCaseStore(connection)
        self.jobs = SqlJobQueue(connection)
        self.merchants = SqlMerchantStore(connection)
        self.cancellations = SqlCancellationStore(connection)
        self.ledger = SqlLedger(connection)
        self.outbound = SqlOutboundLog(connection)
        self.polls = SqlPollCursorStore(connection)
        return self

    def commit(self) -> None:
        assert self._transaction is not None, "unit of work used outside its with-block"
        try:
            self._transaction.commit()
        except (OperationalError, DBAPIError) as error:
            raise _translate(error) from error

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        assert self._transaction is not None
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()
        if isinstance(error, DBAPIError):
            raise _translate(error) from error


_TRANSIENT = ("deadlock detected", "could not serialize", "database is locked")


def _translate(error: DBAPIError) -> Exception:
    text = str(error.orig).lower()
    if any(marker in text for marker in _TRANSIENT):
        return TransientConflict(f"the database asked to retry: {text.splitlines()[0]}")
    return error
