"""The assessment's files: ``summary.json``, ``cases.csv``, ``report.html``, ``merchant.yaml``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from recoverydesk.reports.assess.report_html import render_report
from recoverydesk.reports.assess.starter import starter_config

CASE_COLUMNS = (
    "order_id",
    "category",
    "priority",
    "suggested_playbook",
    "value",
    "currency",
    "placed_at",
    "reason",
)


def write_outputs(out: Path, summary: dict[str, Any], cases: pl.DataFrame) -> None:
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8"
    )
    case_rows(cases).write_csv(out / "cases.csv")
    (out / "report.html").write_text(render_report(summary), encoding="utf-8")
    (out / "merchant.yaml").write_text(starter_config(summary), encoding="utf-8")


def case_rows(cases: pl.DataFrame) -> pl.DataFrame:
    return cases.select(
        pl.col("order_id"),
        pl.col("category"),
        pl.col("priority"),
        pl.col("suggested_playbook"),
        pl.col("value").cast(pl.String).fill_null(""),
        pl.col("currency"),
        pl.col("placed_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ").fill_null(""),
        pl.col("reason").fill_null(""),
    )
