"""The jobs/timers table: an outbox written in the same transaction as the change that causes it.

Claims take a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers), every
attempt is kept in ``job_attempts``, and a job whose lease ran out is claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, select, update

from recoverydesk.persistence.database import upsert_insert
from recoverydesk.persistence.tables import job_attempts, jobs
from recoverydesk.services.ports import Job, JobRequest

PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"


class SqlJobQueue:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def enqueue(self, requests: Sequence[JobRequest], *, now: datetime) -> None:
        if not requests:
            return
        rows = [
            {
                "merchant_id": r.merchant_id,
                "kind": r.kind,
                "key": r.key,
                "payload": r.payload,
                "status": PENDING,
                "due_at": r.due_at,
                "attempts": 0,
                "max_attempts": r.max_attempts,
                "created_at": now,
                "updated_at": now,
            }
            for r in requests
        ]
        stmt = upsert_insert(self._db, jobs).on_conflict_do_nothing(
            index_elements=["merchant_id", "key"]
        )
        self._db.execute(stmt, rows)

    def _claimable(self, condition: ColumnElement[bool], limit: int) -> list[tuple[datetime, int]]:
        query = (
            select(jobs.c.due_at, jobs.c.id)
            .where(condition)
            .order_by(jobs.c.due_at, jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(row.due_at, row.id) for row in self._db.execute(query)]

    def claim(self, *, now: datetime, worker: str, lease: timedelta, limit: int) -> list[Job]:
        self._bury_exhausted(now)
        # Two index-ordered, limited reads rather than one with an OR: with a backlog, the OR made
        # both databases gather and sort every due job on each claim.
        candidates = self._claimable(and_(jobs.c.status == PENDING, jobs.c.due_at <= now), limit)
        candidates += self._claimable(
            and_(jobs.c.status == RUNNING, jobs.c.lease_until < now), limit
        )
        ids = [job_id for _, job_id in sorted(candidates)[:limit]]
        if not ids:
            return []
        self._db.execute(
            update(job_attempts)
            .where(job_attempts.c.job_id.in_(ids), job_attempts.c.finished_at.is_(None))
            .values(finished_at=now, result="lease_expired")
        )
        claimed = self._db.execute(
            update(jobs)
            .where(jobs.c.id.in_(ids))
            .values(
                status=RUNNING,
                attempts=jobs.c.attempts + 1,
                locked_by=worker,
                lease_until=now + lease,
                updated_at=now,
            )
            .returning(
                jobs.c.id,
                jobs.c.merchant_id,
                jobs.c.kind,
                jobs.c.key,
                jobs.c.payload,
                jobs.c.attempts,
                jobs.c.max_attempts,
                jobs.c.due_at,
            )
        ).all()
        self._db.execute(
            insert(job_attempts),
            [
                {
                    "merchant_id": row.merchant_id,
                    "job_id": row.id,
                    "attempt": row.attempts,
                    "worker": worker,
                    "started_at": now,
                }
                for row in claimed
            ],
        )
        found = [
            Job(
                id=row.id,
                merchant_id=row.merchant_id,
                kind=row.kind,
                key=row.key,
                payload=dict(row.payload),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                due_at=row.due_at,
                worker=worker,
            )
            for row in claimed
        ]
        return sorted(found, key=lambda job: (job.due_at, job.id))

    def _bury_exhausted(self, now: datetime) -> None:
        """A job whose last allowed attempt died with its worker goes to the dead letters."""
        self._db.execute(
            update(jobs)
            .where(
                jobs.c.status == RUNNING,
                jobs.c.lease_until < now,
                jobs.c.attempts >= jobs.c.max_attempts,
            )
            .values(
                status=DEAD,
                lease_until=None,
                finished_at=now,
                updated_at=now,
                last_error="lease expired on the last attempt (worker lost)",
            )
        )

    def _finish(
        self, job: Job, values: dict[str, Any], result: str, error: str | None, now: datetime
    ) -> bool:
        done = self._db.execute(
            update(jobs)
            .where(
                jobs.c.id == job.id,
                jobs.c.status == RUNNING,
                jobs.c.locked_by == job.worker,
                jobs.c.attempts == job.attempts,
            )
            .values(**values, lease_until=None, updated_at=now)
        )
        if done.rowcount != 1:
            return False
        self._db.execute(
            update(job_attempts)
            .where(job_attempts.c.job_id == job.id, job_attempts.c.attempt == job.attempts)
            .values(finished_at=now, result=result, error=error)
        )
        return True

    def complete(self, job: Job, *, now: datetime) -> bool:
        return self._finish(job, {"status": DONE, "finished_at": now}, "done", None, now)

    def fail(self, job: Job, *, now: datetime, error: str, retry_at: datetime | None) -> None:
        values: dict[str, Any] = {"last_error": error}
        if retry_at is None:
            values.update(status=DEAD, finished_at=now)
        else:
            values.update(status=PENDING, due_at=retry_at)
        self._finish(job, values, "failed", error, now)

    def next_due(self) -> datetime | None:
        pending = select(func.min(jobs.c.due_at)).where(jobs.c.status == PENDING)
        leased = select(func.min(jobs.c.lease_until)).where(jobs.c.status == RUNNING)
        moments = [self._db.execute(q).scalar() for q in (pending, leased)]
        present = [m for m in moments if m is not None]
        return min(present) if present else None

    def listing(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(
            jobs.c.id,
            jobs.c.merchant_id,
            jobs.c.kind,
            jobs.c.key,
            jobs.c.status,
            jobs.c.due_at,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.last_error,
        )
        if status:
            query = query.where(jobs.c.status == status)
        return [
            dict(row._mapping) for row in self._db.execute(query.order_by(jobs.c.id).limit(limit))
        ]

    def attempts(self, job_id: int) -> list[dict[str, Any]]:
        query = (
            select(job_attempts)
            .where(job_attempts.c.job_id == job_id)
            .order_by(job_attempts.c.attempt)
        )
        return [dict(row._mapping) for row in self._db.execute(query)]

    def retry(self, job_id: int, *, now: datetime) -> bool:
        """Put a dead-lettered job back in the queue (operator action)."""
        result = self._db.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == DEAD)
            .values(
                status=PENDING,
                due_at=now,
                max_attempts=jobs.c.attempts + 1,
                finished_at=None,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    def lag_seconds(self, now: datetime) -> float:
        oldest = self._db.execute(
            select(func.min(jobs.c.due_at)).where(jobs.c.status == PENDING, jobs.c.due_at <= now)
        ).scalar()
        return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0

    def counts(self) -> dict[str, int]:
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        return {str(status): int(n) for status, n in self._db.execute(query)}
