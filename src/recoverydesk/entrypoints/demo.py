"""``recoverydesk demo``: the sandbox merchant's traffic flowing into a live desk on localhost,
with the merchant's warehouse and payments played by the sandbox's emulators.

About four fifths of the generated orders lie in the past and are ingested at start; the rest,
and every later step of every order (shipments, deliveries, exceptions and their fixes), arrive
as the wall clock reaches them, so the queue keeps changing while you watch.

The demo merchant's outbound connections point at a 3PL emulator (``wms_rest``) and a Stripe
emulator (``stripe``), both served on free loopback ports in threads. Before the stream is fed,
every warehouse order of the stream is created in the 3PL emulator (at its status now, kept up
to date as the stream moves it on) with an acknowledgment behaviour (mostly on time, some late,
rejected or never answered, as ``WarehouseAnswers`` weighs them), and every payment gets a
PaymentIntent in the Stripe emulator, named in the order's ``order.ids`` so refunds can land.
The desk's stop-ship commands then go to the emulator for real, and the emulator's answers come
back as signed webhooks to the desk's own URL (a pump delivers them every ``pump_every``
seconds; the stream's own warehouse answers are left out).
"""

from __future__ import annotations

import json
import random
import secrets
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import structlog
import typer
import uvicorn

from recoverydesk.bootstrap import Desk
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.sandbox import stripe_emulator
from recoverydesk.sandbox.stripe_emulator import TEST_KEY, running_stripe_emulator
from recoverydesk.sandbox.threepl_emulator import (
    STATUSES,
    AckBehaviour,
    ThreePLEmulator,
    serve_emulator,
)
from recoverydesk.sandbox.traffic import MEAN_GAP_SECONDS, WarehouseAnswers, generate_orders
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent, Merchant

log = structlog.get_logger("recoverydesk.demo")
MERCHANT = "demo"
WMS_API_KEY = "demo-wms-key"
ANSWERS = ("stopship.acknowledged", "stopship.rejected")
WAREHOUSED = ("3pl", "in_house")  # fulfilment types whose orders the warehouse holds


def _as_items(events: list[dict[str, Any]]) -> list[IncomingEvent]:
    return [IncomingEvent(parse_event(event), json.dumps(event)) for event in events]


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))


def _status_of(event: dict[str, Any]) -> str | None:
    """The warehouse status a fulfilment event moves an order to, if it is one."""
    kind = str(event["type"])
    if not kind.startswith("fulfillment."):
        return None
    status = kind.split(".", 1)[1]
    return status if status in STATUSES else None


# -- seeding the emulators from the stream -------------------------------------------------------


@dataclass
class Seeded:
    """What the emulators were told about the stream's orders."""

    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # warehouse orders by ref
    behaviours: dict[str, AckBehaviour] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # at the warehouse now
    intents: dict[str, str] = field(default_factory=dict)  # order ref -> PaymentIntent id
    captured: set[str] = field(default_factory=set)  # refs whose PaymentIntent is captured
    asked: set[str] = field(default_factory=set)  # warehouse refs the stream asks to cancel


def _behaviour(
    rng: random.Random,
    answers: WarehouseAnswers,
    ack_delay: tuple[int, int],
    asked: dict[str, Any] | None,
    answered: dict[str, Any] | None,
) -> AckBehaviour:
    """The stream's own answer for an order it cancels at the warehouse, else a weighed draw."""
    on_time = AckBehaviour("ack", delay=timedelta(seconds=rng.randint(*ack_delay)))
    if answered is not None:
        if answered["type"] == "stopship.rejected":
            message = str(answered.get("data", {}).get("message") or "already packed")
            return AckBehaviour("reject", message=message)
        late = asked is not None and _at(answered) - _at(asked) > timedelta(hours=1)
        return AckBehaviour("late") if late else on_time
    if asked is not None:  # the stream's warehouse never answered this one
        return AckBehaviour("never")
    weights = (answers.on_time, answers.late, answers.rejected, answers.never)
    mode = rng.choices(("ack", "late", "reject", "never"), weights=weights)[0]
    return on_time if mode == "ack" else AckBehaviour(mode)  # type: ignore[arg-type]


