"""The assessment job: files in, figures, cases and a starter configuration out.

Stages: read and check the files; build one lazy plan (rows mapped to desk lines, lines grouped
into orders) and every query the summary needs over it, collected together in one run (the
files are scanned once); then write ``summary.json``, ``cases.csv``, ``report.html`` and
``merchant.yaml`` into the output folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from recoverydesk.domain.errors import InvalidInput
from recoverydesk.reports.assess import figures as fig
from recoverydesk.reports.assess import quality
from recoverydesk.reports.assess.lines import desk_lines, one_of
from recoverydesk.reports.assess.orders import desk_orders
from recoverydesk.reports.assess.outputs import write_outputs
from recoverydesk.reports.assess.profiles import describe
from recoverydesk.reports.assess.reading import open_source
from recoverydesk.reports.assess.sources import Plan, plan

Progress = Callable[[str], None]
HIGH_VALUE = Decimal("500")
P2_CATEGORIES = [
    "address_invalid",
    "split_shipment",
    "delivery_exception",
    "wms_exception",
    "change_request",
]
STALE_HOURS = 72


CASE_FIELDS = (
    "order_id",
    "category",
    "priority",
    "suggested_playbook",
    "value",
    "currency",
    "placed_at",
    "reason",
    "open",
)


@dataclass(frozen=True, slots=True)
class Assessment:
    summary: dict[str, Any]
    cases: pl.DataFrame


def run_assessment(
    files: Sequence[Path],
    *,
    out: Path,
    mapping: Path | None = None,
    profile: str | None = None,
    progress: Progress | None = None,
) -> Assessment:
    step = progress or (lambda _label: None)
    if not files:
        raise InvalidInput("give at least one export file")
    with tempfile.TemporaryDirectory(prefix="recoverydesk-assess-") as work:
        step("reading files")
        sources = [open_source(path, Path(work)) for path in files]
        chosen = plan(sources, mapping=mapping, profile_name=profile)
        step("mapping rows to orders")
        assessment = _assess(chosen, step)
    step("writing the report")
    _prepare(out)
    write_outputs(out, assessment.summary, assessment.cases)
    return assessment


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInput(f"{out}: cannot create the output folder ({error.strerror})") from None


def _assess(chosen: Plan, step: Progress) -> Assessment:
    profile = chosen.profile
    step("computing figures")
    found = _run(chosen, exact=False)
    if int(found["totals"]["key_clashes"][0]):  # two order ids share a 64-bit key: regroup
        found = _run(chosen, exact=True)
    totals = found["totals"].row(0, named=True)
    if not totals["orders"]:
        raise InvalidInput("no order rows in the given file(s)")
    figures = fig.compute(totals, found, profile)
    files = _file_counts(chosen, [found[f"file_{i}"] for i in range(len(chosen.used))])
    lines_checked = quality.line_quality(found, profile)
    summary = {
        "profile": describe(profile),
        "input_files": files,
        "as_of": totals["as_of"].isoformat() if totals["as_of"] else None,
        "period": {
            "from": totals["first_placed"].isoformat() if totals["first_placed"] else None,
            "to": totals["last_placed"].isoformat() if totals["last_placed"] else None,
        },
        "figures": _headline(figures, totals, found),
        "not_computed": figures.not_computed,
        "assumptions": _assumptions(profile.notes),
        "data_quality": {
            **lines_checked,
            **quality.order_quality(found),
            "rows_without_order_id": int(found["line_counts"]["rows_without_order_id"][0]),
            "empty_rows_dropped": sum(f.get("empty_rows_dropped", 0) for f in files),
            "duplicate_lines": sum(f.get("duplicate_lines", 0) for f in files),
            "files_ignored": [f["file"] for f in files if not f["used"]],
        },
    }
    return Assessment(summary, found["cases"])


def _run(chosen: Plan, *, exact: bool) -> dict[str, pl.DataFrame]:
    try:
        return _collect(_queries(chosen, exact=exact, shared=True))
    except pl.exceptions.PanicException:  # a polars planner bug: run the queries unshared
        return _collect(_queries(chosen, exact=exact, shared=False))


def _queries(chosen: Plan, *, exact: bool, shared: bool) -> dict[str, pl.LazyFrame]:
    """Every result the job needs, as lazy queries over one plan: the lines are mapped and
    grouped into orders once (a cache polars shares between the queries)."""
    profile = chosen.profile
    lines = desk_lines(chosen.frame, profile)
    lines = lines.cache() if shared else lines
    late_flag = "__late_delivery" in lines.collect_schema().names()
    orders = desk_orders(lines, mapped=set(profile.columns), late_flag=late_flag, exact=exact)
    return {
        "totals": fig.totals_query(orders, profile),
        **{name: fig.segments_query(orders, keys) for name, keys in fig.SEGMENT_KEYS.items()},
        "cases": build_cases(orders),
        "at_risk": orders.filter(pl.col("at_risk")).group_by("currency").agg(pl.col("value").sum()),
        "order_value": _order_value_query(orders),
        **quality.line_queries(lines, profile),
        **quality.order_queries(orders),
        **{
            f"file_{index}": quality.file_counts(source.scan_all_rows(), source.columns)
            for index, source in enumerate(chosen.used)
        },
    }


def _collect(queries: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """All the queries in one run of polars' streaming engine."""
    try:
        frames = pl.collect_all(list(queries.values()), engine="streaming")
    except pl.exceptions.PolarsError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInput(f"cannot read the export: {first}") from None
    return dict(zip(queries, frames, strict=True))


