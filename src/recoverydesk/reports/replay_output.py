"""The files replay writes: cases.json, actions.json and kpis.json (see the contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from recoverydesk.persistence.case_store import CaseFilter, SqlCaseStore
from recoverydesk.persistence.tables import merchants
from recoverydesk.reports.kpis import Period, compute
from recoverydesk.services.views import case_detail


def replay_cases(db: Connection) -> list[dict[str, Any]]:
    store = SqlCaseStore(db)
    found: list[dict[str, Any]] = []
    for merchant_id, name in db.execute(
        select(merchants.c.id, merchants.c.name).order_by(merchants.c.id)
    ):
        page, _ = store.search(merchant_id, CaseFilter(limit=10**9))
        for case in page:
            assert case.id is not None
            detail = case_detail(case, store.timeline(merchant_id, case.id))
            found.append({"merchant": name, **detail})
    return found


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
    }
    documents: dict[str, Any] = {
        "cases": replay_cases(db),
        "actions": actions,
        "kpis": replay_kpis(db, period),
    }
    for name, path in files.items():
        path.write_text(
            json.dumps(documents[name], indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return files
