"""The queue board's reads on SQLite and PostgreSQL: the counts by queue, priority and SLA state,
and the top of the queue in the desk's priority order across queues (each queue's first page
read from its index, then merged) -- the same cases, in the same order, as sorting every open
case would give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.web.board_query import (
    BoardFilter,
    page_groups,
    queue_counts,
    top_cases,
)
from recoverydesk.persistence.tables import cases, orders
from recoverydesk.services import merchants as admin

NOW = datetime(2026, 12, 16, 9, 30, tzinfo=UTC)
QUEUES = ("payments", "warehouse", "delivery", None)  # None: a case no rule routed


def _case(merchant_id: int, n: int, chance: random.Random) -> dict[str, Any]:
    opened = NOW - timedelta(minutes=chance.randrange(0, 600))
    due = NOW + timedelta(minutes=chance.choice((-90, -5, 20, 45, 200, 2000)))
    return {
        "merchant_id": merchant_id,
        "order_ref": f"O{n}",
        "category": chance.choice(("fraud_hold", "payment_failed")),
        "status": chance.choice(("triaged", "in_progress", "waiting_customer", "closed")),
        "priority": chance.choice(("P1", "P2", "P3")),
        "queue": chance.choice(QUEUES),
        "opened_at": opened,
        "opened_by": "test",
        "event_ids": [],
        "created_at": opened,
        "updated_at": opened,
        "data": {},
        "deadline": due,
        "due_sort": due,
        "revenue_at_risk": Decimal("10.00"),
        "risk_cents": chance.choice((1000, 5000, 9000)),
        "clocks": {},
        "escalations": [],
    }


def test_the_top_of_the_queue_is_the_priority_order_across_queues(db_url: str) -> None:
    # given 400 cases of a merchant over three queues and the unrouted, some closed
    desk = bootstrap(Settings(database_url=db_url))
    desk.upgrade()
    try:
        with desk.uow() as uow:
            merchant = admin.add_merchant(uow, clock=desk.clock, name="acme")
            uow.commit()
        chance = random.Random(7)
        rows = [_case(merchant.id, n, chance) for n in range(400)]
        order_rows = [
            {
                "merchant_id": merchant.id,
                "ref": row["order_ref"],
                "channel": chance.choice(("shopify", "amazon")),
                "snapshot": {},
                "updated_at": NOW,
            }
            for row in rows
        ]
        for row, order in zip(rows, order_rows, strict=True):
            row["order_channel"] = order["channel"]  # the stores keep the case's copy so
        with desk.engine.begin() as db:
            db.execute(insert(orders), order_rows)
            db.execute(insert(cases), rows)
        channel = {row["ref"]: row["channel"] for row in order_rows}
        open_rows = [row for row in rows if row["status"] != "closed"]

        with desk.engine.connect() as db:
            # when the board counts the open cases
            counts = queue_counts(db, merchant.id, BoardFilter(), now=NOW)
            # then each queue has its open cases by priority, past due and due within the hour
            for count in counts:
                mine = [row for row in open_rows if row["queue"] == count.stored]
                assert count.queue == (count.stored or "unrouted")
                for priority in ("P1", "P2", "P3"):
                    expected = sum(row["priority"] == priority for row in mine)
                    assert count.by_priority.get(priority, 0) == expected
                assert count.breached == sum(row["due_sort"] < NOW for row in mine)
                soon = NOW + timedelta(hours=1)
                assert count.at_risk == sum(NOW <= row["due_sort"] < soon for row in mine)
            assert sum(count.total for count in counts) == len(open_rows)

            # when it reads the top of the queue, each queue's page merged
            groups = page_groups(counts)
            merged = top_cases(db, merchant.id, BoardFilter(), now=NOW, limit=30, groups=groups)
            # then it is the first 30 open cases in the desk's priority order, whatever the queue
            by_rank = sorted(
                open_rows,
                key=lambda r: (r["priority"], r["due_sort"], -r["risk_cents"], r["opened_at"]),
            )
            assert [row.order_ref for row in merged] == [r["order_ref"] for r in by_rank[:30]]
            assert len({row.queue for row in merged}) > 1
            # and what sorting every open case gives, filters included
            whole = top_cases(db, merchant.id, BoardFilter(), now=NOW, limit=30)
            assert [row.id for row in merged] == [row.id for row in whole]
            amazon = BoardFilter(channel="amazon", category="fraud_hold")
            found = queue_counts(db, merchant.id, amazon, now=NOW)
            kept = page_groups(found)
            page = top_cases(db, merchant.id, amazon, now=NOW, limit=30, groups=kept)
            wanted = [
                r["order_ref"]
                for r in by_rank
                if channel[r["order_ref"]] == "amazon" and r["category"] == "fraud_hold"
            ]
            assert [row.order_ref for row in page] == wanted[:30]
            assert {row.channel for row in page} == {"amazon"}
            # and the board's "unrouted" row lists the cases no routing rule placed
            unrouted = top_cases(db, merchant.id, BoardFilter(queue="unrouted"), now=NOW, limit=500)
            expected_unrouted = {r["order_ref"] for r in open_rows if r["queue"] is None}
            assert expected_unrouted
            assert {row.order_ref for row in unrouted} == expected_unrouted
    finally:
        desk.close()
