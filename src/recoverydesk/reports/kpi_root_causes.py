"""``root_causes`` (F16, KPIS.md): closed cases by root cause in Pareto order, with the owner
of each upstream fix from the merchant's current root-cause list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, literal, select

from recoverydesk.domain.cases import CaseStatus
from recoverydesk.persistence.merchant_store import SqlMerchantStore
from recoverydesk.persistence.tables import cases
from recoverydesk.persistence.types import UTCDateTime
from recoverydesk.reports.kpi_period import Period
from recoverydesk.services.merchants import settings_from_stored
from recoverydesk.services.policy import RootCauseSpec


def root_causes(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    """``root_causes``: the cases closed in the period by root cause, in Pareto order (most
    first, then by code), each with its share, the cumulative share and the owner of the
    upstream fix from the merchant's current list; the same per channel and fulfilment type.
    Also how many closed cases carry no root cause, and how many resolved cases wait for a
    person to name theirs (``root_cause_needed``)."""
    segment = (cases.c.order_channel, cases.c.order_fulfillment_type)  # the case's order's
    rows = db.execute(
        select(cases.c.root_cause, *segment, func.count())
        .where(
            cases.c.merchant_id == merchant_id,
            cases.c.status == CaseStatus.CLOSED.value,
            cases.c.closed_at >= period.start,
            cases.c.closed_at < period.end,
        )
        .group_by(cases.c.root_cause, *segment)
    ).all()
    needed = db.execute(
        select(func.count()).where(
            cases.c.merchant_id == merchant_id,
            cases.c.status == CaseStatus.RESOLVED.value,
            cases.c.root_cause.is_(None),
            # coalesced: read the few resolved cases by status, not every case closed before
            func.coalesce(cases.c.closed_at, literal(period.end, UTCDateTime)) < period.end,
        )
    ).scalar_one()
    listed = _root_cause_list(db, merchant_id)
    overall: dict[str, int] = {}
    by_dimension: dict[tuple[str, str], dict[str, int]] = {}
    for code, channel, fulfillment_type, count in rows:
        if code is None:
            continue
        overall[code] = overall.get(code, 0) + int(count)
        group = by_dimension.setdefault((channel or "unknown", fulfillment_type or "unknown"), {})
        group[code] = group.get(code, 0) + int(count)
    return {
        **_pareto(overall, listed),
        "without_root_cause": sum(int(count) for code, _, _, count in rows if code is None),
        "root_cause_needed": int(needed),
        "by_channel_fulfillment": [
            {"channel": channel, "fulfillment_type": kind, **_pareto(counts, listed)}
            for (channel, kind), counts in sorted(by_dimension.items())
        ],
    }


def _pareto(counts: dict[str, int], listed: dict[str, RootCauseSpec]) -> dict[str, Any]:
    total = sum(counts.values())
    rows, running = [], 0
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        running += count
        cause = listed.get(code)
        rows.append(
            {
                "root_cause": code,
                "label": cause.label if cause else None,
                "owner": cause.owner if cause else None,
                "count": count,
                "share": round(count / total, 6),
                "cumulative_share": round(running / total, 6),
            }
        )
    return {"closed": total, "rows": rows}


def _root_cause_list(db: Connection, merchant_id: int) -> dict[str, RootCauseSpec]:
    """The merchant's root-cause list at its current configuration (the defaults without one)."""
    store = SqlMerchantStore(db)
    merchant = store.by_id(merchant_id)
    version = merchant.config_version if merchant is not None else None
    stored = store.config(merchant_id, version) if version else None
    return {cause.code: cause for cause in settings_from_stored(stored).root_causes}