def seed_emulators(
    stream: list[dict[str, Any]],
    *,
    now: datetime,
    warehouse: ThreePLEmulator,
    payments: stripe_emulator.StripeEmulator,
    rng: random.Random,
    answers: WarehouseAnswers,
    ack_delay: tuple[int, int],
) -> tuple[list[dict[str, Any]], Seeded]:
    """Create the stream's warehouse orders in the 3PL emulator and its payments at Stripe; return
    the stream to feed (the warehouse's answers left out: the emulator gives them) and what was
    seeded. The order's PaymentIntent is named in its ``order.placed`` (``order.ids``)."""
    seeded = Seeded()
    placed: dict[str, dict[str, Any]] = {}
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for event in stream:
        ref = str(event["order"]["ref"])
        by_ref.setdefault(ref, []).append(event)
        if event["type"] == "order.placed":
            placed[ref] = event
    dropped: set[str] = set()
    for ref, events in by_ref.items():
        facts = placed[ref]["order"]
        if facts.get("fulfillment_type") in WAREHOUSED or any(e["source"] == "wms" for e in events):
            asked = next((e for e in events if e["type"] == "cancel.requested"), None)
            answered = next((e for e in events if e["type"] in ANSWERS), None)
            if asked is not None:
                seeded.asked.add(ref)
            if answered is not None:
                dropped.add(answered["id"])
            # where the order is now; after a cancel request, the emulator decides
            cutoff = min(now, _at(asked)) if asked is not None else now
            status = "not_released"
            for event in events:
                moved = _status_of(event)
                if moved is not None and _at(event) <= cutoff:
                    status = moved
            lines: dict[str, int] = {}
            for line in facts.get("lines", []):
                lines[line["sku"]] = lines.get(line["sku"], 0) + int(line["qty"])
            behaviour = _behaviour(rng, answers, ack_delay, asked, answered)
            warehouse.add_order(ref, status=status, lines=lines, ack=behaviour)
            seeded.lines[ref], seeded.behaviours[ref], seeded.statuses[ref] = (
                lines,
                behaviour,
                status,
            )
        paid = [e for e in events if e["type"].startswith("payment.")]
        if any(e["type"] == "payment.authorized" for e in paid):
            captured = any(e["type"] == "payment.captured" and _at(e) <= now for e in paid)
            cents = int(Decimal(str(facts["value"])) * 100)
            intent = payments.create_payment_intent(
                cents,
                str(facts.get("currency", "USD")).lower(),
                capture=captured,
                metadata={"order_ref": ref},
            )
            seeded.intents[ref] = intent["id"]
            if captured:
                seeded.captured.add(ref)
            facts = placed[ref]["order"] = {**facts, "ids": {"stripe_payment_intent": intent["id"]}}
    kept = [e for e in stream if e["id"] not in dropped]
    return kept, seeded


# -- the running sandbox -------------------------------------------------------------------------


@dataclass
class DemoSandbox:
    """A desk wired to the emulators, with the demo merchant configured and the past ingested.
    ``start_feeder`` feeds the future as the clock reaches it; ``close`` stops everything."""

    desk: Desk
    merchant: Merchant
    token: str
    desk_url: str
    warehouse: ThreePLEmulator
    warehouse_url: str
    payments: stripe_emulator.StripeEmulator
    payments_url: str
    seeded: Seeded
    stored: int
    cases_opened: int
    future: list[IncomingEvent]
    secret: str
    _stack: ExitStack
    _feeder: Feeder | None = None
    _api: tuple[uvicorn.Server, threading.Thread] | None = None

    def start_feeder(self) -> None:
        self._feeder = Feeder(self)
        self._feeder.start()

    def serve_in_background(self, *, host: str, port: int, run_worker: bool) -> None:
        """Serve the desk's API in a daemon thread (tests; the command serves in the foreground)."""
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.desk, run_worker=run_worker),
                host=host,
                port=port,
                log_level="warning",
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
        thread.start()
        self._api = (server, thread)
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the demo API did not start")
            time.sleep(0.02)

    def close(self) -> None:
        if self._feeder is not None:
            self._feeder.stop()
        if self._api is not None:
            server, thread = self._api
            server.should_exit = True
            thread.join(timeout=10)
            self._api = None
        self._stack.close()


class Feeder:
    """Hands each future event to the desk when the wall clock reaches its time, and keeps the
    warehouse and Stripe emulators in step with the orders it moves on."""

    def __init__(self, sandbox: DemoSandbox) -> None:
        self._sandbox = sandbox
        self._future = sandbox.future
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-feeder", daemon=True)

    def _loop(self) -> None:
        sandbox = self._sandbox
        while self._future and not self._stop.wait(1.0):
            now = sandbox.desk.clock.now()
            due = [item for item in self._future if item.event.occurred_at <= now]
            if due:
                self._future = self._future[len(due) :]
                for item in due:
                    self._mirror(json.loads(item.raw))
                report = sandbox.desk.ingest(sandbox.merchant, due)
                log.info("demo traffic", stored=report.stored, opened=report.cases_opened)

    def _mirror(self, event: dict[str, Any]) -> None:
        sandbox = self._sandbox
        ref = str(event["order"]["ref"])
        status = _status_of(event)
        if status is not None and ref in sandbox.seeded.lines:
            stopped = any(r.ref == ref for r in sandbox.warehouse.received)
            before = sandbox.seeded.statuses[ref]
            if not stopped and STATUSES.index(status) > STATUSES.index(before):
                sandbox.seeded.statuses[ref] = status
                sandbox.warehouse.add_order(
                    ref,
                    status=status,
                    lines=sandbox.seeded.lines[ref],
                    ack=sandbox.seeded.behaviours[ref],
                )
        intent = sandbox.seeded.intents.get(ref)
        if event["type"] == "payment.captured" and intent and ref not in sandbox.seeded.captured:
            sandbox.seeded.captured.add(ref)
            try:
                httpx.post(
                    f"{sandbox.payments_url}/v1/payment_intents/{intent}/capture",
                    headers={"Authorization": f"Bearer {TEST_KEY}"},
                    timeout=5.0,
                )
            except httpx.HTTPError as error:
                log.warning("demo capture failed", order_ref=ref, error=str(error))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _configure(folder: Path, *, warehouse_url: str, payments_url: str, secret: str) -> Path:
    config = folder / "demo.yaml"
    config.write_text(
        f"merchant: {MERCHANT}\n"
        "connectors:\n"
        "  webhooks:\n"
        f"    wms: {{secrets: [{secret}]}}\n"
        "  outbound:\n"
        f'    wms: {{kind: wms_rest, base_url: "{warehouse_url}", api_key: {WMS_API_KEY}}}\n'
        f'    payments: {{kind: stripe, base_url: "{payments_url}", api_key: {TEST_KEY}}}\n',
        encoding="utf-8",
    )
    return config


