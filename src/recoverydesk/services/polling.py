"""Polling the merchant's systems that do not push: durable, restart-safe, with stored cursors.

Each configured poll (``connectors.polling.<name>`` of a merchant's configuration: ``kind``
picks the ``Poller``, ``every`` is an ISO 8601 duration, 5 minutes by default) is a chain of
``poll.run`` jobs, one at a time:

- ``poll.run`` is an ``OutsideStep``. ``prepare`` reads the stored cursor (``poll_cursors``) and
  the connection; ``call`` asks the poller for one page with no transaction open; ``record``
  ingests the page's events (``ingest_within``) and stores the new cursor in the same
  transaction. A worker that dies between the call and the record leaves the job to be claimed
  again when its lease ends: the same page is read again from the same cursor, and its events
  (deterministic ids) are stored once. The cursor never moves past events that were not stored.
  A temporary failure of the polled system (``OutsideUnavailable``: a 5xx, a timeout) fails the
  job, which is retried with backoff; the cursor does not move.
- The record enqueues the next poll in the same transaction: at once when the page said
  ``more``, else after ``every``. The cursor row counts the polls (``seq``) and says when the
  next one is due (``due_at``); the job's key is ``poll:<merchant>:<name>:<seq>:<due>``, so two
  workers (or a record and the scheduler) that enqueue it make one job. A job whose ``seq`` is
  not the row's any more (a duplicate) reads nothing into the desk and ends.
- ``schedule_polls`` makes sure every configured poll of every merchant has its next job: a poll
  never run (or stopped because it was removed from the configuration) gets a first job (keyed
  by the configuration version); a chain whose next job is a day overdue (its retries ran out)
  gets a new one (keyed by the day). Everything else is the chain's own doing.
  ``PollScheduler.tick`` runs it at most once a minute: the worker loop (``recoverydesk worker``
  and the worker thread of ``recoverydesk serve``) calls it on every pass, so a new merchant or
  a configuration change is picked up within a minute. Any number of workers may run it.
- A poll removed from the configuration, or whose kind has no poller, ends its chain
  (``due_at`` cleared). A poll whose ``kind`` changed starts again from no cursor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError

from recoverydesk.domain.errors import DeskError
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.clock import Clock
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.merchants import connectors_of
from recoverydesk.services.ports import (
    IncomingEvent,
    Job,
    JobRequest,
    Merchant,
    PollCursor,
    Poller,
    PollPage,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = structlog.get_logger("recoverydesk.polling")

RUN = "poll.run"
DEFAULT_EVERY = timedelta(minutes=5)
OVERDUE = timedelta(days=1)  # a chain's next poll this late has died (its retries ran out)
MAX_ATTEMPTS = 100  # a polled system down for hours is retried (backoff caps at an hour)
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def every_of(connection: Mapping[str, Any]) -> timedelta:
    """The poll's ``every`` (ISO 8601 duration such as ``PT5M``, or seconds)."""
    raw = connection.get("every")
    if raw is None:
        return DEFAULT_EVERY
    try:
        found = _DURATION.validate_python(raw)
    except ValidationError:
        raise DeskError(f"polling every: {raw!r} is not an ISO 8601 duration") from None
    return found if found > timedelta(0) else DEFAULT_EVERY


def poll_job(
    merchant_id: int, name: str, seq: int, due_at: datetime, tag: str | None = None
) -> JobRequest:
    """The job of poll ``seq``; its key names the due time, or ``tag`` when the scheduler
    starts a chain (then its own clock must not make two schedulers disagree)."""
    return JobRequest(
        merchant_id=merchant_id,
        kind=RUN,
        key=f"poll:{merchant_id}:{name}:{seq}:{tag or due_at.isoformat()}",
        due_at=due_at,
        payload={"name": name, "seq": seq},
        max_attempts=MAX_ATTEMPTS,
    )


# -- the poll job ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    name: str
    seq: int
    now: datetime
    kind: str | None = None  # None: the poll is no longer configured
    cursor: str | None = None
    every: timedelta = DEFAULT_EVERY
    connection: Mapping[str, Any] = field(default_factory=dict, repr=False)
    stale: bool = False  # another job took this poll's turn


