"""The files replay writes: cases.json, actions.json and kpis.json (see the contract), and
sla.json: per merchant and queue, how many cases each clock met or breached and the escalations
that fired, so two runs of one stream under two configurations can be compared side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from recoverydesk.persistence.case_store import CaseFilter, SqlCaseStore
from recoverydesk.persistence.order_store import SqlOrderStore
from recoverydesk.persistence.stopship_store import SqlCancellationStore, SqlLedger
from recoverydesk.persistence.tables import merchants
from recoverydesk.reports.kpis import Period, compute
from recoverydesk.services.views import cancellation_to_dict, case_detail, money_view


def replay_cases(db: Connection) -> list[dict[str, Any]]:
    store = SqlCaseStore(db)
    found: list[dict[str, Any]] = []
    for merchant_id, name in db.execute(
        select(merchants.c.id, merchants.c.name).order_by(merchants.c.id)
    ):
        page, _ = store.search(merchant_id, CaseFilter(limit=10**9, sort="opened"))
        for case in page:
            assert case.id is not None
            detail = case_detail(case, store.timeline(merchant_id, case.id))
            detail.update(_stopship(db, merchant_id, case.order_ref, case.id))
            found.append({"merchant": name, **detail})
    return found


def _stopship(db: Connection, merchant_id: int, ref: str, case_id: int) -> dict[str, Any]:
    """A case's stop-ship workflow (progress, timestamps, outcome) and its order's ledger."""
    workflows = SqlCancellationStore(db).for_case(merchant_id, case_id)
    if not workflows:
        return {"cancellation": None}
    order = SqlOrderStore(db).get(merchant_id, ref)
    entries = SqlLedger(db).for_order(merchant_id, ref)
    return {
        "cancellation": cancellation_to_dict(workflows[-1]),
        "ledger": money_view(order, entries) if order else None,
    }


def replay_kpis(db: Connection, period: Period) -> dict[str, Any]:
    figures: dict[str, Any] = {"period": period.as_dict(), "merchants": {}}
    for merchant_id, name in db.execute(
        select(merchants.c.id, merchants.c.name).order_by(merchants.c.id)
    ):
        figures["merchants"][name] = compute(db, merchant_id, period)
    return figures


def write_outputs(
    db: Connection, out: Path, period: Period, actions: list[dict[str, Any]]
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "cases": out / "cases.json",
        "actions": out / "actions.json",
        "kpis": out / "kpis.json",
        "sla": out / "sla.json",
    }
    cases = replay_cases(db)
    documents: dict[str, Any] = {
        "cases": cases,
        "actions": actions,
        "kpis": replay_kpis(db, period),
        "sla": sla_summary(cases),
    }
    for name, path in files.items():
        path.write_text(
            json.dumps(documents[name], indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return files


def sla_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per merchant and queue: cases by priority, clocks met / breached, escalations by stage."""
    summary: dict[str, Any] = {}
    for case in cases:
        queues = summary.setdefault(case["merchant"], {})
        queue = queues.setdefault(
            case["queue"] or "(none)",
            {"cases": 0, "by_priority": {}, "clocks": {}, "escalations": {}},
        )
        queue["cases"] += 1
        priority = case["priority"] or "(none)"
        queue["by_priority"][priority] = queue["by_priority"].get(priority, 0) + 1
        for name, clock in case["sla"]["clocks"].items():
            figures = queue["clocks"].setdefault(name, {"started": 0, "breached": 0})
            figures["started"] += 1
            figures["breached"] += int(clock["breached"])
        for escalation in case["escalations"]:
            stage = escalation["stage"]
            queue["escalations"][stage] = queue["escalations"].get(stage, 0) + 1
    for queues in summary.values():
        for queue in queues.values():
            for figures in queue["clocks"].values():
                met = figures["started"] - figures["breached"]
                figures["attainment"] = round(met / figures["started"], 4)
    return summary