def setup_demo(
    desk: Desk,
    *,
    host: str,
    port: int,
    orders: int,
    seed: int | None = None,
    pump_every: float | None = 1.0,
    ack_delay: tuple[int, int] = (2, 30),
    answers: WarehouseAnswers | None = None,
) -> DemoSandbox:
    """Start the emulators, configure the demo merchant against them, seed them from a generated
    stream and ingest its past. Nothing serves the desk yet: the caller does (``run_demo`` in
    the foreground, tests with ``serve_in_background``). ``ack_delay`` is how many seconds
    (low, high) an on-time warehouse takes to answer."""
    stack = ExitStack()
    try:
        answers = answers or WarehouseAnswers()
        reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        desk_url = f"http://{reachable}:{port}"
        secret = secrets.token_urlsafe(24)
        warehouse = ThreePLEmulator(
            api_key=WMS_API_KEY, desk_url=desk_url, merchant=MERCHANT, secret=secret
        )
        running_wms = stack.enter_context(serve_emulator(warehouse, pump_every=pump_every))
        running_psp = stack.enter_context(running_stripe_emulator())
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="recoverydesk-demo-"))
        config = _configure(
            Path(folder),
            warehouse_url=running_wms.base_url,
            payments_url=running_psp.base_url,
            secret=secret,
        )
        with desk.uow() as uow:
            if uow.merchants.by_name(MERCHANT) is None:
                admin.add_merchant(uow, clock=desk.clock, name=MERCHANT)
            admin.apply_settings(uow, clock=desk.clock, name=MERCHANT, config=config)
            merchant = admin.require_merchant(uow, MERCHANT)
            token = admin.create_token(uow, clock=desk.clock, merchant_name=MERCHANT, role="admin")
            uow.commit()
        now = desk.clock.now()
        span = timedelta(seconds=orders * MEAN_GAP_SECONDS * 0.8)
        seed = int(now.timestamp()) // 86_400 if seed is None else seed
        stream = generate_orders(orders=orders, seed=seed, start=now - span, warehouse=answers)
        stream, seeded = seed_emulators(
            stream,
            now=now,
            warehouse=warehouse,
            payments=running_psp.emulator,
            rng=random.Random(seed),  # noqa: S311 - simulated traffic
            answers=answers,
            ack_delay=ack_delay,
        )
        items = _as_items(stream)
        past = [item for item in items if item.event.occurred_at <= now]
        report = desk.ingest(merchant, past)
    except BaseException:
        stack.close()
        raise
    return DemoSandbox(
        desk=desk,
        merchant=merchant,
        token=token,
        desk_url=desk_url,
        warehouse=warehouse,
        warehouse_url=running_wms.base_url,
        payments=running_psp.emulator,
        payments_url=running_psp.base_url,
        seeded=seeded,
        stored=report.stored,
        cases_opened=report.cases_opened,
        future=items[len(past) :],
        secret=secret,
        _stack=stack,
    )


def run_demo(desk: Desk, *, host: str, port: int, orders: int) -> None:
    sandbox = setup_demo(desk, host=host, port=port, orders=orders)
    try:
        sandbox.start_feeder()
        base, token = f"http://{host}:{port}", sandbox.token
        modes: dict[str, int] = {}
        for behaviour in sandbox.seeded.behaviours.values():
            modes[behaviour.mode] = modes.get(behaviour.mode, 0) + 1
        typer.echo(
            f"recoverydesk demo: {sandbox.stored} events ingested, {sandbox.cases_opened} cases "
            f"opened; {len(sandbox.future)} more events arrive live.\n"
            f"  emulators: 3PL {sandbox.warehouse_url} ({len(sandbox.seeded.lines)} orders, "
            f"answers {json.dumps(modes, sort_keys=True)}; webhooks to "
            f"{sandbox.desk_url}/webhooks/wms/{MERCHANT} every second), "
            f"Stripe {sandbox.payments_url} ({len(sandbox.seeded.intents)} payments)\n"
            f"  API docs:  {base}/docs\n  token:     {token}\n"
            f'  try:       curl -H "Authorization: Bearer {token}" "{base}/api/v1/cases?state=open"'
        )
        uvicorn.run(create_app(desk, run_worker=True), host=host, port=port, log_level="warning")
    finally:
        sandbox.close()
