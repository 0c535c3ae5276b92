"""`recoverydesk assess` end to end on every real dataset in ../shared/data and on messy input.

Each headline figure is checked against a computation written here with the standard library's
``csv`` module (not polars, not the job's code), following KPIS.md: orders counted once by id,
an order cancelled when every line is.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
AMAZON_PREFIX = DATA / "amazon_sale_report" / "Amazon Sale Report_prefix796.csv"
AMAZON_16K = DATA / "amazon_sale_report" / "Amazon Sale Report_sample16k_cleaned.csv"
DATACO = DATA / "dataco_6k" / "DataCoSupplyChainDataset_6k.csv"
RETAIL = DATA / "online_retail_head1000" / "online_retail_head1000.csv"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="the shared datasets are not here")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RECOVERYDESK_DATABASE_URL": f"sqlite:///{cwd / 'desk.db'}"},
        check=False,
    )


def assess(tmp_path: Path, *files: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out = tmp_path / "out"
    done = run(["assess", *map(str, files), "--out", str(out), *extra], tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "summary.json").read_text())


def rows(path: Path, encoding: str = "utf-8-sig") -> Iterator[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as handle:
        for row in csv.DictReader(handle):
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if any(clean.values()):
                yield clean


def fraction(part: int, whole: int) -> dict[str, Any]:
    return {"value": round(part / whole, 6), "numerator": part, "denominator": whole}


def figure(summary: dict[str, Any], name: str) -> dict[str, Any]:
    found = summary["figures"][name]
    return {key: found[key] for key in ("value", "numerator", "denominator")}


# Amazon ------------------------------------------------------------------------------------


def amazon_expected(path: Path) -> dict[str, Any]:
    lines: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows(path):
        lines[row["Order ID"]].append(row)
    kinds = {"Amazon": "marketplace", "Merchant": "in_house"}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    cancelled = pre = 0
    for order in lines.values():
        is_cancelled = all(line["Status"] == "Cancelled" for line in order)
        shipped = any(line["Courier Status"] == "Shipped" for line in order)
        cancelled += is_cancelled
        pre += is_cancelled and not shipped
        kind = kinds[order[0]["Fulfilment"]]
        totals[kind][0] += 1
        totals[kind][1] += is_cancelled
    return {
        "orders": len(lines),
        "cancellation_rate": fraction(cancelled, len(lines)),
        "pre_fulfillment_cancel_rate": fraction(pre, len(lines)),
        "by_fulfillment_type": {k: fraction(c, n) for k, (n, c) in totals.items()},
    }


@pytest.mark.parametrize("path", [AMAZON_PREFIX, AMAZON_16K], ids=["prefix796", "sample16k"])
def test_amazon_headline_figures_match_a_count_by_hand(tmp_path: Path, path: Path) -> None:
    # given an Amazon order report; when it is assessed
    summary = assess(tmp_path, path)
    expected = amazon_expected(path)
    # then orders are counted once by id and the rates match, overall and per fulfilment type
    assert summary["profile"]["name"] == "amazon"
    assert summary["figures"]["orders"] == expected["orders"]
    assert figure(summary, "cancellation_rate") == expected["cancellation_rate"]
    assert figure(summary, "pre_fulfillment_cancel_rate") == expected["pre_fulfillment_cancel_rate"]
    assert summary["figures"]["pre_fulfillment_cancel_rate"]["threshold"] == 0.025
    by_type = {
        row["fulfillment_type"]: row["cancellation_rate"]
        for row in summary["figures"]["by_fulfillment_type"]
    }
    assert by_type == expected["by_fulfillment_type"]
    assert {n["figure"] for n in summary["not_computed"]} >= {"seller_cancel_rate"}


def test_amazon_prefix_matches_the_readme_and_writes_every_output(tmp_path: Path) -> None:
    summary = assess(tmp_path, AMAZON_PREFIX)
    assert summary["figures"]["orders"] == 755
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "cases.csv",
        "merchant.yaml",
        "report.html",
        "summary.json",
    ]
    page = (out / "report.html").read_text()
    assert "<svg" in page
    assert "http://" not in page
    assert "https://" not in page
    with (out / "cases.csv").open(newline="") as handle:
        cases = list(csv.DictReader(handle))
    assert list(cases[0]) == [
        "order_id",
        "category",
        "priority",
        "suggested_playbook",
        "value",
        "currency",
        "placed_at",
        "reason",
    ]
    assert len(cases) == summary["figures"]["cases"]


# DataCo ------------------------------------------------------------------------------------


def test_dataco_figures_match_a_count_by_hand(tmp_path: Path) -> None:
    orders: dict[str, dict[str, str]] = {}
    for row in rows(DATACO, encoding="latin-1"):
        orders.setdefault(row["Order Id"], row)
    cancelled = sum(o["Order Status"] == "CANCELED" for o in orders.values())
    judged = [o for o in orders.values() if o["Delivery Status"] != "Shipping canceled"]
    late = sum(o["Delivery Status"] == "Late delivery" for o in judged)
    summary = assess(tmp_path, DATACO)
    assert summary["profile"]["name"] == "dataco"
    assert summary["figures"]["orders"] == len(orders) == 5743
    assert figure(summary, "cancellation_rate") == fraction(cancelled, len(orders))
    assert figure(summary, "pre_fulfillment_cancel_rate") == fraction(cancelled, len(orders))
    assert figure(summary, "late_delivery_rate") == fraction(late, len(judged))
    assert "Late delivery" in summary["figures"]["late_delivery_rate"]["rule"]
    categories = {e["category"] for e in summary["figures"]["exceptions"]}
    assert {"payment_failed", "fraud_hold"} <= categories


# Olist -------------------------------------------------------------------------------------


def olist_time(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def olist_expected(folder: Path) -> dict[str, Any]:
    orders = list(rows(folder / "olist_orders_dataset.csv"))
    ship_by: dict[str, datetime] = {}
    for item in rows(folder / "olist_order_items_dataset.csv"):
        limit = olist_time(item["shipping_limit_date"])
        if limit and (item["order_id"] not in ship_by or limit < ship_by[item["order_id"]]):
            ship_by[item["order_id"]] = limit
    cancelled = [o for o in orders if o["order_status"] == "canceled"]
    pre = [o for o in cancelled if not o["order_delivered_carrier_date"]]
    delivered = late = shipped = late_shipped = 0
    for order in orders:
        placed = olist_time(order["order_purchase_timestamp"])
        got = olist_time(order["order_delivered_customer_date"])
        promised = olist_time(order["order_estimated_delivery_date"])
        if placed and got and promised and got >= placed:
            delivered += 1
            late += got.date() > promised.date()
        handed = olist_time(order["order_delivered_carrier_date"])
        limit = ship_by.get(order["order_id"])
        if placed and handed and limit and handed >= placed:
            shipped += 1
            late_shipped += handed > limit
    return {
        "orders": len(orders),
        "cancellation_rate": fraction(len(cancelled), len(orders)),
        "pre_fulfillment_cancel_rate": fraction(len(pre), len(orders)),
        "late_delivery_rate": fraction(late, delivered),
        "late_shipment_rate": fraction(late_shipped, shipped),
    }


@pytest.mark.parametrize("folder", ["olist_prefix", "olist_excel10k"])
def test_olist_files_together_match_a_count_by_hand(tmp_path: Path, folder: str) -> None:
    # given every file of an Olist folder (orders, items, payments and files not needed)
    files = sorted((DATA / folder).glob("*.csv"))
    expected = olist_expected(DATA / folder)
    # when assessed together
    summary = assess(tmp_path, *files)
    # then the orders file drives the count, items give ship-by times, the rest is set aside
    assert summary["profile"]["name"] == "olist"
    for name in ("orders",):
        assert summary["figures"][name] == expected[name]
    for name in (
        "cancellation_rate",
        "pre_fulfillment_cancel_rate",
        "late_delivery_rate",
        "late_shipment_rate",
    ):
        assert figure(summary, name) == expected[name], name
    handoffs = summary["data_quality"]["contradictions"]["carrier_handoff_before_purchase"]
    assert handoffs["orders"] > 0
    assert handoffs["examples"]
    ignored = [f for f in summary["input_files"] if not f["used"]]
    assert ignored


def test_olist_excel_resave_drops_the_empty_rows(tmp_path: Path) -> None:
    summary = assess(tmp_path, DATA / "olist_excel10k" / "olist_orders_dataset.csv")
    assert summary["figures"]["orders"] == 9999
    orders_file = summary["input_files"][0]
    assert orders_file["empty_rows_dropped"] == orders_file["rows"] - 9999 > 80_000
    assert summary["data_quality"]["unparseable_dates"]["placed_at"] == 0


# UCI Online Retail -------------------------------------------------------------------------


def test_online_retail_counts_invoices_and_c_cancellations(tmp_path: Path) -> None:
    invoices = {row["InvoiceNo"] for row in rows(RETAIL)}
    cancelled = sum(invoice.startswith("C") for invoice in invoices)
    summary = assess(tmp_path, RETAIL)
    assert summary["figures"]["orders"] == len(invoices) == 66
    assert figure(summary, "cancellation_rate") == fraction(cancelled, len(invoices))
    skipped = {n["figure"] for n in summary["not_computed"]}
    assert {"pre_fulfillment_cancel_rate", "late_delivery_rate"} <= skipped
    assert summary["period"]["from"].startswith("2010-12-01")


# Messy input and errors --------------------------------------------------------------------

AMAZON_HEADER = (
    "index,Order ID,Date,Status,Fulfilment,Sales Channel ,Courier Status,Qty,currency,Amount,"
    "ship-city"
)


def messy_amazon(path: Path) -> None:
    lines = [
        AMAZON_HEADER,
        "0,A-1,04-30-22,Cancelled,Merchant,Amazon.in,,0,INR,,São Paulo",
        "1,A-2,04/29/22,Shipped,Amazon,Amazon.in,Shipped,1,INR,406.0,Bogotá",
        "2,A-3,04-29-22,Pending,Merchant,Amazon.in,Unshipped,1,INR,700.00,Zürich",
        "3,A-3,04-29-22,Cancelled,Merchant,Amazon.in,Unshipped,1,INR,100.00,Zürich",
        *[",,,,,,,,,,"] * 3000,
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("latin-1"))


def test_messy_export_bom_latin1_trailing_space_empty_rows_mixed_dates(tmp_path: Path) -> None:
    # given a spreadsheet-resaved export: BOM, latin-1, "Sales Channel ", 3,000 empty rows,
    # two date spellings
    export = tmp_path / "messy.csv"
    messy_amazon(export)
    # when assessed
    summary = assess(tmp_path, export)
    # then it is read as what it is, and the mess is reported, not fatal
    assert summary["profile"]["name"] == "amazon"
    assert summary["figures"]["orders"] == 3
    assert figure(summary, "cancellation_rate") == fraction(1, 3)
    assert figure(summary, "partial_cancellation_rate") == fraction(1, 3)
    assert summary["input_files"][0]["encoding"] == "latin-1"
    assert summary["data_quality"]["empty_rows_dropped"] == 3000
    assert summary["data_quality"]["unparseable_dates"]["placed_at"] == 0
    assert summary["period"] == {"from": "2022-04-29T00:00:00", "to": "2022-04-30T00:00:00"}
    assert summary["figures"]["revenue_at_risk"] == [{"amount": "700.00", "currency": "INR"}]
    segments = summary["figures"]["by_segment"]
    assert {s["channel"] for s in segments} == {"amazon.in"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "not a CSV file"),
        (b"just some words\nand more\n", "not a CSV export"),
        (b"colour,size\nred,M\n", "match no known export"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    done = run(["assess", str(bad), "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_missing_file_and_unknown_profile_are_user_errors(tmp_path: Path) -> None:
    done = run(["assess", str(tmp_path / "nope.csv"), "--out", "out"], tmp_path)
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"error: {tmp_path / 'nope.csv'}: no such file",
    )
    done = run(["assess", str(RETAIL), "--profile", "ebay", "--out", "out"], tmp_path)
    assert done.returncode == 1
    assert "unknown profile 'ebay'" in done.stderr


def custom_export(tmp_path: Path) -> Path:
    export = tmp_path / "shop.csv"
    export.write_text(
        "Ref;Created;State;Total;Via\n"
        "1;2024-03-01 10:00;Cancelled;10.00;FBA\n"
        "2;01/03/2024 11:00;Awaiting payment;25.50;own\n"
        "3;2024-03-02 09:00;Shipped;12.00;own\n"
        "4;2024-03-02 09:30;Mystery;5.00;own\n"
    )
    return export


def write_mapping(tmp_path: Path, columns: dict[str, str]) -> Path:
    mapping = tmp_path / "mapping.yaml"
    lines = ["profile: my_shop", "columns:"]
    lines += [f"  {field}: {column}" for field, column in columns.items()]
    lines += [
        "statuses:",
        "  cancelled: cancelled",
        "  awaiting payment: {status: payment_failed, category: payment_failed}",
        "  shipped: shipped",
        "fulfillment_types: {fba: marketplace, own: in_house}",
        'date_formats: ["%d/%m/%Y %H:%M"]',
        "defaults: {channel: web, currency: EUR}",
    ]
    mapping.write_text("\n".join(lines) + "\n")
    return mapping


def test_a_mapping_file_reads_any_csv(tmp_path: Path) -> None:
    export = custom_export(tmp_path)
    columns = {
        "order_id": "Ref",
        "placed_at": "Created",
        "status": "State",
        "value": "Total",
        "fulfillment_type": "Via",
    }
    summary = assess(tmp_path, export, extra=("--mapping", str(write_mapping(tmp_path, columns))))
    assert summary["profile"]["name"] == "my_shop"
    assert summary["figures"]["orders"] == 4
    assert figure(summary, "cancellation_rate") == fraction(1, 4)
    assert figure(summary, "pre_fulfillment_cancel_rate") == fraction(1, 4)
    assert summary["figures"]["revenue_at_risk"] == [{"amount": "25.50", "currency": "EUR"}]
    assert summary["data_quality"]["unknown_status_values"] == {"Mystery": 1}
    assert summary["data_quality"]["unparseable_dates"]["placed_at"] == 0


def test_a_mapping_naming_an_absent_column_is_refused(tmp_path: Path) -> None:
    export = custom_export(tmp_path)
    mapping = write_mapping(tmp_path, {"order_id": "Ref", "placed_at": "Placed On"})
    done = run(["assess", str(export), "--mapping", str(mapping), "--out", "out"], tmp_path)
    assert done.returncode == 1
    assert "'Placed On'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# The starter configuration -----------------------------------------------------------------


def test_the_starter_configuration_applies_as_it_is(tmp_path: Path) -> None:
    # given an assessment's merchant.yaml (DataCo: 1,304 failed payments in 5,743 orders)
    assess(tmp_path, DATACO)
    starter = tmp_path / "out" / "merchant.yaml"
    settings = yaml.safe_load(starter.read_text())
    # it carries the payment playbook sized to the volume: a retry more within the same span
    retry = settings["playbooks"]["payment_recovery"]["steps"][0]
    assert (retry["name"], retry["every"], retry["times"]) == ("retry_authorization", "PT4H", 4)
    assert set(settings["playbooks"]) == {"payment_recovery"}  # the others run as defaults
    # when a new merchant applies it
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    assert run(["merchant", "add", "acme"], tmp_path).returncode == 0
    done = run(["merchant", "apply", "acme", str(starter)], tmp_path)
    # then the desk accepts it
    assert done.returncode == 0, done.stderr
    assert "configuration version 1 applied" in done.stdout
