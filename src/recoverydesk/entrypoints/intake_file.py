"""Reading canonical events from files (JSONL, or a JSON array) for ingest, normalize and replay."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import InvalidEvent, InvalidInput
from recoverydesk.entrypoints.terminal import progress
from recoverydesk.services.canonical import parse_event, parse_json_event
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.merchants import require_merchant
from recoverydesk.services.ports import IncomingEvent, Merchant

MAX_SHOWN = 20


Outcome = tuple[str, IncomingEvent | InvalidEvent]


def read_events(path: Path, *, on_bytes: Callable[[int], None] | None = None) -> Iterator[Outcome]:
    """Where each event stands (``line N``) with the event, or the error of that line."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read ({error.strerror})") from None
    with handle:
        head = handle.read(1).lstrip()
        handle.seek(0)
        if head == b"[":
            yield from _read_array(handle.read())
            return
        for number, line in enumerate(handle, start=1):
            if on_bytes is not None:
                on_bytes(len(line))
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                event, raw = parse_json_event(line.strip())
                yield where, IncomingEvent(event, raw)
            except InvalidEvent as error:
                yield where, error


def _read_array(content: bytes) -> Iterator[Outcome]:
    try:
        decoded = json.loads(content, parse_float=Decimal)
    except (ValueError, RecursionError) as error:  # JSON, Unicode and integer-size errors
        yield "file", InvalidEvent(f"malformed JSON ({error})")
        return
    for index, raw in enumerate(decoded):
        try:
            yield f"item {index}", IncomingEvent(parse_event(raw), json.dumps(raw, default=str))
        except InvalidEvent as error:
            yield f"item {index}", error


@dataclass(slots=True)
class FileIngest:
    path: Path
    report: IngestReport = field(default_factory=IngestReport)
    invalid: int = 0
    lines: int = 0

    def summary(self) -> str:
        r = self.report
        return (
            f"{self.path}: {self.lines} events read, {r.stored} stored, "
            f"{r.duplicates} duplicates, {self.invalid} invalid; "
            f"cases opened {r.cases_opened}, closed {r.cases_closed}"
        )


def ingest_file(desk: Desk, path: Path, *, merchant_name: str, batch: int) -> FileIngest:
    with desk.reader() as uow:
        merchant = require_merchant(uow, merchant_name)
    result = FileIngest(path)
    with progress("ingest (bytes)", path.stat().st_size) as advance:
        pending: list[IncomingEvent] = []
        for where, outcome in read_events(path, on_bytes=advance):
            result.lines += 1
            problem = _problem(outcome, merchant)
            if problem is not None:
                _reject(result, f"{where}: {problem}")
                continue
            assert isinstance(outcome, IncomingEvent)
            pending.append(outcome)
            if len(pending) >= batch:
                result.report.add(desk.ingest(merchant, pending))
                pending = []
        if pending:
            result.report.add(desk.ingest(merchant, pending))
    return result


def _problem(outcome: IncomingEvent | InvalidEvent, merchant: Merchant) -> str | None:
    if isinstance(outcome, InvalidEvent):
        return outcome.message
    named = outcome.event.merchant
    if named is not None and named != merchant.name:
        return f"event {outcome.event.id}: merchant {named!r} is not {merchant.name!r}"
    return None


def _reject(result: FileIngest, problem: str) -> None:
    result.invalid += 1
    if result.invalid <= MAX_SHOWN:
        print(f"{result.path}: {problem}", file=sys.stderr)
    elif result.invalid == MAX_SHOWN + 1:
        print(
            f"{result.path}: more invalid lines follow (only the first {MAX_SHOWN} shown)",
            file=sys.stderr,
        )
