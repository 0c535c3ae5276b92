"""The sandbox merchant plays a day through its vendors, against a live desk over real HTTP, on
SQLite and PostgreSQL.

Given a generated stream (30 orders; the seed has a declined payment, a fraud hold, lost and
damaged parcels and a dispute, all on Shopify orders), a ``MerchantDay`` does each event in the
emulator that owns it (Shopify, Stripe, the 3PL, AfterShip) and delivers their webhooks as it
goes; what no vendor can say is ingested directly. The same stream is ingested directly into a
second desk. Then the live desk holds the vendors' own payloads, under the refs the vendors give
(the Shopify order id), and its cases are those of the direct desk, category by category.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.demo import _as_items
from recoverydesk.persistence.tables import cases, events
from recoverydesk.sandbox.merchant_day import MerchantDay
from recoverydesk.sandbox.threepl_emulator import ThreePLEmulator
from recoverydesk.sandbox.traffic import WarehouseAnswers, generate_orders
from recoverydesk.sandbox.vendors import PROVIDERS, DayClock, Vendors, serve_vendors
from recoverydesk.services import merchants as admin
from tests.e2e.conftest import LiveDesk

SEED, ORDERS = 86, 30
MERCHANT = "acme"
KEYS = {name: f"{name}-emulated-secret" for name in PROVIDERS}
CONFIG = f"merchant: {MERCHANT}\nconnectors:\n  webhooks:\n" + "".join(
    f"    {name}: {{secrets: [{KEYS[name]}]}}\n" for name in PROVIDERS
)
Case = tuple[str, str, str, bool, str | None]  # order ref, category, rule, open, outcome


@dataclass
class Played:
    day: MerchantDay
    vendors: Vendors
    stream: list[dict[str, Any]]
    live: LiveDesk
    direct: Desk


def _configured(desk: Desk, config: Path) -> None:
    with desk.uow() as uow:
        if uow.merchants.by_name(MERCHANT) is None:
            admin.add_merchant(uow, clock=desk.clock, name=MERCHANT)
        admin.apply_settings(uow, clock=desk.clock, name=MERCHANT, config=config)
        uow.commit()


@pytest.fixture
def played(live: LiveDesk, tmp_path: Path) -> Iterator[Played]:
    config = tmp_path / "acme.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    _configured(live.desk, config)
    direct = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'direct.db'}"))
    direct.upgrade()
    _configured(direct, config)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)  # a day gone by
    stream = generate_orders(orders=ORDERS, seed=SEED, start=start, warehouse=WarehouseAnswers())
    with direct.reader() as uow:
        merchant = uow.merchants.by_name(MERCHANT)
    assert merchant is not None
    direct.ingest(merchant, _as_items(stream))
    clock, http = DayClock(), httpx.Client(timeout=10)
    warehouse = ThreePLEmulator(
        desk_url=live.base_url, merchant=MERCHANT, secret=KEYS["wms"], clock=clock.now, http=http
    )
    with live.desk.reader() as uow:
        merchant = uow.merchants.by_name(MERCHANT)
    assert merchant is not None
    try:
        with serve_vendors(
            desk_url=live.base_url,
            merchant=MERCHANT,
            secrets=KEYS,
            clock=clock,
            warehouse=warehouse,
            http=http,
        ) as vendors:
            day = MerchantDay(
                vendors, clock=clock, stream=stream, ingest=partial(live.desk.ingest, merchant)
            )
            day.play(stream)
            day.deliver_due(datetime.now(UTC))  # the carrier's last scans
            yield Played(day, vendors, stream, live, direct)
    finally:
        http.close()
        direct.close()


def _cases(desk: Desk, ref_of: Any = str) -> set[Case]:
    with desk.engine.connect() as connection:
        rows = connection.execute(
            select(
                cases.c.order_ref, cases.c.category, cases.c.rule, cases.c.status, cases.c.outcome
            )
        ).all()
    return {
        (
            ref_of(row.order_ref),
            row.category,
            row.rule,
            row.status not in ("resolved", "closed"),
            row.outcome,
        )
        for row in rows
    }


def _stored(desk: Desk) -> list[Any]:
    with desk.engine.connect() as connection:
        query = select(events.c.event_id, events.c.source, events.c.type, events.c.raw)
        return list(connection.execute(query).all())


VENDOR_SHAPES = {  # how each vendor's own payload looks
    "shopify": lambda body: "admin_graphql_api_id" in json.dumps(body),
    "psp": lambda body: body["object"] == "event",
    "carrier": lambda body: body["event"] == "tracking_update",
    "wms": lambda body: body["id"].startswith("wms:") and "evt-" not in body["id"],
}


def test_a_day_through_the_vendors_opens_the_cases_direct_ingestion_does(played: Played) -> None:
    # the desk took every webhook, and stored the vendors' own payloads
    tally = played.day.tally
    assert not tally.refused, tally.refused
    assert {"shopify", "stripe", "aftership", "wms"} <= set(tally.delivered)
    assert sum(tally.fallbacks.values()) == 0, tally.fallbacks
    traffic = {event["id"] for event in played.stream}
    stored = _stored(played.live.desk)
    webhooks = [row for row in stored if row.event_id not in traffic]
    assert {row.source for row in webhooks} == {"shopify", "psp", "carrier", "wms", "import"}
    for row in webhooks:
        if row.source != "import":  # the facts Shopify cannot carry, ingested directly
            assert VENDOR_SHAPES[row.source](json.loads(row.raw)), row
    # what the vendors own went through them; what no emulator says came directly
    came_directly = {(row.source, row.type) for row in stored if row.event_id in traffic}
    assert not {source for source, _ in came_directly} & {"psp", "carrier"}
    assert {kind for source, kind in came_directly if source == "shopify"} <= {"cancel.requested"}

    # and its cases are the direct desk's, category by category, on the vendors' refs
    through = _cases(played.live.desk)
    direct = _cases(played.direct, played.day.desk_ref)
    assert Counter(c[1] for c in through) == Counter(c[1] for c in direct)
    assert through == direct, (sorted(through - direct), sorted(direct - through))
    shop = played.vendors.shopify.emulator.orders
    on_shopify_orders = {c[1] for c in through if f"gid://shopify/Order/{c[0]}" in shop}
    assert {"payment_failed", "fraud_hold", "delivery_exception", "chargeback"} <= on_shopify_orders
