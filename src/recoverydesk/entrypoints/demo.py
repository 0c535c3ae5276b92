"""``recoverydesk demo``: the sandbox merchant's traffic flowing into a live desk on localhost,
with the merchant's shop, payments, warehouse, carrier and helpdesk played by the sandbox's
emulators.

About four fifths of the generated orders lie in the past and are ingested directly at start (a
fast start); the rest, and every later step of every order (payments, shipments, deliveries,
exceptions and their fixes), happen as the wall clock reaches them, so the queue keeps changing
while you watch. Those live events go *through the vendors*: a ``MerchantDay``
(``sandbox.merchant_day``) does each one in the emulator that owns that fact (a Shopify order, a
Stripe decline or dispute, a 3PL step, an AfterShip scan) and the desk receives it as that
vendor's signed webhook; a fact no emulator can state is ingested directly, as before.

Emulators, each on a free loopback port in a thread: Shopify, Stripe, AfterShip, Zendesk and a
3PL (``wms_rest``). The demo merchant has a webhook secret for each, and its outbound
connections point at the 3PL and at Stripe. Before the stream is fed, every warehouse order
placed so far is created in the 3PL emulator (at its status now) with an acknowledgment
behaviour (mostly on time, some late, rejected or never answered, as ``WarehouseAnswers`` weighs
them), and every payment so far gets a PaymentIntent at Stripe, named in the order's
``order.ids`` so refunds can land (seeding sends no webhook: the desk ingests that past
directly). Orders placed live are created in the vendors by the merchant day. The desk's
stop-ship commands go to the 3PL emulator for real, and its answers come back as webhooks (the
stream's own warehouse answers are left out). A pump delivers every emulator's due webhooks every
``pump_every`` seconds.
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
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import structlog
import typer
import uvicorn

from recoverydesk.bootstrap import Desk
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.sandbox import stripe_emulator
from recoverydesk.sandbox.merchant_day import WAREHOUSED, MerchantDay
from recoverydesk.sandbox.stripe_emulator import TEST_KEY
from recoverydesk.sandbox.threepl_emulator import (
    STATUSES,
    AckBehaviour,
    ThreePLEmulator,
    serve_emulator,
)
from recoverydesk.sandbox.traffic import MEAN_GAP_SECONDS, WarehouseAnswers, generate_orders
from recoverydesk.sandbox.vendors import PROVIDERS, DayClock, Vendors, serve_vendors
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.ports import IncomingEvent, Merchant

log = structlog.get_logger("recoverydesk.demo")
MERCHANT = "demo"
WMS_API_KEY = "demo-wms-key"
ANSWERS = ("stopship.acknowledged", "stopship.rejected")


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
    """What the emulators were told about the stream's orders placed before the demo started."""

    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # warehouse orders by ref
    behaviours: dict[str, AckBehaviour] = field(default_factory=dict)  # every warehouse order's
    statuses: dict[str, str] = field(default_factory=dict)  # at the warehouse now
    intents: dict[str, str] = field(default_factory=dict)  # order ref -> PaymentIntent id
    captured: set[str] = field(default_factory=set)  # refs whose PaymentIntent is captured
    awaiting: set[str] = field(default_factory=set)  # refs whose payment is still to come
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
    """Create the warehouse orders and payments of the stream's orders placed by ``now`` in the
    3PL emulator and at Stripe; return the stream to feed (the warehouse's answers left out: the
    emulator gives them) and what was seeded. Every warehouse order gets its answer
    (``Seeded.behaviours``), for the merchant day to create the later ones with. A seeded order's
    PaymentIntent is named in its ``order.placed`` (``order.ids``)."""
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
            if answered is not None:
                dropped.add(answered["id"])
            seeded.behaviours[ref] = _behaviour(rng, answers, ack_delay, asked, answered)
            if _at(placed[ref]) <= now:
                _seed_warehouse(warehouse, seeded, placed[ref], events, now=now, asked=asked)
        paid = [e for e in events if e["type"].startswith("payment.")]
        if _at(placed[ref]) <= now and any(e["type"] == "payment.authorized" for e in paid):
            captured = any(e["type"] == "payment.captured" and _at(e) <= now for e in paid)
            paying = any(e["type"] == "payment.authorized" and _at(e) <= now for e in paid)
            cents = int(Decimal(str(facts["value"])) * 100)
            intent = payments.create_payment_intent(
                cents,
                str(facts.get("currency", "USD")).lower(),
                capture=captured,
                metadata={"order_ref": ref},
                confirm=paying,  # else it waits for the customer's payment, still to come
            )
            seeded.intents[ref] = intent["id"]
            if captured:
                seeded.captured.add(ref)
            if not paying:
                seeded.awaiting.add(ref)
            facts = placed[ref]["order"] = {**facts, "ids": {"stripe_payment_intent": intent["id"]}}
    kept = [e for e in stream if e["id"] not in dropped]
    return kept, seeded


