"""The weekly KPI report (F17): the same figures as JSON, as CSV (one row per figure and
segment: key, segment, value, numerator, denominator) and as one self-contained HTML page
(inline CSS and SVG charts drawn in Python; no script, nothing fetched from the network).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection

from recoverydesk.reports import kpi_charts
from recoverydesk.reports.kpi_period import period_asked
from recoverydesk.reports.kpis import compute, merchant_named


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    HTML = "html"


MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
CSV_HEADER = ("key", "segment", "value", "numerator", "denominator")
ALL = "all"

_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def weekly_figures(
    db: Connection,
    merchant: str,
    *,
    week: str | None = None,
    first: str | None = None,
    last: str | None = None,
) -> dict[str, Any]:
    """The figures of one merchant for a week or a date range in its time zone."""
    merchant_id, zone = merchant_named(db, merchant)
    period = period_asked(week, first, last, zone)
    return {"merchant": merchant, **compute(db, merchant_id, period)}


def render(figures: dict[str, Any], fmt: ReportFormat) -> str:
    if fmt is ReportFormat.CSV:
        return to_csv(figures)
    if fmt is ReportFormat.HTML:
        return to_html(figures)
    return json.dumps(figures, indent=2, sort_keys=True) + "\n"


# -- CSV -------------------------------------------------------------------------------------


def _is_rate(value: Any) -> bool:
    return isinstance(value, dict) and {"value", "numerator", "denominator"} <= set(value)


def _is_money(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"amount", "currency"} for item in value
    )


SKIPPED = frozenset({"period", "time_zone", "merchant", "by_segment", "data_quality"})


def figure_rows(figures: dict[str, Any], prefix: str = "") -> Iterator[tuple[Any, ...]]:
    """(key, value, numerator, denominator) for each figure, nested keys joined by dots."""
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if not prefix and key in SKIPPED:
            continue
        if _is_rate(value):
            yield name, value["value"], value["numerator"], value["denominator"]
        elif _is_money(value):
            for item in value:
                yield f"{name}.{item['currency']}", item["amount"], None, None
        elif isinstance(value, dict):
            yield from figure_rows(value, f"{name}.")
        elif isinstance(value, bool | str):
            continue
        elif isinstance(value, int | float) or value is None:
            yield name, value, None, None
    yield from _pareto_rows(figures, prefix)


def _pareto_rows(figures: dict[str, Any], prefix: str) -> Iterator[tuple[Any, ...]]:
    if prefix or not isinstance(figures.get("root_causes"), dict):
        return
    causes = figures["root_causes"]
    for row in causes["rows"]:
        yield f"root_causes.{row['root_cause']}", row["share"], row["count"], causes["closed"]


def to_csv(figures: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for key, value, numerator, denominator in figure_rows(figures):
        writer.writerow((key, ALL, _cell(value), _cell(numerator), _cell(denominator)))
    for segment in figures.get("by_segment", []):
        name = f"{segment['channel']}/{segment['fulfillment_type']}"
        part = {k: v for k, v in segment.items() if k not in ("channel", "fulfillment_type")}
        for key, value, numerator, denominator in figure_rows(part, ""):
            writer.writerow((key, name, _cell(value), _cell(numerator), _cell(denominator)))
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# -- HTML ------------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:.1f} h"


def _segment_name(segment: dict[str, Any]) -> str:
    return f"{segment['channel']} / {segment['fulfillment_type']}"


def charts(figures: dict[str, Any]) -> dict[str, Markup]:
    segments = figures.get("by_segment", [])

    def by_segment(key: str) -> list[tuple[str, float | None, str]]:
        rows = [(_segment_name(s), s[key]["value"], _percent(s[key]["value"])) for s in segments]
        overall = figures[key]["value"]
        return [("all orders", overall, _percent(overall)), *rows]

    ttc = figures["time_to_cancel"]
    backlog = figures["exception_backlog"]
    sla = [
        (name, figures[key]["value"], _percent(figures[key]["value"]))
        for name, key in (
            ("first touch", "first_touch_sla_attainment"),
            ("resolution", "resolution_sla_attainment"),
        )
    ]
    causes = [
        (row["root_cause"], row["count"], row["cumulative_share"])
        for row in figures["root_causes"]["rows"]
    ]
    drawn = {
        "cancellation": kpi_charts.bars(
            by_segment("cancellation_rate"),
            title="Cancellation rate by channel and fulfilment type",
            threshold=0.025,
            threshold_label="2.5% marketplace line",
        ),
        "pre_fulfillment": kpi_charts.bars(
            by_segment("pre_fulfillment_cancel_rate"),
            title="Pre-fulfilment cancel rate",
            threshold=0.025,
            threshold_label="2.5%",
        ),
        "time_to_cancel": kpi_charts.columns(
            [(b["bucket"], b["count"]) for b in ttc["histogram"]], title="Time to cancel"
        ),
        "backlog": kpi_charts.columns(list(backlog["by_age"].items()), title="Backlog by age"),
        "sla": kpi_charts.bars(sla, title="SLA attainment", scale=1.0),
        "pareto": kpi_charts.pareto(causes, title="Root causes (Pareto)"),
    }
    return {name: Markup(svg) for name, svg in drawn.items()}  # noqa: S704 - escaped in kpi_charts


def to_html(figures: dict[str, Any]) -> str:
    template = _PAGES.get_template("weekly_report.html")
    return template.render(
        f=figures,
        charts=charts(figures),
        percent=_percent,
        hours=_hours,
        segment_name=_segment_name,
    )
