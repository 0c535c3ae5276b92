"""``recoverydesk replay``: the desk's code over an event stream in simulated time."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.errors import InvalidEvent, InvalidInput
from recoverydesk.entrypoints.intake_file import read_events
from recoverydesk.entrypoints.terminal import progress
from recoverydesk.reports.kpis import Period
from recoverydesk.reports.replay_output import write_outputs
from recoverydesk.sandbox import replay as simulation
from recoverydesk.sandbox.recorders import (
    RecordedActions,
    RecordingChat,
    RecordingEmail,
    RecordingOutside,
)
from recoverydesk.services import merchants as merchant_admin
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import IncomingEvent, Merchant

DEFAULT_MERCHANT = "replay"
# Where a decision link points in replay when ``RECOVERYDESK_PUBLIC_URL`` is not set: the links
# lead nowhere (the stream's ``customer.replied`` events answer), but a playbook's decision step
# is offered as it would be live instead of being blocked for want of links.
REPLAY_PUBLIC_URL = "https://replay.invalid"


def _load(events: Path) -> list[IncomingEvent]:
    items, problems = [], []
    for where, outcome in read_events(events):
        if isinstance(outcome, InvalidEvent):
            problems.append(f"{where}: {outcome.message}")
        else:
            items.append(outcome)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidInput(f"{events}: {problems[0]}{more}; replay needs a valid stream")
    if not items:
        raise InvalidInput(f"{events}: no events to replay")
    return items


def _until(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--until {text!r}: not an ISO time") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"--until {text!r}: give a time zone (e.g. Z)")
    return moment


def run_replay(events: Path, *, out: Path, config: Path | None, until: str | None) -> str:
    items = _load(events)
    start, end = simulation.span(items, _until(until))
    clock = SimulatedClock(start)
    with tempfile.TemporaryDirectory(prefix="recoverydesk-replay-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'replay.db'}"
        recorded = RecordedActions(clock)
        settings = Settings(database_url=url)
        if settings.public_url is None:
            settings = settings.model_copy(update={"public_url": REPLAY_PUBLIC_URL})
        desk = bootstrap(
            settings,
            clock=clock,
            email=RecordingEmail(recorded),
            chat=RecordingChat(recorded),
            outside=RecordingOutside(recorded),
        )
        try:
            desk.upgrade()
            merchants = _merchants(desk, items, config)
            with progress("replay (events)", len(items)) as advance:
                stats = simulation.run(
                    items,
                    clock=clock,
                    runner=desk.job_runner("replay"),
                    until=end,
                    ingest=lambda batch: _ingest_by_merchant(desk, merchants, batch),
                    progress=advance,
                )
            with desk.engine.connect() as connection:
                files = write_outputs(
                    connection,
                    out,
                    Period(start, end + timedelta(microseconds=1)),
                    actions=recorded.actions,
                )
        finally:
            desk.close()
    return (
        f"replayed {stats.events} events ({stats.duplicates} duplicates, "
        f"{stats.timers_fired} timers fired) from {start.isoformat()} to {end.isoformat()}; "
        f"wrote {', '.join(str(path) for path in files.values())}"
    )


def _ingest_by_merchant(
    desk: Desk, merchants: dict[str, Merchant], batch: Sequence[IncomingEvent]
) -> IngestReport:
    report = IngestReport()
    for name in sorted({_name(item) for item in batch}):
        group = [item for item in batch if _name(item) == name]
        report.add(desk.ingest(merchants[name], group))
    return report


def _name(item: IncomingEvent) -> str:
    return item.event.merchant or DEFAULT_MERCHANT


def _merchants(desk: Desk, items: list[IncomingEvent], config: Path | None) -> dict[str, Merchant]:
    found: dict[str, Merchant] = {}
    with desk.uow() as uow:
        for name in sorted({_name(item) for item in items}):
            merchant_admin.add_merchant(uow, clock=desk.clock, name=name, config=config)
        uow.commit()
    with desk.reader() as uow:  # read back: the configuration's version is now set
        for name in sorted({_name(item) for item in items}):
            found[name] = merchant_admin.require_merchant(uow, name)
    return found
