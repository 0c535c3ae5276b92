"""Replay: the desk's own code over an event stream, in simulated time.

Events are taken in file order (their arrival order); simulated time moves to each event's
``occurred_at`` (never backwards), and every timer due up to the next arrival fires first, in
due order. Events that arrive at the same simulated moment are ingested together. The outside
systems are recording fakes that answer only through the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.jobs import JobRunner
from recoverydesk.services.ports import IncomingEvent

Ingest = Callable[[Sequence[IncomingEvent]], IngestReport]


@dataclass(slots=True)
class ReplayStats:
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    timers_fired: int = 0
    skipped_after_until: int = 0


def span(items: Sequence[IncomingEvent], until: datetime | None) -> tuple[datetime, datetime]:
    """Simulated time runs from the first event to the last one, or to ``until``."""
    times = [item.event.occurred_at for item in items]
    return min(times), until or max(times)


def run(
    items: Sequence[IncomingEvent],
    *,
    clock: SimulatedClock,
    ingest: Ingest,
    runner: JobRunner,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    stats = ReplayStats()
    _, end = span(items, until)
    batch: list[IncomingEvent] = []
    for item in items:
        if item.event.occurred_at > end:
            stats.skipped_after_until += 1
            continue
        if batch and item.event.occurred_at > clock.now():
            # Time moves on: what the batch changed (and the timers it set) must land first.
            _ingest(batch, ingest, stats, progress)
            batch = []
        stats.timers_fired += fire_timers(clock, runner, upto=item.event.occurred_at)
        clock.advance_to(item.event.occurred_at)
        batch.append(item)
    _ingest(batch, ingest, stats, progress)
    stats.timers_fired += fire_timers(clock, runner, upto=end)
    clock.advance_to(end)
    return stats


def _ingest(
    batch: list[IncomingEvent],
    ingest: Ingest,
    stats: ReplayStats,
    progress: Callable[[int], None] | None,
) -> None:
    if not batch:
        return
    report = ingest(batch)
    stats.events += len(batch)
    stats.stored += report.stored
    stats.duplicates += report.duplicates
    if progress is not None:
        progress(len(batch))


def fire_timers(clock: SimulatedClock, runner: JobRunner, *, upto: datetime) -> int:
    """Run every job due at or before ``upto``, each at its own simulated due time."""
    fired = 0
    while (due := runner.next_due()) is not None and due <= upto:
        clock.advance_to(due)
        stats = runner.run_due(limit=50)
        ran = stats.done + stats.failed + stats.lost
        if ran == 0:
            break
        fired += ran
    return fired
