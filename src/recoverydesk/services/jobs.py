"""Durable jobs and timers: leased, run once, retried with backoff, then dead-lettered.

A job's handler runs inside the same unit of work that marks the job done, so what it changes in
the desk's own database happens exactly once: a worker that dies mid-job rolls back, and the next
worker picks the job up when the lease ends. Calls to outside systems carry the job's key as their
idempotency key, so a repeat after a crash is harmless too.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog

from recoverydesk.domain.errors import DeskError
from recoverydesk.services.clock import Clock
from recoverydesk.services.ports import Job, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("recoverydesk.jobs")


@runtime_checkable
class OutsideStep(Protocol):
    """A job that calls an outside system. The call is made with no transaction open (an HTTP
    call must not hold the database's write lock): ``prepare`` reads what the call needs,
    ``call`` makes it, ``record`` writes what came back in the unit of work that completes the
    job. A worker that dies after the call and before the record leaves the job to be retried:
    the call is repeated with the same idempotency key, which the outside system honours."""

    def prepare(self, uow: UnitOfWork, job: Job, now: datetime) -> Any: ...

    def call(self, prepared: Any) -> Any: ...

    def record(
        self, uow: UnitOfWork, job: Job, prepared: Any, result: Any, now: datetime
    ) -> None: ...


JobHandler = Callable[[UnitOfWork, Job, datetime], None] | OutsideStep


class LeaseLost(DeskError):
    code = "lease_lost"


@dataclass(frozen=True, slots=True)
class Backoff:
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2

    def delay(self, job: Job) -> timedelta:
        """Exponential backoff with jitter, reproducible for the same job and attempt."""
        raw = min(self.base * (2 ** max(job.attempts - 1, 0)), self.cap)
        spread = random.Random(f"{job.id}:{job.attempts}").uniform(-self.jitter, self.jitter)  # noqa: S311
        return timedelta(seconds=raw.total_seconds() * (1 + spread))


@dataclass(slots=True)
class RunStats:
    done: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0


class JobRunner:
    """Claims due jobs and runs their handlers; a worker process is a loop around ``run_due``."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        handlers: Mapping[str, JobHandler],
        worker: str,
        lease: timedelta = timedelta(seconds=60),
        backoff: Backoff | None = None,
        on_finish: Callable[[Job, str, float], None] | None = None,
    ) -> None:
        self._uow_factory, self._clock, self._handlers = uow_factory, clock, handlers
        self.worker, self.lease = worker, lease
        self._backoff = backoff or Backoff()
        self._on_finish = on_finish

    def run_due(self, *, limit: int = 20) -> RunStats:
        """Claim up to ``limit`` due jobs and run them one after another."""
        with self._uow_factory() as uow:
            jobs = uow.jobs.claim(
                now=self._clock.now(), worker=self.worker, lease=self.lease, limit=limit
            )
            uow.commit()
        stats = RunStats()
        for job in jobs:
            self._run(job, stats)
        return stats

    def _run(self, job: Job, stats: RunStats) -> None:
        started = self._clock.now()
        lag = (started - job.due_at).total_seconds()
        bound = log.bind(
            job_id=job.id, kind=job.kind, merchant_id=job.merchant_id, attempt=job.attempts
        )
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                raise DeskError(f"no handler for job kind {job.kind!r}", code="unknown_job")
            if isinstance(handler, OutsideStep):
                handler = self._call_outside(handler, job, started)
            with self._uow_factory() as uow:
                handler(uow, job, started)
                if not uow.jobs.complete(job, now=self._clock.now()):
                    raise LeaseLost(f"job {job.id} lease was taken over")
                uow.commit()
        except LeaseLost:
            stats.lost += 1
            bound.warning("job lease lost; its work was rolled back")
            self._finish(job, "lost", lag)
            return
        except Exception as error:
            self._record_failure(job, error, stats)
            bound.warning("job failed", error=str(error))
            self._finish(job, "failed", lag)
            return
        stats.done += 1
        bound.info("job done")
        self._finish(job, "done", lag)

    def _call_outside(
        self, step: OutsideStep, job: Job, started: datetime
    ) -> Callable[[UnitOfWork, Job, datetime], None]:
        with self._uow_factory() as uow:  # a short read; nothing is written, nothing held
            prepared = step.prepare(uow, job, started)
        result = step.call(prepared)

        def record(uow: UnitOfWork, job: Job, now: datetime) -> None:
            step.record(uow, job, prepared, result, self._clock.now())

        return record

    def _record_failure(self, job: Job, error: Exception, stats: RunStats) -> None:
        now = self._clock.now()
        exhausted = job.attempts >= job.max_attempts
        retry_at = None if exhausted else now + self._backoff.delay(job)
        detail = "".join(traceback.format_exception_only(error)).strip()[:2000]
        with self._uow_factory() as uow:
            uow.jobs.fail(job, now=now, error=detail, retry_at=retry_at)
            uow.commit()
        stats.failed += 1
        stats.dead += exhausted

    def _finish(self, job: Job, result: str, lag: float) -> None:
        if self._on_finish is not None:
            self._on_finish(job, result, lag)

    def next_due(self) -> datetime | None:
        with self._uow_factory() as uow:
            return uow.jobs.next_due()
