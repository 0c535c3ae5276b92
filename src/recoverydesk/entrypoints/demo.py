"""``recoverydesk demo``: the sandbox merchant's traffic flowing into a live desk on localhost.

About four fifths of the generated orders lie in the past and are ingested at start; the rest,
and every later step of every order (shipments, deliveries, exceptions and their fixes), arrive
as the wall clock reaches them, so the queue keeps changing while you watch.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import structlog
import typer
import uvicorn

from recoverydesk.bootstrap import Desk
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.sandbox.traffic import MEAN_GAP_SECONDS, WarehouseAnswers, generate_orders
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent, Merchant

log = structlog.get_logger("recoverydesk.demo")
MERCHANT = "demo"


def _merchant_and_token(desk: Desk) -> tuple[Merchant, str]:
    with desk.uow() as uow:
        merchant = uow.merchants.by_name(MERCHANT) or admin.add_merchant(
            uow, clock=desk.clock, name=MERCHANT
        )
        token = admin.create_token(uow, clock=desk.clock, merchant_name=MERCHANT, role="admin")
        uow.commit()
    return merchant, token


def _as_items(events: list[dict[str, Any]]) -> list[IncomingEvent]:
    return [IncomingEvent(parse_event(event), json.dumps(event)) for event in events]


class Feeder:
    """Hands each future event to the desk when the wall clock reaches its time."""

    def __init__(self, desk: Desk, merchant: Merchant, future: list[IncomingEvent]) -> None:
        self._desk, self._merchant, self._future = desk, merchant, future
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-feeder", daemon=True)

    def _loop(self) -> None:
        while self._future and not self._stop.wait(1.0):
            now = self._desk.clock.now()
            due = [item for item in self._future if item.event.occurred_at <= now]
            if due:
                self._future = self._future[len(due) :]
                report = self._desk.ingest(self._merchant, due)
                log.info("demo traffic", stored=report.stored, opened=report.cases_opened)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def run_demo(desk: Desk, *, host: str, port: int, orders: int) -> None:
    merchant, token = _merchant_and_token(desk)
    now = desk.clock.now()
    span = timedelta(seconds=orders * MEAN_GAP_SECONDS * 0.8)
    seed = int(now.timestamp()) // 86_400
    stream = generate_orders(
        orders=orders, seed=seed, start=now - span, warehouse=WarehouseAnswers()
    )
    items = _as_items(stream)
    past = [item for item in items if item.event.occurred_at <= now]
    report = desk.ingest(merchant, past)
    feeder = Feeder(desk, merchant, items[len(past) :])
    feeder.start()
    base = f"http://{host}:{port}"
    typer.echo(
        f"recoverydesk demo: {report.stored} events ingested, {report.cases_opened} cases "
        f"opened; {len(items) - len(past)} more events arrive live.\n"
        f"  API docs:  {base}/docs\n  token:     {token}\n"
        f'  try:       curl -H "Authorization: Bearer {token}" "{base}/api/v1/cases?state=open"'
    )
    try:
        uvicorn.run(create_app(desk, run_worker=True), host=host, port=port, log_level="warning")
    finally:
        feeder.stop()