def _seed_warehouse(
    warehouse: ThreePLEmulator,
    seeded: Seeded,
    placed: dict[str, Any],
    events: list[dict[str, Any]],
    *,
    now: datetime,
    asked: dict[str, Any] | None,
) -> None:
    """The order at the warehouse where it is now; after a cancel request, the emulator
    decides."""
    ref = str(placed["order"]["ref"])
    if asked is not None:
        seeded.asked.add(ref)
    cutoff = min(now, _at(asked)) if asked is not None else now
    status = "not_released"
    for event in events:
        moved = _status_of(event)
        if moved is not None and _at(event) <= cutoff:
            status = moved
    lines: dict[str, int] = {}
    for line in placed["order"].get("lines", []):
        lines[line["sku"]] = lines.get(line["sku"], 0) + int(line["qty"])
    warehouse.add_order(ref, status=status, lines=lines, ack=seeded.behaviours[ref])
    seeded.lines[ref], seeded.statuses[ref] = lines, status


# -- the running sandbox -------------------------------------------------------------------------


@dataclass
class DemoSandbox:
    """A desk wired to the emulators, with the demo merchant configured and the past ingested.
    ``start_feeder`` plays the future through the vendors as the clock reaches it; ``close``
    stops everything."""

    desk: Desk
    merchant: Merchant
    token: str
    desk_url: str
    vendors: Vendors
    day: MerchantDay
    warehouse: ThreePLEmulator
    warehouse_url: str
    seeded: Seeded
    stored: int
    cases_opened: int
    future: list[IncomingEvent]
    secrets: dict[str, str]
    _stack: ExitStack
    _feeder: Feeder | None = None
    _api: tuple[uvicorn.Server, threading.Thread] | None = None

    @property
    def payments(self) -> stripe_emulator.StripeEmulator:
        return self.vendors.stripe.emulator

    @property
    def payments_url(self) -> str:
        return self.vendors.stripe.base_url

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
    """Hands each future event to the merchant day when the wall clock reaches its time."""

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
                sandbox.day.play([json.loads(item.raw) for item in due])
                tally = sandbox.day.tally
                log.info(
                    "demo traffic",
                    through_vendors=sum(tally.through.values()),
                    direct=sum(tally.direct.values()),
                    webhooks=sum(tally.delivered.values()),
                )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class Pump:
    """Delivers every emulator's due webhooks every ``every`` seconds, in a thread."""

    def __init__(self, day: MerchantDay, desk: Desk, every: float) -> None:
        self._day, self._desk, self._every = day, desk, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-pump", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._day.deliver_due(self._desk.clock.now())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _configure(
    folder: Path, *, warehouse_url: str, payments_url: str, keys: dict[str, str]
) -> Path:
    config = folder / "demo.yaml"
    hooks = "".join(f"    {name}: {{secrets: [{keys[name]}]}}\n" for name in PROVIDERS)
    config.write_text(
        f"merchant: {MERCHANT}\n"
        "connectors:\n"
        "  webhooks:\n"
        f"{hooks}"
        "  outbound:\n"
        f'    wms: {{kind: wms_rest, base_url: "{warehouse_url}", api_key: {WMS_API_KEY}}}\n'
        f'    payments: {{kind: stripe, base_url: "{payments_url}", api_key: {TEST_KEY}}}\n',
        encoding="utf-8",
    )
    return config


def _start_emulators(
    stack: ExitStack, desk_url: str, keys: dict[str, str], clock: DayClock
) -> tuple[ThreePLEmulator, str, Vendors]:
    """The 3PL emulator (served, its URL) and the other vendors, all aimed at the desk."""
    http = stack.enter_context(httpx.Client(timeout=10.0))
    warehouse = ThreePLEmulator(
        api_key=WMS_API_KEY,
        desk_url=desk_url,
        merchant=MERCHANT,
        secret=keys["wms"],
        clock=clock.now,
        http=http,
    )
    running_wms = stack.enter_context(serve_emulator(warehouse))
    vendors = serve_vendors(
        desk_url=desk_url,
        merchant=MERCHANT,
        secrets=keys,
        clock=clock,
        warehouse=warehouse,
        http=http,
    )
    return warehouse, running_wms.base_url, stack.enter_context(vendors)