class RunPoll:
    """``poll.run``: read one page of a polled system and store it with its cursor."""

    def __init__(self, pollers: Mapping[str, Poller]) -> None:
        self._pollers = pollers

    def prepare(self, uow: UnitOfWork, job: Job, now: datetime) -> Prepared:
        name, seq = str(job.payload["name"]), int(job.payload["seq"])
        merchant = _merchant_of(uow, job)
        stored = uow.polls.get(merchant.id, name)
        if stored is not None and stored.seq != seq:
            return Prepared(name, seq, now, stale=True)
        configured = connectors_of(uow, merchant).polling.get(name)
        if configured is None or configured.kind not in self._pollers:
            return Prepared(name, seq, now)
        connection = configured.resolved(os.environ)
        same_kind = stored is not None and stored.kind == configured.kind
        return Prepared(
            name,
            seq,
            now,
            kind=configured.kind,
            cursor=stored.cursor if stored is not None and same_kind else None,
            every=every_of(connection),
            connection=connection,
        )

    def call(self, prepared: Prepared) -> PollPage | None:
        if prepared.stale or prepared.kind is None:
            return None
        poller = self._pollers[prepared.kind]
        return poller.poll(prepared.connection, prepared.cursor, now=prepared.now)

    def record(
        self, uow: UnitOfWork, job: Job, prepared: Prepared, page: PollPage | None, now: datetime
    ) -> None:
        if prepared.stale:
            return
        merchant = _merchant_of(uow, job)
        row = uow.polls.lock(merchant.id, prepared.name, kind=prepared.kind or "", now=now)
        if row.seq != prepared.seq:
            return  # another job stored this poll meanwhile: its chain goes on
        if page is None or prepared.kind is None:
            row.due_at = None  # removed from the configuration: the chain ends here
            uow.polls.save(row, now=now)
            log.info("poll stopped: not configured", merchant=merchant.name, name=prepared.name)
            return
        stored = _ingest(uow, merchant, prepared, page, now)
        if page.cursor is not None:
            row.cursor = page.cursor
        elif row.kind != prepared.kind:
            row.cursor = None  # a new kind of system: the old cursor means nothing to it
        row.kind = prepared.kind
        row.seq += 1
        row.polled_at = now
        row.due_at = now if page.more else now + prepared.every
        uow.polls.save(row, now=now)
        uow.jobs.enqueue([poll_job(merchant.id, row.name, row.seq, row.due_at)], now=now)
        log.info(
            "polled",
            merchant=merchant.name,
            name=prepared.name,
            events=len(page.events),
            stored=stored,
            more=page.more,
        )


def _ingest(
    uow: UnitOfWork, merchant: Merchant, prepared: Prepared, page: PollPage, now: datetime
) -> int:
    from recoverydesk.services.intake import ingest_within

    items: list[IncomingEvent] = []
    for raw in page.events:
        try:
            items.append(IncomingEvent(parse_event(raw), json.dumps(raw, default=str)))
        except DeskError as error:  # one bad event must not stop the poll forever
            log.warning(
                "polled event skipped",
                merchant=merchant.name,
                name=prepared.name,
                event_id=str(raw.get("id")),
                error=str(error),
            )
    if not items:
        return 0
    report = ingest_within(uow, merchant=merchant, events=items, now=now)
    return report.stored


def _merchant_of(uow: UnitOfWork, job: Job) -> Merchant:
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise DeskError(f"merchant {job.merchant_id} of job {job.id} is gone", code="not_found")
    return merchant


# -- scheduling ------------------------------------------------------------------------------


def schedule_polls(uow: UnitOfWork, now: datetime) -> list[JobRequest]:
    """Make sure every configured poll of every merchant has its next job; returns what was
    asked for (jobs already there are left as they are)."""
    wanted: list[JobRequest] = []
    for merchant_id in uow.polls.merchant_ids():
        merchant = uow.merchants.by_id(merchant_id)
        if merchant is None:
            continue
        for name in sorted(connectors_of(uow, merchant).polling):
            row = uow.polls.get(merchant.id, name) or PollCursor(merchant.id, name, kind="")
            if row.due_at is None:
                wanted.append(
                    poll_job(merchant.id, name, row.seq, now, f"start-v{merchant.config_version}")
                )
            elif row.due_at < now - OVERDUE:
                wanted.append(poll_job(merchant.id, name, row.seq, now, f"revive-{now.date()}"))
            else:
                wanted.append(poll_job(merchant.id, name, row.seq, row.due_at))
    uow.jobs.enqueue(wanted, now=now)
    return wanted


class PollScheduler:
    """Runs ``schedule_polls`` at most once per ``every`` (the worker loop calls ``tick``)."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, every: timedelta = timedelta(minutes=1)
    ) -> None:
        self._uow_factory, self._clock, self._every = uow_factory, clock, every
        self._last: datetime | None = None

    def tick(self) -> int:
        now = self._clock.now()
        if self._last is not None and now - self._last < self._every:
            return 0
        self._last = now
        try:
            with self._uow_factory() as uow:
                asked = schedule_polls(uow, now)
                uow.commit()
        except Exception as error:  # the worker goes on; the next tick tries again
            log.warning("poll scheduling failed", error=repr(error))
            return 0
        return len(asked)


def handlers(pollers: Mapping[str, Poller]) -> dict[str, JobHandler]:
    return {RUN: RunPoll(pollers)}
