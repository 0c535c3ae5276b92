"""Users of the web desk, their merchants, their sessions and the audit log (``services.users``).

A store is its own short transaction: ``with SqlUserStore(engine) as users: ...; users.commit()``
(rolled back unless committed), apart from the unit of work of case changes, so a refused case
action is audited too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, Row, insert, select, update

from recoverydesk.persistence.tables import (
    audit_log,
    merchants,
    user_merchants,
    users,
    web_sessions,
)
from recoverydesk.services.ports import AuditEntry, StoredUser


class SqlUserStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def __enter__(self) -> Self:
        self._connection = self._engine.connect()
        self._connection.begin()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None

    @property
    def _db(self) -> Connection:
        assert self._connection is not None, "user store used outside its with-block"
        return self._connection

    def commit(self) -> None:
        self._db.commit()

    def add(
        self,
        name: str,
        *,
        role: str,
        password_hash: str,
        merchant_ids: Sequence[int],
        now: datetime,
    ) -> StoredUser:
        user_id = self._db.execute(
            insert(users)
            .values(name=name, role=role, password_hash=password_hash, created_at=now)
            .returning(users.c.id)
        ).scalar_one()
        if merchant_ids:
            rows = [{"user_id": user_id, "merchant_id": m} for m in dict.fromkeys(merchant_ids)]
            self._db.execute(insert(user_merchants), rows)
        found = self._by(users.c.id == user_id)
        assert found is not None
        return found

    def by_name(self, name: str) -> StoredUser | None:
        return self._by(users.c.name == name)

    def _by(self, condition: Any) -> StoredUser | None:
        row = self._db.execute(select(users).where(condition)).first()
        return self._user(row) if row else None

    def _user(self, row: Row[Any]) -> StoredUser:
        query = (
            select(merchants.c.id, merchants.c.name)
            .join(user_merchants, user_merchants.c.merchant_id == merchants.c.id)
            .where(user_merchants.c.user_id == row.id)
            .order_by(merchants.c.name)
        )
        return StoredUser(
            id=row.id,
            name=row.name,
            role=row.role,
            password_hash=row.password_hash,
            merchants={int(m_id): str(m_name) for m_id, m_name in self._db.execute(query)},
            disabled=row.disabled_at is not None,
        )

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._db.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )

    def start_session(
        self, user_id: int, *, token_hash: str, csrf: str, now: datetime, expires_at: datetime
    ) -> None:
        self._db.execute(
            insert(web_sessions).values(
                token_hash=token_hash,
                user_id=user_id,
                csrf=csrf,
                created_at=now,
                expires_at=expires_at,
            )
        )

    def session(self, token_hash: str, *, now: datetime) -> tuple[StoredUser, str] | None:
        query = (
            select(users, web_sessions.c.csrf)
            .join(web_sessions, web_sessions.c.user_id == users.c.id)
            .where(
                web_sessions.c.token_hash == token_hash,
                web_sessions.c.ended_at.is_(None),
                web_sessions.c.expires_at > now,
                users.c.disabled_at.is_(None),
            )
        )
        row = self._db.execute(query).first()
        return (self._user(row), str(row.csrf)) if row else None

    def end_session(self, token_hash: str, *, now: datetime) -> None:
        self._db.execute(
            update(web_sessions)
            .where(web_sessions.c.token_hash == token_hash, web_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )

    def audit(self, entry: AuditEntry) -> None:
        self._db.execute(
            insert(audit_log).values(
                at=entry.at,
                user=entry.user,
                merchant_id=entry.merchant_id,
                action=entry.action,
                target=entry.target,
                detail=dict(entry.detail),
            )
        )

    def audit_trail(self, *, merchant_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if merchant_id is not None:
            query = query.where(audit_log.c.merchant_id == merchant_id)
        return [
            AuditEntry(
                at=row.at,
                user=row.user,
                action=row.action,
                merchant_id=row.merchant_id,
                target=row.target,
                detail=dict(row.detail),
            )
            for row in self._db.execute(query)
        ]