def build_cases(orders: pl.LazyFrame, high_value: Decimal = HIGH_VALUE) -> pl.LazyFrame:
    """Every order that is a recovery opportunity, with its priority and suggested playbook."""
    value = pl.col("value").fill_null(0)
    priority = (
        pl.when((value >= high_value) | (pl.col("category") == "fraud_hold"))
        .then(pl.lit("P1"))
        .when(
            one_of(pl.col("category"), P2_CATEGORIES)
            | (pl.col("open") & (pl.col("age_hours") >= STALE_HOURS))
        )
        .then(pl.lit("P2"))
        .otherwise(pl.lit("P3"))
    )
    return (
        orders.filter(pl.col("category").is_not_null())
        .with_columns(
            priority=priority,
            category=pl.col("category").cast(pl.String),
            suggested_playbook=pl.col("category")
            .cast(pl.String)
            .replace_strict(fig.PLAYBOOKS, default="none", return_dtype=pl.String),
        )
        .select(*CASE_FIELDS)
        .sort(["priority", "value", "order_id"], descending=[False, True, False], nulls_last=True)
    )


def _headline(
    figures: fig.Figures, totals: dict[str, Any], found: dict[str, pl.DataFrame]
) -> dict[str, Any]:
    values = dict(figures.values)
    values["revenue_at_risk"] = fig.money(found["at_risk"])
    values["open_at_risk_orders"] = int(totals["open_at_risk_orders"])
    exceptions = fig.exceptions(found["cases"])
    values["exceptions"] = exceptions
    totals_by_currency: dict[str, Decimal] = {}
    for entry in exceptions:
        for part in entry["recoverable"]:
            currency = part["currency"]
            totals_by_currency[currency] = totals_by_currency.get(currency, Decimal(0)) + Decimal(
                part["amount"]
            )
    values["recoverable"] = [
        {"amount": str(amount), "currency": currency}
        for currency, amount in sorted(totals_by_currency.items())
    ]
    values["cases"] = found["cases"].height
    values["order_value"] = _order_value(found["order_value"])
    return values


def _order_value_query(orders: pl.LazyFrame) -> pl.LazyFrame:
    """Per currency: orders with a known value, their median and 90th percentile value."""
    value = pl.col("value").cast(pl.Float64)
    return (
        orders.filter(pl.col("value_known"))
        .group_by("currency")
        .agg(
            pl.len().alias("orders"),
            value.median().alias("median"),
            value.quantile(0.9, interpolation="nearest").alias("p90"),
        )
    )


def _order_value(table: pl.DataFrame) -> dict[str, str] | None:
    """Median and 90th percentile order value in the export's main currency (the most frequent
    one; the first by name on a tie)."""
    if table.is_empty():
        return None
    currency, _count, median, p90 = table.sort(
        ["orders", "currency"], descending=[True, False]
    ).row(0)
    return {
        "currency": str(currency),
        "median": str(Decimal(str(median)).quantize(fig.CENT)),
        "p90": str(Decimal(str(p90)).quantize(fig.CENT)),
    }


def _assumptions(notes: tuple[str, ...]) -> list[str]:
    return [
        *notes,
        "Timestamps without a zone are read as the merchant's time (UTC by default); "
        "calendar dates are compared in that zone.",
        "The export's latest timestamp stands for 'now': open orders age from it, and an open "
        "order past its ship-by time then is late_shipment_risk.",
        "Recoverable = order value x the desk's default loss likelihood for the category "
        "(domain.triage.LOSS_LIKELIHOOD): the expected loss each playbook works to avoid.",
        f"Priority (simplified TRIAGE.md): P1 when value >= {HIGH_VALUE} (order currency) or "
        f"fraud_hold; P2 for {', '.join(P2_CATEGORIES)} or open orders older than "
        f"{STALE_HOURS} h; else P3.",
        "Revenue at risk = value of open orders (not cancelled, shipped or delivered) with a "
        "pre-fulfilment category.",
    ]


def _file_counts(chosen: Plan, counted: list[pl.DataFrame]) -> list[dict[str, Any]]:
    rows = []
    for source, table in zip(chosen.used, counted, strict=True):
        row = table.row(0, named=True)
        rows.append(
            {
                "file": str(source.path),
                "encoding": source.encoding,
                "rows": int(row["rows"]),
                "empty_rows_dropped": int(row["rows"]) - int(row["kept"]),
                "duplicate_lines": int(row["duplicate_lines"]),
                "used": True,
            }
        )
    rows += [
        {"file": str(source.path), "used": False, "why": why} for source, why in chosen.ignored
    ]
    return rows
