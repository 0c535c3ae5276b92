"""The KPI figures of ../shared/spec/KPIS.md, computed with set-based SQL on SQLite and
PostgreSQL, overall and by channel x fulfilment type (``by_segment``).

Rates are fractions rounded to 6 decimals with the counts behind them; money is decimal strings
with the currency; durations are seconds. The queries live beside this module: orders
(``kpi_orders``), cases (``kpi_cases``), cancel requests and chargebacks (``kpi_stopship``),
root causes (``kpi_root_causes``); each adds its counts to per-segment tallies
(``kpi_tally``), and the overall figures are the sum of the segments.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from recoverydesk.domain.errors import NotFound
from recoverydesk.persistence.tables import merchants
from recoverydesk.reports.kpi_cases import AT_RISK, SAVED, case_tallies
from recoverydesk.reports.kpi_orders import data_quality, order_tallies
from recoverydesk.reports.kpi_period import Period, period_asked
from recoverydesk.reports.kpi_root_causes import root_causes
from recoverydesk.reports.kpi_stopship import chargeback_ratio, stopship_tallies
from recoverydesk.reports.kpi_tally import Tallies, figures_of, rate

__all__ = ["AT_RISK", "SAVED", "Period", "compute", "merchant_named", "period_asked", "rate"]


def merchant_named(db: Connection, name: str) -> tuple[int, str]:
    """A merchant's id and time zone by name (``NotFound`` when there is none)."""
    row = db.execute(
        select(merchants.c.id, merchants.c.time_zone).where(merchants.c.name == name)
    ).first()
    if row is None:
        raise NotFound(f"no merchant named {name!r}", code="merchant_not_found")
    return int(row.id), str(row.time_zone)


def _zone_of(db: Connection, merchant_id: int, period: Period) -> str:
    if period.time_zone is not None:
        return period.time_zone
    zone = db.execute(
        select(merchants.c.time_zone).where(merchants.c.id == merchant_id)
    ).scalar_one_or_none()
    return str(zone or "UTC")


def planner_settings(db: Connection) -> None:
    """PostgreSQL, for this transaction: short queries over indexes, where compiling them (JIT)
    costs more than it saves; and index reads priced as on SSD (``random_page_cost``), so the
    cases open at a past moment are read from the close-time index rather than by scanning
    every case (the planner cannot see how few cases opened before a moment close after it)."""
    if db.dialect.name == "postgresql":
        db.exec_driver_sql("SET LOCAL jit = off")
        db.exec_driver_sql("SET LOCAL random_page_cost = 1.1")


def compute(db: Connection, merchant_id: int, period: Period) -> dict[str, Any]:
    """Every figure of KPIS.md for one merchant and period."""
    planner_settings(db)
    zone = _zone_of(db, merchant_id, period)
    tallies = Tallies()
    order_tallies(db, merchant_id, period, zone, tallies)
    case_tallies(db, merchant_id, period, tallies)
    backwards = stopship_tallies(db, merchant_id, period, tallies)
    overall = tallies.overall()
    quality = data_quality(db, merchant_id, period, overall.counts)
    quality["contradictions"]["final_outcome_before_request"] = {"count": backwards}
    return {
        "period": period.as_dict(),
        "time_zone": zone,
        **figures_of(overall),
        "root_causes": root_causes(db, merchant_id, period),
        "chargeback_ratio": chargeback_ratio(db, merchant_id, period, zone),
        "by_segment": [
            {"channel": channel, "fulfillment_type": kind, **figures_of(tally)}
            for (channel, kind), tally in sorted(tallies.items())
        ],
        "data_quality": quality,
    }
