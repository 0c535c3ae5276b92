"""Group commit for intake: many small deliveries, one writer, one transaction per batch.

Webhooks arrive one event or a few at a time, from many connections at once. Ingesting each in
its own transaction makes every request fight for the database's write lock (SQLite has one for
the whole file) and pay a commit of its own. Here each delivery is handed to one writer thread,
which takes whatever has queued up meanwhile, ingests it per merchant in one unit of work, and
answers each delivery with its own share of the result. A delivery is answered only after the
transaction that stored it committed, so "2xx after stored" still holds.

If a batch fails, its deliveries are ingested one by one, so one bad delivery fails alone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import structlog

from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import IncomingEvent, Merchant

log = structlog.get_logger("recoverydesk.intake")

Ingest = Callable[[Merchant, Sequence[IncomingEvent]], IngestReport]


@dataclass(slots=True)
class _Delivery:
    merchant: Merchant
    items: Sequence[IncomingEvent]
    answer: Future[IngestReport] = field(default_factory=Future)


class GroupIntake:
    """One writer thread that ingests queued deliveries in batches of up to ``max_events``."""

    def __init__(self, ingest: Ingest, *, max_events: int = 500, linger: float = 0.002) -> None:
        self._ingest = ingest
        self._max_events = max_events
        self._linger = linger
        self._queue: queue.SimpleQueue[_Delivery | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, merchant: Merchant, items: Sequence[IncomingEvent]) -> Future[IngestReport]:
        """Queue one delivery; the future is set once its events are stored and folded."""
        delivery = _Delivery(merchant, items)
        with self._lock:
            if self._closed:
                raise RuntimeError("intake is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-intake", daemon=True)
                self._thread.start()
            self._queue.put(delivery)
        return delivery.answer

    def close(self) -> None:
        """Finish what is queued, then stop the writer."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._drain(first)
            for group in _by_merchant(batch).values():
                self._write(group)
            if stop:
                return

    def _drain(self, first: _Delivery) -> tuple[list[_Delivery], bool]:
        batch, size = [first], len(first.items)
        while size < self._max_events:
            try:
                if len(batch) == 1:  # wait a moment for company: one commit for several
                    more = self._queue.get(timeout=self._linger)
                else:
                    more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch.append(more)
            size += len(more.items)
        return batch, False

    def _write(self, group: list[_Delivery]) -> None:
        if len(group) == 1:
            self._write_alone(group[0])
            return
        try:
            report = self._ingest(group[0].merchant, [i for d in group for i in d.items])
        except Exception:
            log.warning(
                "grouped intake failed; ingesting its deliveries one by one", size=len(group)
            )
            for delivery in group:
                self._write_alone(delivery)
            return
        claimed: set[str] = set()
        for delivery in group:
            delivery.answer.set_result(_share(delivery, report, claimed))

    def _write_alone(self, delivery: _Delivery) -> None:
        try:
            delivery.answer.set_result(self._ingest(delivery.merchant, delivery.items))
        except Exception as error:  # the caller re-raises it: it is that delivery's answer
            delivery.answer.set_exception(error)


def _by_merchant(batch: list[_Delivery]) -> dict[int, list[_Delivery]]:
    groups: dict[int, list[_Delivery]] = {}
    for delivery in batch:
        groups.setdefault(delivery.merchant.id, []).append(delivery)
    return groups


def _share(delivery: _Delivery, report: IngestReport, claimed: set[str]) -> IngestReport:
    """The delivery's part of a grouped report: an event stored in the batch counts as stored
    for the first delivery that carried it, and as a duplicate for any other."""
    mine = IngestReport(received=len(delivery.items))
    for item in delivery.items:
        event_id = item.event.id
        if event_id in report.stored_ids and event_id not in claimed:
            claimed.add(event_id)
            mine.stored += 1
            mine.stored_ids.add(event_id)
    mine.duplicates = mine.received - mine.stored
    return mine