def _demo_merchant(desk: Desk, config: Path) -> tuple[Merchant, str]:
    """The demo merchant, configured from ``config``, and an admin token of it."""
    with desk.uow() as uow:
        if uow.merchants.by_name(MERCHANT) is None:
            admin.add_merchant(uow, clock=desk.clock, name=MERCHANT)
        admin.apply_settings(uow, clock=desk.clock, name=MERCHANT, config=config)
        merchant = admin.require_merchant(uow, MERCHANT)
        token = admin.create_token(uow, clock=desk.clock, merchant_name=MERCHANT, role="admin")
        uow.commit()
    return merchant, token


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
    stream, ingest its past and make the merchant day that plays its future. Nothing serves the
    desk yet: the caller does (``run_demo`` in the foreground, tests with
    ``serve_in_background``); ``pump_every=None`` starts no pump (tests deliver themselves).
    ``ack_delay`` is how many seconds (low, high) an on-time warehouse takes to answer."""
    stack = ExitStack()
    try:
        answers = answers or WarehouseAnswers()
        reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        desk_url = f"http://{reachable}:{port}"
        keys = {name: secrets.token_urlsafe(24) for name in PROVIDERS}
        clock = DayClock()
        warehouse, warehouse_url, vendors = _start_emulators(stack, desk_url, keys, clock)
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="recoverydesk-demo-"))
        config = _configure(
            Path(folder),
            warehouse_url=warehouse_url,
            payments_url=vendors.stripe.base_url,
            keys=keys,
        )
        merchant, token = _demo_merchant(desk, config)
        now = desk.clock.now()
        span = timedelta(seconds=orders * MEAN_GAP_SECONDS * 0.8)
        seed = int(now.timestamp()) // 86_400 if seed is None else seed
        stream = generate_orders(orders=orders, seed=seed, start=now - span, warehouse=answers)
        with vendors.quiet():  # the desk ingests the past directly
            stream, seeded = seed_emulators(
                stream,
                now=now,
                warehouse=warehouse,
                payments=vendors.stripe.emulator,
                rng=random.Random(seed),  # noqa: S311 - simulated traffic
                answers=answers,
                ack_delay=ack_delay,
            )
        items = _as_items(stream)
        past = [item for item in items if item.event.occurred_at <= now]
        report = desk.ingest(merchant, past)
        day = MerchantDay(
            vendors,
            clock=clock,
            stream=stream[len(past) :],
            ingest=partial(desk.ingest, merchant),
            answers=seeded.behaviours,
        )
        for ref in seeded.lines.keys() | seeded.intents.keys():
            day.adopt(ref, intent=seeded.intents.get(ref), at_warehouse=ref in seeded.lines)
        if pump_every is not None:
            stack.callback(Pump(day, desk, pump_every).stop)
    except BaseException:
        stack.close()
        raise
    return DemoSandbox(
        desk=desk,
        merchant=merchant,
        token=token,
        desk_url=desk_url,
        vendors=vendors,
        day=day,
        warehouse=warehouse,
        warehouse_url=warehouse_url,
        seeded=seeded,
        stored=report.stored,
        cases_opened=report.cases_opened,
        future=items[len(past) :],
        secrets=keys,
        _stack=stack,
    )


def banner(sandbox: DemoSandbox, base: str, pump_every: float) -> str:
    seeded, hooks = sandbox.seeded, f"{sandbox.desk_url}/webhooks/<provider>/{MERCHANT}"
    modes: dict[str, int] = {}
    for ref in seeded.lines:
        mode = seeded.behaviours[ref].mode
        modes[mode] = modes.get(mode, 0) + 1
    urls = sandbox.vendors.urls()
    token = sandbox.token
    return (
        f"recoverydesk demo: {sandbox.stored} past events ingested directly, "
        f"{sandbox.cases_opened} cases opened; {len(sandbox.future)} more events happen live, "
        "in the vendors below, and reach the desk as their signed webhooks.\n"
        f"  emulators (webhooks to {hooks}, every {pump_every:g}s):\n"
        f"    3PL        {sandbox.warehouse_url}  ({len(seeded.lines)} orders, answers "
        f"{json.dumps(modes, sort_keys=True)})\n"
        f"    Stripe     {urls['Stripe']}  ({len(seeded.intents)} payments so far)\n"
        f"    Shopify    {urls['Shopify']}  (orders placed live on the shopify channel)\n"
        f"    AfterShip  {urls['AfterShip']}  (parcels shipped live)\n"
        f"    Zendesk    {urls['Zendesk']}  (idle: a ticket is no cancel request to the desk)\n"
        f"  API docs:  {base}/docs\n  token:     {token}\n"
        f'  try:       curl -H "Authorization: Bearer {token}" "{base}/api/v1/cases?state=open"'
    )


def run_demo(desk: Desk, *, host: str, port: int, orders: int, pump_every: float = 1.0) -> None:
    sandbox = setup_demo(desk, host=host, port=port, orders=orders, pump_every=pump_every)
    try:
        sandbox.start_feeder()
        typer.echo(banner(sandbox, f"http://{host}:{port}", pump_every))
        from recoverydesk.entrypoints.web.users_cli import demo_login

        user, password = demo_login(desk, MERCHANT)
        typer.echo(f"  web desk:  {sandbox.desk_url}/desk  (log in as {user} / {password})")
        uvicorn.run(create_app(desk, run_worker=True), host=host, port=port, log_level="warning")
    finally:
        sandbox.close()
