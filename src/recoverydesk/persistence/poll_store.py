"""Stored poll cursors, one row per merchant and polled system, locked while a page is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from recoverydesk.persistence.database import upsert_insert
from recoverydesk.persistence.tables import merchants, poll_cursors
from recoverydesk.services.ports import PollCursor


def _cursor(row: Row[Any]) -> PollCursor:
    return PollCursor(
        merchant_id=row.merchant_id,
        name=row.name,
        kind=row.kind,
        cursor=row.cursor,
        seq=row.seq,
        due_at=row.due_at,
        polled_at=row.polled_at,
    )


class SqlPollCursorStore:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def _select(self, merchant_id: int, name: str, *, lock: bool) -> PollCursor | None:
        query = select(poll_cursors).where(
            poll_cursors.c.merchant_id == merchant_id, poll_cursors.c.name == name
        )
        if lock:
            query = query.with_for_update()
        row = self._db.execute(query).first()
        return _cursor(row) if row else None

    def get(self, merchant_id: int, name: str) -> PollCursor | None:
        return self._select(merchant_id, name, lock=False)

    def lock(self, merchant_id: int, name: str, *, kind: str, now: datetime) -> PollCursor:
        found = self._select(merchant_id, name, lock=True)
        if found is not None:
            return found
        self._db.execute(
            upsert_insert(self._db, poll_cursors).on_conflict_do_nothing(
                index_elements=["merchant_id", "name"]
            ),
            {"merchant_id": merchant_id, "name": name, "kind": kind, "seq": 0, "updated_at": now},
        )
        # created here, or by a transaction that raced this one (then wait for it and read it)
        created = self._select(merchant_id, name, lock=True)
        assert created is not None
        return created

    def save(self, cursor: PollCursor, *, now: datetime) -> None:
        self._db.execute(
            update(poll_cursors)
            .where(
                poll_cursors.c.merchant_id == cursor.merchant_id,
                poll_cursors.c.name == cursor.name,
            )
            .values(
                kind=cursor.kind,
                cursor=cursor.cursor,
                seq=cursor.seq,
                due_at=cursor.due_at,
                polled_at=cursor.polled_at,
                updated_at=now,
            )
        )

    def merchant_ids(self) -> list[int]:
        return list(self._db.execute(select(merchants.c.id).order_by(merchants.c.id)).scalars())
